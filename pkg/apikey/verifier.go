package apikey

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/rapporthq/rapport/pkg/authn"
)

const (
	defaultCacheTTL = 30 * time.Second
	// maxCacheEntries bounds each of the two caches. The negative one is
	// what made-up keys fill: once it is full of live entries, further
	// misses are simply not cached (each costs one primary-key lookup),
	// rather than evicting anything a real caller relies on.
	maxCacheEntries = 10_000
	// lookupTimeout bounds the one database read that concurrent misses of
	// a key share; it does not follow any one caller's deadline, since the
	// others wait for it too.
	lookupTimeout = 5 * time.Second
	// touchInterval: last_used_time is written at most this often per key.
	touchInterval = time.Minute
	// touchQueue bounds the pending last_used_time writes; when it is full,
	// uses are not recorded (the next call after it drains records one).
	touchQueue    = 64
	touchTimeout  = 5 * time.Second
	maxTouchState = 10_000
)

// Reasons a presented key is refused. Each is wrapped with
// authn.ErrUnauthenticated; none quotes the key, only its id.
var (
	errUnknownKey  = errors.New("no such api key")
	errWrongSecret = errors.New("api key secret does not match")
	errRevoked     = errors.New("api key revoked")
	errExpired     = errors.New("api key expired")
)

// VerifierConfig tunes a Verifier; zero values are defaults.
type VerifierConfig struct {
	// CacheTTL is how long a lookup's outcome, good or bad, is reused; 0
	// means 30 s. It is how long a revocation can take to reach a replica.
	CacheTTL time.Duration
	// Now is the clock for expiry, the cache and last_used_time; nil means
	// time.Now.
	Now func() time.Time
	// Logger receives why AuthFunc refused a key (debug, naming the key id
	// only), database failures and failed last_used_time writes (warn); nil
	// discards.
	Logger *slog.Logger
}

// Verifier turns a presented API key into the principal it stands for. It is
// safe for concurrent use. Run must be running for last_used_time to be
// recorded; verification works without it.
type Verifier struct {
	pool  *pgxpool.Pool
	store store
	ttl   time.Duration
	now   func() time.Time
	log   *slog.Logger

	flight singleflight.Group

	mu       sync.Mutex
	good     map[cacheKey]goodEntry
	bad      map[cacheKey]badEntry
	lastUsed map[uuid.UUID]time.Time // when a use of each key was last queued

	touches chan touch
}

// cacheKey names an outcome by key id and secret hash, so a wrong secret
// never finds the right secret's entry.
type cacheKey struct {
	id   uuid.UUID
	hash secretHash
}

type goodEntry struct {
	tenantID string
	roles    []string
	expire   time.Time // zero: never
	until    time.Time
}

type badEntry struct {
	err   error
	until time.Time
}

type touch struct {
	id   uuid.UUID
	used time.Time
}

// NewVerifier returns a Verifier reading keys from pool, whose search_path
// must be Schema. It touches nothing until the first Verify.
func NewVerifier(pool *pgxpool.Pool, cfg VerifierConfig) *Verifier {
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = defaultCacheTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Verifier{
		pool: pool, store: newStore(), ttl: cfg.CacheTTL, now: cfg.Now, log: cfg.Logger,
		good: map[cacheKey]goodEntry{}, bad: map[cacheKey]badEntry{}, lastUsed: map[uuid.UUID]time.Time{},
		touches: make(chan touch, touchQueue),
	}
}

// Verify checks a presented key and returns its principal: Subject
// "apikey:<id>", the key's tenant and roles. A key that is malformed,
// unknown, wrong, revoked or expired gets an error wrapping
// authn.ErrUnauthenticated; any other error means the keys could not be read
// (the database), and says nothing about the key.
func (v *Verifier) Verify(ctx context.Context, raw string) (authn.Principal, error) {
	id, hash, err := parseKey(raw)
	if err != nil {
		return authn.Principal{}, fmt.Errorf("%w: %w", authn.ErrUnauthenticated, err)
	}
	k := cacheKey{id: id, hash: hash}
	now := v.now()
	e, err := v.cached(k, now)
	if err == nil && e == nil {
		e, err = v.load(ctx, k)
	}
	if err == nil && !e.expire.IsZero() && !now.Before(e.expire) {
		// Checked on every call, cached or not, so expiry is exact.
		err = errExpired
	}
	if err != nil {
		if isRefusal(err) {
			return authn.Principal{}, fmt.Errorf("%w: api key %s: %w", authn.ErrUnauthenticated, id, err)
		}
		return authn.Principal{}, err
	}
	v.recordUse(id, now)
	return authn.Principal{Subject: subject(id), TenantID: e.tenantID, Roles: slices.Clone(e.roles)}, nil
}

func isRefusal(err error) bool {
	return errors.Is(err, errUnknownKey) || errors.Is(err, errWrongSecret) ||
		errors.Is(err, errRevoked) || errors.Is(err, errExpired)
}

// cached returns a live cache entry: a good one, a refusal, or (nil, nil).
func (v *Verifier) cached(k cacheKey, now time.Time) (*goodEntry, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.good[k]; ok && now.Before(e.until) {
		return &e, nil
	}
	if e, ok := v.bad[k]; ok && now.Before(e.until) {
		return nil, e.err
	}
	return nil, nil
}

// load reads the key from the database, once for all concurrent callers
// presenting the same key, and caches the outcome. Database failures are
// not cached.
func (v *Verifier) load(ctx context.Context, k cacheKey) (*goodEntry, error) {
	ch := v.flight.DoChan(string(k.id[:])+string(k.hash[:]), func() (any, error) {
		// A flight that ended just before this one began has cached the
		// answer already.
		if e, err := v.cached(k, v.now()); e != nil || err != nil {
			return e, err
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lookupTimeout)
		defer cancel()
		c, err := v.store.lookup(lctx, v.pool, k.id)
		now := v.now()
		switch {
		case errors.Is(err, errNotFound):
			err = errUnknownKey
		case err != nil:
			return nil, err
		case subtle.ConstantTimeCompare(c.Hash, k.hash[:]) != 1:
			err = errWrongSecret
		case !c.RevokeTime.IsZero():
			err = errRevoked
		}
		if err != nil {
			v.storeBad(k, err, now)
			return nil, err
		}
		e := goodEntry{tenantID: c.TenantID.String(), roles: c.Roles, expire: c.ExpireTime, until: now.Add(v.ttl)}
		v.storeGood(k, e, now)
		return &e, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*goodEntry), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (v *Verifier) storeGood(k cacheKey, e goodEntry, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.good) >= maxCacheEntries {
		sweep(v.good, now, func(e goodEntry) time.Time { return e.until })
	}
	if len(v.good) < maxCacheEntries {
		v.good[k] = e
	}
}

func (v *Verifier) storeBad(k cacheKey, err error, now time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.bad) >= maxCacheEntries {
		sweep(v.bad, now, func(e badEntry) time.Time { return e.until })
	}
	if len(v.bad) < maxCacheEntries {
		v.bad[k] = badEntry{err: err, until: now.Add(v.ttl)}
	}
}

// sweep drops the entries that are no longer live.
func sweep[E any](m map[cacheKey]E, now time.Time, until func(E) time.Time) {
	for k, e := range m {
		if !now.Before(until(e)) {
			delete(m, k)
		}
	}
}

// recordUse queues a last_used_time write if the key's last one was queued
// at least touchInterval ago. It never blocks: with the queue full, the use
// is not recorded and the next call tries again.
func (v *Verifier) recordUse(id uuid.UUID, now time.Time) {
	v.mu.Lock()
	last, ok := v.lastUsed[id]
	if ok && now.Sub(last) < touchInterval {
		v.mu.Unlock()
		return
	}
	if len(v.lastUsed) >= maxTouchState {
		for k, t := range v.lastUsed {
			if now.Sub(t) >= touchInterval {
				delete(v.lastUsed, k)
			}
		}
	}
	v.lastUsed[id] = now
	v.mu.Unlock()

	select {
	case v.touches <- touch{id: id, used: now}:
	default:
		v.mu.Lock()
		if ok {
			v.lastUsed[id] = last
		} else {
			delete(v.lastUsed, id)
		}
		v.mu.Unlock()
	}
}

// Run writes queued last_used_time updates until ctx ends. One replica's
// writes are at most one per key per minute; a failed write is logged and
// dropped, since the next use will be recorded anyway.
func (v *Verifier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case t := <-v.touches:
			wctx, cancel := context.WithTimeout(ctx, touchTimeout)
			err := v.store.touch(wctx, v.pool, t.id, t.used)
			cancel()
			if err != nil && ctx.Err() == nil {
				v.log.WarnContext(ctx, "record api key use", "key_id", t.id.String(), "error", err.Error())
			}
		}
	}
}
