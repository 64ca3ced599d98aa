package pii_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

var spec = pgdbtest.Spec{Schema: "customer", Migrations: customer.Migrations()}

type testBundle struct {
	pool   *pgxpool.Pool
	master []byte
	sealer *pii.Sealer
	tenant uuid.UUID
}

type setupOpts struct {
	bits int
	now  func() time.Time
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	pool := pgdbtest.NewPool(t, spec)
	master, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	b := &testBundle{pool: pool, master: master, tenant: uuid.New()}
	b.sealer = b.newSealer(t, master, opts)
	return b
}

func (b *testBundle) newSealer(t *testing.T, master []byte, opts *setupOpts) *pii.Sealer {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	s, err := pii.New(b.pool, pii.Config{MasterKey: master, BlindIndexBits: opts.bits, Now: opts.now})
	require.NoError(t, err)
	return s
}

// newCustomer commits a customer row with a data key, as the store does,
// and returns its id. The row's sealed name is a placeholder: these tests
// seal and open through the Sealer directly.
func (b *testBundle) newCustomer(t *testing.T, tenant uuid.UUID) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	require.NoError(t, pgdb.InTx(ctx, b.pool, func(tx pgx.Tx) error {
		tk, err := b.sealer.Tenant(ctx, tx, tenant)
		if err != nil {
			return err
		}
		if _, err := tk.NewCustomerKey(ctx, tx, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO customers (tenant_id, id, display_name_sealed) VALUES ($1, $2, '\x00')`, tenant, id)
		return err
	}))
	return id
}

func (b *testBundle) seal(t *testing.T, tenant, id uuid.UUID, col pii.Column, v string) []byte {
	t.Helper()
	ct, err := b.sealer.Seal(context.Background(), b.pool, tenant, id, col, []byte(v))
	require.NoError(t, err)
	return ct
}

func TestNew(t *testing.T) {
	t.Parallel()

	t.Run("RefusesAMasterKeyOfTheWrongLength", func(t *testing.T) {
		t.Parallel()
		for _, n := range []int{0, 16, 31, 33, 64} {
			_, err := pii.New(&pgxpool.Pool{}, pii.Config{MasterKey: make([]byte, n)})
			require.Error(t, err, "%d bytes", n)
		}
	})

	t.Run("RefusesBlindIndexLengthsOutsideOneTo31", func(t *testing.T) {
		t.Parallel()
		for _, bits := range []int{-1, 32, 64} {
			_, err := pii.New(&pgxpool.Pool{}, pii.Config{MasterKey: make([]byte, 32), BlindIndexBits: bits})
			require.Error(t, err, "%d bits", bits)
		}
	})
}

func TestSealer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("OpensWhatItSealed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		id := b.newCustomer(t, b.tenant)
		ct := b.seal(t, b.tenant, id, pii.Email, "ada@example.com")
		require.NotContains(t, string(ct), "ada@example.com")
		pt, err := b.sealer.Open(ctx, b.pool, b.tenant, id, pii.Email, ct)
		require.NoError(t, err)
		require.Equal(t, "ada@example.com", string(pt))

		again := b.seal(t, b.tenant, id, pii.Email, "ada@example.com")
		require.NotEqual(t, ct, again, "random nonces: equal values never seal alike")
	})

	t.Run("ACiphertextOpensOnlyInItsColumnAndRow", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		ct := b.seal(t, b.tenant, ada, pii.Email, "ada@example.com")

		_, err := b.sealer.Open(ctx, b.pool, b.tenant, ada, pii.Phone, ct)
		require.ErrorIs(t, err, pii.ErrIntegrity, "moved to another column")
		_, err = b.sealer.Open(ctx, b.pool, b.tenant, ada, pii.DisplayName, ct)
		require.ErrorIs(t, err, pii.ErrIntegrity, "moved to another column")
		_, err = b.sealer.Open(ctx, b.pool, b.tenant, bob, pii.Email, ct)
		require.ErrorIs(t, err, pii.ErrIntegrity, "moved to another customer")
		require.NotContains(t, err.Error(), "ada", "the error names no value")
	})

	t.Run("AKeyMovedToAnotherTenantDoesNotUnwrap", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada := b.newCustomer(t, b.tenant)
		ct := b.seal(t, b.tenant, ada, pii.Email, "ada@example.com")
		other := uuid.New()
		b.newCustomer(t, other) // gives the other tenant keys of its own
		// A database writer copies Ada's row and key into the other tenant.
		_, err := b.pool.Exec(ctx, `INSERT INTO customers (tenant_id, id, display_name_sealed) VALUES ($1, $2, '\x00')`, other, ada)
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `INSERT INTO customer_keys (tenant_id, customer_id, keyset)
			SELECT $1, customer_id, keyset FROM customer_keys WHERE tenant_id = $2 AND customer_id = $3`, other, b.tenant, ada)
		require.NoError(t, err)
		_, err = b.sealer.Open(ctx, b.pool, other, ada, pii.Email, ct)
		require.ErrorIs(t, err, pii.ErrIntegrity)
	})

	t.Run("AWrongMasterKeyOpensNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada := b.newCustomer(t, b.tenant)
		ct := b.seal(t, b.tenant, ada, pii.Email, "ada@example.com")
		otherMaster, err := pii.GenerateMasterKey()
		require.NoError(t, err)
		wrong := b.newSealer(t, otherMaster, nil)

		_, err = wrong.Open(ctx, b.pool, b.tenant, ada, pii.Email, ct)
		require.ErrorIs(t, err, pii.ErrIntegrity)
		_, err = wrong.LoadTenant(ctx, b.pool, b.tenant)
		require.ErrorIs(t, err, pii.ErrIntegrity)
		_, err = wrong.Tenant(ctx, b.pool, b.tenant)
		require.ErrorIs(t, err, pii.ErrIntegrity, "it must not make itself new keys either")
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM tenant_keys WHERE tenant_id = $1`, b.tenant).Scan(&n))
		require.Equal(t, 1, n)

		pt, err := b.sealer.Open(ctx, b.pool, b.tenant, ada, pii.Email, ct)
		require.NoError(t, err, "the right key still opens it")
		require.Equal(t, "ada@example.com", string(pt))
	})

	t.Run("DeletingACustomerKeyShredsThatCustomerOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		adaCT := b.seal(t, b.tenant, ada, pii.Email, "ada@example.com")
		bobCT := b.seal(t, b.tenant, bob, pii.Email, "bob@example.com")
		_, err := b.sealer.Open(ctx, b.pool, b.tenant, ada, pii.Email, adaCT)
		require.NoError(t, err, "Ada's key is now in the cache")

		_, err = b.pool.Exec(ctx, `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, ada)
		require.NoError(t, err)

		_, err = b.sealer.Open(ctx, b.pool, b.tenant, ada, pii.Email, adaCT)
		require.ErrorIs(t, err, pii.ErrKeyDestroyed, "a cached key is never served for a deleted one")
		pt, err := b.sealer.Open(ctx, b.pool, b.tenant, bob, pii.Email, bobCT)
		require.NoError(t, err)
		require.Equal(t, "bob@example.com", string(pt))
	})

	t.Run("ACachedKeyIsNeverUsedForAnotherStoredKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		bobCT := b.seal(t, b.tenant, bob, pii.Email, "bob@example.com") // caches Bob's key
		// A database writer replaces Bob's key with Ada's.
		_, err := b.pool.Exec(ctx, `UPDATE customer_keys SET keyset = (SELECT keyset FROM customer_keys WHERE customer_id = $1)
			WHERE customer_id = $2`, ada, bob)
		require.NoError(t, err)
		_, err = b.sealer.Open(ctx, b.pool, b.tenant, bob, pii.Email, bobCT)
		require.ErrorIs(t, err, pii.ErrIntegrity, "the cache answers only for the key the database holds")
	})

	t.Run("ReadingNeverCreatesTenantKeys", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.sealer.LoadTenant(ctx, b.pool, b.tenant)
		require.ErrorIs(t, err, pii.ErrNoTenantKeys)
		keys, err := b.sealer.CustomerKeys(ctx, b.pool, b.tenant, []uuid.UUID{uuid.New()})
		require.NoError(t, err)
		require.Empty(t, keys)
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM tenant_keys`).Scan(&n))
		require.Zero(t, n)
	})

	t.Run("ConcurrentFirstUsesAgreeOnOneTenantKeySet", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		const workers = 16
		indexes := make([]int32, workers)
		var wg sync.WaitGroup
		for i := range workers {
			s := b.newSealer(t, b.master, nil) // a replica each: no shared cache
			wg.Go(func() {
				tk, err := s.Tenant(ctx, b.pool, b.tenant)
				if err != nil {
					t.Error(err)
					return
				}
				indexes[i], err = tk.BlindIndex(pii.Email, "ada@example.com")
				if err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		for _, v := range indexes {
			require.Equal(t, indexes[0], v, "every replica indexes with the same key")
		}
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM tenant_keys WHERE tenant_id = $1`, b.tenant).Scan(&n))
		require.Equal(t, 1, n)
	})

	t.Run("TenantKeysOutliveTheCallersRolledBackTransaction", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		tk, err := b.sealer.Tenant(ctx, tx, b.tenant)
		require.NoError(t, err)
		want, err := tk.BlindIndex(pii.Email, "ada@example.com")
		require.NoError(t, err)
		require.NoError(t, tx.Rollback(ctx))

		// Another replica (no cache) must find the very keys this one cached.
		other, err := b.newSealer(t, b.master, nil).LoadTenant(ctx, b.pool, b.tenant)
		require.NoError(t, err)
		got, err := other.BlindIndex(pii.Email, "ada@example.com")
		require.NoError(t, err)
		require.Equal(t, want, got)
	})

	t.Run("CachedTenantKeysExpireAfterTheTTL", func(t *testing.T) {
		t.Parallel()
		now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
		var mu sync.Mutex
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		b := setup(t, &setupOpts{now: clock})
		_, err := b.sealer.Tenant(ctx, b.pool, b.tenant)
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `DELETE FROM tenant_keys WHERE tenant_id = $1`, b.tenant)
		require.NoError(t, err)

		_, err = b.sealer.LoadTenant(ctx, b.pool, b.tenant)
		require.NoError(t, err, "served from the cache within the TTL")
		mu.Lock()
		now = now.Add(time.Minute)
		mu.Unlock()
		_, err = b.sealer.LoadTenant(ctx, b.pool, b.tenant)
		require.ErrorIs(t, err, pii.ErrNoTenantKeys, "read again after the TTL")
	})
}

func TestBlindIndex(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil)
	tk, err := b.sealer.Tenant(ctx, b.pool, b.tenant)
	require.NoError(t, err)
	index := func(tk *pii.TenantKeys, col pii.Column, v string) int32 {
		t.Helper()
		i, err := tk.BlindIndex(col, v)
		require.NoError(t, err)
		return i
	}
	values := []string{"ada@example.com", "bob@example.com", "+442071234567", "carol", "dave", "eve", "frank", "grace"}

	t.Run("EqualNormalisedValuesIndexEqual", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, index(tk, pii.Email, "ada@example.com"), index(tk, pii.Email, "  Ada@Example.COM "))
		require.Equal(t, index(tk, pii.Phone, "+442071234567"), index(tk, pii.Phone, "+44 20 7123-4567"))
	})

	t.Run("ColumnsAndTenantsIndexApart", func(t *testing.T) {
		t.Parallel()
		other, err := b.sealer.Tenant(ctx, b.pool, uuid.New())
		require.NoError(t, err)
		sameColumn, sameTenant := 0, 0
		for _, v := range values {
			if index(tk, pii.Email, v) == index(tk, pii.Phone, v) {
				sameColumn++
			}
			if index(tk, pii.Email, v) == index(other, pii.Email, v) {
				sameTenant++
			}
		}
		// Each pair agrees by chance with probability 2^-16.
		require.Less(t, sameColumn, len(values), "the column is part of the index input")
		require.Less(t, sameTenant, len(values), "each tenant has its own index key")
	})

	t.Run("IndexesFitTheirBits", func(t *testing.T) {
		t.Parallel()
		for _, bits := range []int{1, 2, 8, pii.BlindIndexBits, 31} {
			s := b.newSealer(t, b.master, &setupOpts{bits: bits})
			tk, err := s.Tenant(ctx, b.pool, b.tenant)
			require.NoError(t, err)
			for _, v := range values {
				i := index(tk, pii.Email, v)
				require.GreaterOrEqual(t, i, int32(0))
				require.Less(t, int64(i), int64(1)<<bits, "%d bits", bits)
			}
		}
	})

	t.Run("NormalisesAsDocumented", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, "ada@example.com", pii.Normalise(pii.Email, " Ada@EXAMPLE.com\t"))
		require.Equal(t, "+442071234567", pii.Normalise(pii.Phone, "+44 (20) 7123-4567"))
		require.Equal(t, " Ada ", pii.Normalise(pii.DisplayName, " Ada "))
	})
}

// TestRequestFingerprint: the fingerprint of a request ignores its
// request_id and nothing else, and is the tenant's Fingerprint of the
// request without it.
func TestRequestFingerprint(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tk, err := b.sealer.Tenant(context.Background(), b.pool, b.tenant)
	require.NoError(t, err)
	fingerprint := func(req proto.Message) []byte {
		t.Helper()
		fp, err := tk.RequestFingerprint("test", req)
		require.NoError(t, err)
		return fp
	}
	req := &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: "Ada"}, RequestId: "r1"}
	stripped := &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: "Ada"}}
	b1, err := proto.MarshalOptions{Deterministic: true}.Marshal(stripped)
	require.NoError(t, err)
	want, err := tk.Fingerprint("test", b1)
	require.NoError(t, err)
	require.Equal(t, want, fingerprint(req))
	require.Equal(t, "r1", req.GetRequestId(), "the request itself is left as it is")
	require.Equal(t, want, fingerprint(&customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: "Ada"}, RequestId: "r2"}))
	require.NotEqual(t, want, fingerprint(&customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: "Bob"}, RequestId: "r1"}))
}

// TestTruncationRule: RELIABILITY.md §1.7 wants 2 ≤ C < √R. The documented
// range of R for BlindIndexBits holds it at both ends and at the design
// points, and is tight: one row fewer or the upper bound itself break it.
func TestTruncationRule(t *testing.T) {
	t.Parallel()
	bits := pii.BlindIndexBits
	minRows, maxRows := pii.SafeRows(bits)
	require.Equal(t, float64(131_072), minRows, "the range documented beside BlindIndexBits")
	require.Equal(t, float64(4_294_967_296), maxRows, "the range documented beside BlindIndexBits")
	holds := func(r float64) bool {
		c := pii.Coincidences(r, bits)
		return 2 <= c && c < math.Sqrt(r)
	}

	for _, r := range []float64{minRows, 1e6, 1e7, 1e8, 1e9, maxRows - 1} {
		require.True(t, holds(r), "R=%.0f: C=%.2f, √R=%.1f", r, pii.Coincidences(r, bits), math.Sqrt(r))
	}
	require.InDelta(t, 15.26, pii.Coincidences(1e6, bits), 0.01, "design point: about 15 candidates per lookup")
	require.False(t, holds(minRows-1), "the lower end is tight")
	require.False(t, holds(maxRows), "the upper end is tight")
}
