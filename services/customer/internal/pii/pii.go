// Package pii keeps customers' personal data unreadable at rest: it owns the
// key hierarchy, seals and opens field values, and computes the blind indexes
// that let exact lookups work on sealed data. All crypto is Tink's (AEAD and
// PRF primitives, keysets encrypted with a key-encryption AEAD); nothing here
// implements a cipher.
//
// The hierarchy (DESIGN.md §3 Data, RELIABILITY.md §1.7, §1.9):
//
//	master key           32 bytes from config, never stored; X-AES-256-GCM
//	└─ tenant_keys       per tenant, created on first use: an AEAD keyset
//	   │                 (X-AES-256-GCM) and a PRF keyset (HMAC-SHA256),
//	   │                 each encrypted with the master key
//	   └─ customer_keys  per customer: an AEAD keyset (X-AES-256-GCM)
//	      │              encrypted with the tenant AEAD
//	      └─ fields      display name, email, phone, stored responses…
//
// X-AES-256-GCM is AES-256-GCM with a 192-bit random nonce (a per-message
// key is derived from the first 96 bits): the extended-nonce AEAD
// RELIABILITY.md asks for, so random nonces never need counting.
//
// Every ciphertext's associated data binds where it belongs: a field to
// (tenant, table, column, customer), a customer keyset to (tenant, customer),
// a tenant keyset to (tenant, role). A ciphertext copied to another row,
// column or tenant therefore fails to open, and the failure is ErrIntegrity,
// never a wrong value. Deleting a customer's key row makes every field sealed
// for that customer unreadable: that is how an erase shreds.
//
// What this package must not do: log or put into an error any plaintext,
// key or ciphertext; cache a key beyond what the database still holds (the
// customer key cache is addressed by the wrapped key read from the database,
// so a deleted key is never served from memory).
package pii

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/aead/xaesgcm"
	"github.com/tink-crypto/tink-go/v2/insecuresecretdataaccess"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/prf"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/secretdata"
	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/rapporthq/rapport/services/customer/internal/pii/dbgen"
)

// MasterKeySize is the length of the master key in bytes.
const MasterKeySize = 32

var (
	// ErrKeyDestroyed means the customer's data key is gone (erased): the
	// customer's sealed fields can never be read again.
	ErrKeyDestroyed = errors.New("pii: customer data key destroyed")
	// ErrNoTenantKeys means the tenant has sealed nothing yet.
	ErrNoTenantKeys = errors.New("pii: tenant has no keys")
	// ErrIntegrity means a ciphertext or wrapped key did not open: the wrong
	// master key, a damaged value, or a value moved to another row, column or
	// tenant. It is never a reason to return data.
	ErrIntegrity = errors.New("pii: ciphertext does not open under its key and context")
)

// Column names where a sealed value lives; it is part of the value's
// associated data, so a ciphertext only opens in its own column.
type Column struct {
	Table string
	Name  string
}

func (c Column) String() string { return c.Table + "." + c.Name }

// The sealed columns. A new personal field (birthday, address, notes) adds
// its Column here and needs nothing else from this package.
var (
	DisplayName = Column{Table: "customers", Name: "display_name"}
	Email       = Column{Table: "customers", Name: "email"}
	Phone       = Column{Table: "customers", Name: "phone"}
	// StoredResponse is an idempotent API response kept for retries; it
	// holds the profile it returned, so it is sealed for that customer.
	StoredResponse = Column{Table: "idempotency_keys", Name: "response"}
)

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Config configures a Sealer; zero values are defaults, except MasterKey.
type Config struct {
	// MasterKey is the key-encryption key of every tenant's keys:
	// MasterKeySize random bytes. Required. Losing it loses every
	// customer's personal data; changing it makes existing data unreadable.
	MasterKey []byte
	// KeyCacheTTL bounds how long unwrapped keys stay in memory; 0 means a
	// minute. Short, so an erased customer's key leaves memory soon after.
	KeyCacheTTL time.Duration
	// KeyCacheSize bounds the cached keys; 0 means 10,000.
	KeyCacheSize int
	// BlindIndexBits is the blind index length; 0 means BlindIndexBits.
	// Only tests set it, to force collisions. Changing it in production
	// would orphan every stored index.
	BlindIndexBits int
	// Now is the clock of the cache; nil means time.Now.
	Now func() time.Time
}

// Sealer seals and opens personal data and computes blind indexes. It is
// safe for concurrent use.
type Sealer struct {
	master tink.AEAD
	pool   DB
	q      *dbgen.Queries
	bits   int
	cache  *keyCache
}

// New returns a Sealer. pool is used on its own (outside the caller's
// transaction) only to create a tenant's keys on first use, so that keys in
// the cache are always committed ones.
func New(pool DB, cfg Config) (*Sealer, error) {
	if len(cfg.MasterKey) != MasterKeySize {
		return nil, fmt.Errorf("pii: master key must be %d bytes, got %d", MasterKeySize, len(cfg.MasterKey))
	}
	if pool == nil {
		return nil, errors.New("pii: a database pool is required")
	}
	master, err := masterAEAD(cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	bits := cfg.BlindIndexBits
	if bits == 0 {
		bits = BlindIndexBits
	}
	if bits < 1 || bits > 31 {
		return nil, fmt.Errorf("pii: blind index bits must be in [1, 31], got %d", bits)
	}
	ttl := cfg.KeyCacheTTL
	if ttl <= 0 {
		ttl = time.Minute
	}
	size := cfg.KeyCacheSize
	if size <= 0 {
		size = 10_000
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Sealer{master: master, pool: pool, q: dbgen.New(), bits: bits, cache: newKeyCache(ttl, size, now)}, nil
}

// GenerateMasterKey returns a new random master key.
func GenerateMasterKey() ([]byte, error) {
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("pii: generate master key: %w", err)
	}
	return k, nil
}

// masterAEAD turns the raw master key into a Tink AEAD: an X-AES-256-GCM key
// without output prefix (there is one master key; rotating it means
// re-wrapping tenant_keys, a few rows per tenant).
func masterAEAD(raw []byte) (tink.AEAD, error) {
	params, err := xaesgcm.NewParameters(xaesgcm.VariantNoPrefix, 12)
	if err != nil {
		return nil, fmt.Errorf("pii: master key parameters: %w", err)
	}
	k, err := xaesgcm.NewKey(secretdata.NewBytesFromData(raw, insecuresecretdataaccess.Token{}), 0, params)
	if err != nil {
		return nil, fmt.Errorf("pii: master key: %w", err)
	}
	m := keyset.NewManager()
	id, err := m.AddKey(k)
	if err != nil {
		return nil, fmt.Errorf("pii: master key: %w", err)
	}
	if err := m.SetPrimary(id); err != nil {
		return nil, fmt.Errorf("pii: master key: %w", err)
	}
	h, err := m.Handle()
	if err != nil {
		return nil, fmt.Errorf("pii: master key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("pii: master key: %w", err)
	}
	return a, nil
}

// Seal encrypts plaintext for one customer's column. The customer's key must
// exist (TenantKeys.NewCustomerKey).
func (s *Sealer) Seal(ctx context.Context, db DB, tenantID, customerID uuid.UUID, col Column, plaintext []byte) ([]byte, error) {
	k, err := s.CustomerKey(ctx, db, tenantID, customerID)
	if err != nil {
		return nil, err
	}
	return k.Seal(col, plaintext)
}

// Open decrypts what Seal sealed for the same customer and column.
func (s *Sealer) Open(ctx context.Context, db DB, tenantID, customerID uuid.UUID, col Column, ciphertext []byte) ([]byte, error) {
	k, err := s.CustomerKey(ctx, db, tenantID, customerID)
	if err != nil {
		return nil, err
	}
	return k.Open(col, ciphertext)
}

// CustomerKey returns one customer's data key; ErrKeyDestroyed if it is gone.
func (s *Sealer) CustomerKey(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (*CustomerKey, error) {
	keys, err := s.CustomerKeys(ctx, db, tenantID, []uuid.UUID{customerID})
	if err != nil {
		return nil, err
	}
	k, ok := keys[customerID]
	if !ok {
		return nil, ErrKeyDestroyed
	}
	return k, nil
}

// CustomerKeys returns the data keys of the given customers, in one query.
// A customer without a key (erased, or never created) is absent from the
// map.
func (s *Sealer) CustomerKeys(ctx context.Context, db DB, tenantID uuid.UUID, customerIDs []uuid.UUID) (map[uuid.UUID]*CustomerKey, error) {
	out := make(map[uuid.UUID]*CustomerKey, len(customerIDs))
	if len(customerIDs) == 0 {
		return out, nil
	}
	rows, err := s.q.CustomerKeysGet(ctx, db, dbgen.CustomerKeysGetParams{TenantID: tenantID, CustomerIds: customerIDs})
	if err != nil {
		return nil, fmt.Errorf("read customer keys: %w", err)
	}
	if len(rows) == 0 {
		return out, nil
	}
	t, err := s.LoadTenant(ctx, db, tenantID)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		k, err := t.unwrapCustomerKey(r.CustomerID, r.Keyset)
		if err != nil {
			return nil, err
		}
		out[r.CustomerID] = k
	}
	return out, nil
}

// Tenant returns the tenant's keys, creating them on first use.
func (s *Sealer) Tenant(ctx context.Context, db DB, tenantID uuid.UUID) (*TenantKeys, error) {
	return s.tenant(ctx, db, tenantID, true)
}

// LoadTenant returns the tenant's keys; ErrNoTenantKeys if it has none yet.
// Reads use it, so reading never creates keys.
func (s *Sealer) LoadTenant(ctx context.Context, db DB, tenantID uuid.UUID) (*TenantKeys, error) {
	return s.tenant(ctx, db, tenantID, false)
}

func (s *Sealer) tenant(ctx context.Context, db DB, tenantID uuid.UUID, create bool) (*TenantKeys, error) {
	if t, ok := s.cache.tenant(tenantID); ok {
		return t, nil
	}
	row, err := s.q.TenantKeysGet(ctx, db, tenantID)
	switch {
	case err == nil:
		return s.unwrapTenant(tenantID, row.AeadKeyset, row.PrfKeyset)
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, fmt.Errorf("read tenant keys: %w", err)
	case !create:
		return nil, ErrNoTenantKeys
	}

	// First use. The keys are inserted on the pool, committed at once, not
	// in the caller's transaction: were they cached from a transaction that
	// later rolled back, another request could create different keys and
	// this process would seal with keys no one else can open.
	aeadKeyset, err := newWrappedKeyset(aead.XAES256GCM192BitNonceKeyTemplate(), s.master, tenantAD(tenantID, roleAEAD))
	if err != nil {
		return nil, err
	}
	prfKeyset, err := newWrappedKeyset(prf.HMACSHA256PRFKeyTemplate(), s.master, tenantAD(tenantID, rolePRF))
	if err != nil {
		return nil, err
	}
	ins, err := s.q.TenantKeysInsert(ctx, s.pool, dbgen.TenantKeysInsertParams{
		TenantID: tenantID, AeadKeyset: aeadKeyset, PrfKeyset: prfKeyset})
	if err == nil {
		return s.unwrapTenant(tenantID, ins.AeadKeyset, ins.PrfKeyset)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("create tenant keys: %w", err)
	}
	// Another request created them first; use theirs.
	row, err = s.q.TenantKeysGet(ctx, s.pool, tenantID)
	if err != nil {
		return nil, fmt.Errorf("read tenant keys: %w", err)
	}
	return s.unwrapTenant(tenantID, row.AeadKeyset, row.PrfKeyset)
}

func (s *Sealer) unwrapTenant(tenantID uuid.UUID, wrappedAEAD, wrappedPRF []byte) (*TenantKeys, error) {
	ah, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrappedAEAD)), s.master, tenantAD(tenantID, roleAEAD))
	if err != nil {
		return nil, fmt.Errorf("unwrap tenant AEAD keyset: %w", ErrIntegrity)
	}
	a, err := aead.New(ah)
	if err != nil {
		return nil, fmt.Errorf("tenant AEAD: %w", err)
	}
	ph, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrappedPRF)), s.master, tenantAD(tenantID, rolePRF))
	if err != nil {
		return nil, fmt.Errorf("unwrap tenant PRF keyset: %w", ErrIntegrity)
	}
	p, err := prf.NewPRFSet(ph)
	if err != nil {
		return nil, fmt.Errorf("tenant PRF: %w", err)
	}
	t := &TenantKeys{s: s, id: tenantID, aead: a, prf: p}
	s.cache.putTenant(tenantID, t)
	return t, nil
}

// TenantKeys are one tenant's unwrapped keys.
type TenantKeys struct {
	s    *Sealer
	id   uuid.UUID
	aead tink.AEAD
	prf  *prf.Set
}

// NewCustomerKey creates a customer's data key and stores it, wrapped, in
// db (the transaction that creates the customer: the key row's foreign key
// is checked at commit).
func (t *TenantKeys) NewCustomerKey(ctx context.Context, db DB, customerID uuid.UUID) (*CustomerKey, error) {
	h, err := keyset.NewHandle(aead.XAES256GCM192BitNonceKeyTemplate())
	if err != nil {
		return nil, fmt.Errorf("new customer key: %w", err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), t.aead, customerAD(t.id, customerID)); err != nil {
		return nil, fmt.Errorf("wrap customer key: %w", err)
	}
	if err := t.s.q.CustomerKeyInsert(ctx, db, dbgen.CustomerKeyInsertParams{
		TenantID: t.id, CustomerID: customerID, Keyset: buf.Bytes()}); err != nil {
		return nil, fmt.Errorf("store customer key: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("customer AEAD: %w", err)
	}
	return &CustomerKey{tenant: t.id, customer: customerID, aead: a}, nil
}

func (t *TenantKeys) unwrapCustomerKey(customerID uuid.UUID, wrapped []byte) (*CustomerKey, error) {
	ck := customerCacheKey{tenant: t.id, customer: customerID, wrapped: sha256.Sum256(wrapped)}
	if a, ok := t.s.cache.customer(ck); ok {
		return &CustomerKey{tenant: t.id, customer: customerID, aead: a}, nil
	}
	h, err := keyset.ReadWithAssociatedData(keyset.NewBinaryReader(bytes.NewReader(wrapped)), t.aead, customerAD(t.id, customerID))
	if err != nil {
		return nil, fmt.Errorf("unwrap customer key: %w", ErrIntegrity)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("customer AEAD: %w", err)
	}
	t.s.cache.putCustomer(ck, a)
	return &CustomerKey{tenant: t.id, customer: customerID, aead: a}, nil
}

// CustomerKey is one customer's unwrapped data key.
type CustomerKey struct {
	tenant   uuid.UUID
	customer uuid.UUID
	aead     tink.AEAD
}

// Seal encrypts plaintext for col of this customer.
func (k *CustomerKey) Seal(col Column, plaintext []byte) ([]byte, error) {
	ct, err := k.aead.Encrypt(plaintext, fieldAD(k.tenant, col, k.customer))
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", col, err)
	}
	return ct, nil
}

// Open decrypts a value sealed for col of this customer; a value sealed for
// anything else is ErrIntegrity.
func (k *CustomerKey) Open(col Column, ciphertext []byte) ([]byte, error) {
	pt, err := k.aead.Decrypt(ciphertext, fieldAD(k.tenant, col, k.customer))
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", col, ErrIntegrity)
	}
	return pt, nil
}

func newWrappedKeyset(tpl *tinkpb.KeyTemplate, kek tink.AEAD, ad []byte) ([]byte, error) {
	h, err := keyset.NewHandle(tpl)
	if err != nil {
		return nil, fmt.Errorf("new keyset: %w", err)
	}
	var buf bytes.Buffer
	if err := h.WriteWithAssociatedData(keyset.NewBinaryWriter(&buf), kek, ad); err != nil {
		return nil, fmt.Errorf("wrap keyset: %w", err)
	}
	return buf.Bytes(), nil
}

// Associated data. Each is a label and length-prefixed parts, so no two
// contexts encode alike.
const (
	roleAEAD = "aead_keyset"
	rolePRF  = "prf_keyset"
)

func tenantAD(tenantID uuid.UUID, role string) []byte {
	return encodeAD("tenant_keys", []byte(role), tenantID[:])
}

func customerAD(tenantID, customerID uuid.UUID) []byte {
	return encodeAD("customer_keys", []byte("keyset"), tenantID[:], customerID[:])
}

func fieldAD(tenantID uuid.UUID, col Column, customerID uuid.UUID) []byte {
	return encodeAD("field", tenantID[:], []byte(col.Table), []byte(col.Name), customerID[:])
}

func encodeAD(label string, parts ...[]byte) []byte {
	b := append([]byte("rapport.pii.v1\x00"), label...)
	for _, p := range parts {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p))) //nolint:gosec // parts are ids and names, far below 64 KiB
		b = append(b, p...)
	}
	return b
}
