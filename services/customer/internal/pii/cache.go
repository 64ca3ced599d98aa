package pii

import (
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// keyCache keeps unwrapped keys for a short time, so one request (or a page
// of fifty profiles) does not unwrap the same key again and again.
//
// Tenant keys are cached by tenant: they are created once, committed before
// they are cached, and never change. Customer keys are cached by tenant,
// customer and the digest of the wrapped key as read from the database, so
// the cache can only answer for a key the database still holds: once a
// customer's key row is deleted nothing reaches its cached entry, which
// expires with the TTL.
type keyCache struct {
	mu        sync.Mutex
	ttl       time.Duration
	size      int
	now       func() time.Time
	tenants   map[uuid.UUID]cached[*TenantKeys]
	customers map[customerCacheKey]cached[tink.AEAD]
}

type cached[T any] struct {
	v       T
	expires time.Time
}

type customerCacheKey struct {
	tenant   uuid.UUID
	customer uuid.UUID
	wrapped  [32]byte
}

func newKeyCache(ttl time.Duration, size int, now func() time.Time) *keyCache {
	return &keyCache{ttl: ttl, size: size, now: now,
		tenants: map[uuid.UUID]cached[*TenantKeys]{}, customers: map[customerCacheKey]cached[tink.AEAD]{}}
}

func (c *keyCache) tenant(id uuid.UUID) (*TenantKeys, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.tenants[id]
	if !ok || !c.now().Before(e.expires) {
		delete(c.tenants, id)
		return nil, false
	}
	return e.v, true
}

func (c *keyCache) putTenant(id uuid.UUID, t *TenantKeys) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.makeRoom()
	c.tenants[id] = cached[*TenantKeys]{v: t, expires: c.now().Add(c.ttl)}
}

func (c *keyCache) customer(k customerCacheKey) (tink.AEAD, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.customers[k]
	if !ok || !c.now().Before(e.expires) {
		delete(c.customers, k)
		return nil, false
	}
	return e.v, true
}

func (c *keyCache) putCustomer(k customerCacheKey, a tink.AEAD) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.makeRoom()
	c.customers[k] = cached[tink.AEAD]{v: a, expires: c.now().Add(c.ttl)}
}

// makeRoom drops expired entries when the cache is full, and everything if
// that is not enough: a full sweep is rare and cheap next to unwrapping.
func (c *keyCache) makeRoom() {
	if len(c.tenants)+len(c.customers) < c.size {
		return
	}
	now := c.now()
	for k, e := range c.tenants {
		if !now.Before(e.expires) {
			delete(c.tenants, k)
		}
	}
	for k, e := range c.customers {
		if !now.Before(e.expires) {
			delete(c.customers, k)
		}
	}
	if len(c.tenants)+len(c.customers) >= c.size {
		clear(c.tenants)
		clear(c.customers)
	}
}

// len reports the cached entries (tests).
func (c *keyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.tenants) + len(c.customers)
}
