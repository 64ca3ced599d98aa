package store_test

import (
	"context"
	"fmt"
	"io/fs"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/store"
)

var spec = pgdbtest.Spec{Schema: "customer", Migrations: customer.Migrations()}

type testBundle struct {
	pool   *pgxpool.Pool
	store  *store.Store
	tenant uuid.UUID
}

type setupOpts struct {
	// bits shortens the blind index, to force collisions.
	bits int
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	pool := pgdbtest.NewPool(t, spec)
	master, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	sealer, err := pii.New(pool, pii.Config{MasterKey: master, BlindIndexBits: opts.bits})
	require.NoError(t, err)
	return &testBundle{pool: pool, store: store.New(sealer), tenant: uuid.New()}
}

func (b *testBundle) insert(t *testing.T, c profile.Customer) profile.Customer {
	t.Helper()
	if c.TenantID == uuid.Nil {
		c.TenantID = b.tenant
	}
	c.ID = uuid.Must(uuid.NewV7())
	c.Tags = []string{}
	c.CreateTime = time.Now().UTC()
	var out profile.Customer
	require.NoError(t, pgdb.InTx(context.Background(), b.pool, func(tx pgx.Tx) error {
		var err error
		out, err = b.store.Insert(context.Background(), tx, c)
		return err
	}))
	return out
}

func (b *testBundle) get(t *testing.T, id uuid.UUID) (profile.Customer, error) {
	t.Helper()
	return b.store.Get(context.Background(), b.pool, b.tenant, id, false)
}

func (b *testBundle) lookup(t *testing.T, q profile.LookupQuery) []uuid.UUID {
	t.Helper()
	if q.TenantID == uuid.Nil {
		q.TenantID = b.tenant
	}
	if q.Limit == 0 {
		q.Limit = 100
	}
	found, err := b.store.Lookup(context.Background(), b.pool, q)
	require.NoError(t, err)
	out := []uuid.UUID{}
	for _, c := range found {
		out = append(out, c.ID)
	}
	return out
}

func person(i int) profile.Customer {
	return profile.Customer{
		DisplayName: fmt.Sprintf("Person %d", i),
		Email:       fmt.Sprintf("person%d@example.com", i),
		Phone:       fmt.Sprintf("+4915100000%03d", i),
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("ReadsBackWhatItSealed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		in := person(1)
		in.Locale, in.TimeZone = "en-GB", "Europe/London"
		created := b.insert(t, in)
		got, err := b.get(t, created.ID)
		require.NoError(t, err)
		require.Equal(t, created, got)
		require.Equal(t, "Person 1", got.DisplayName)
		require.Equal(t, "person1@example.com", got.Email)
		require.Equal(t, "+4915100000001", got.Phone)
		require.False(t, got.Erased)

		page, err := b.store.List(ctx, b.pool, profile.ListQuery{TenantID: b.tenant, Limit: 10})
		require.NoError(t, err)
		require.Equal(t, []profile.Customer{created}, page)
	})

	t.Run("RowsHoldCiphertextAndEmptyFieldsHoldNothing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.insert(t, profile.Customer{DisplayName: "Ada Lovelace", Email: "ada@example.com"})
		var (
			name, email, phone []byte
			emailBidx          *int32
			phoneBidx          *int32
		)
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT display_name_sealed, email_sealed, phone_sealed, email_bidx, phone_bidx
			FROM customers WHERE id = $1`, c.ID).Scan(&name, &email, &phone, &emailBidx, &phoneBidx))
		require.NotContains(t, string(name), "Ada")
		require.NotContains(t, string(email), "ada@")
		require.NotNil(t, emailBidx)
		require.Nil(t, phone, "an empty phone is stored as NULL")
		require.Nil(t, phoneBidx, "and not indexed")
	})

	t.Run("UpdateSealsAfresh", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.insert(t, person(1))
		var before []byte
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT email_sealed FROM customers WHERE id = $1`, c.ID).Scan(&before))
		c.Email, c.UpdateTime = "new@example.com", time.Now().UTC()
		var updated profile.Customer
		require.NoError(t, pgdb.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			var err error
			updated, err = b.store.Update(ctx, tx, c)
			return err
		}))
		require.Equal(t, c.Version+1, updated.Version)
		got, err := b.get(t, c.ID)
		require.NoError(t, err)
		require.Equal(t, "new@example.com", got.Email)
		require.Equal(t, "Person 1", got.DisplayName)
		require.Equal(t, []uuid.UUID{c.ID}, b.lookup(t, profile.LookupQuery{Email: "new@example.com"}))
		require.Empty(t, b.lookup(t, profile.LookupQuery{Email: "person1@example.com"}), "the old index is gone")
	})
}

func TestLookup(t *testing.T) {
	t.Parallel()

	t.Run("FindsExactlyTheMatchAmongForcedCollisions", func(t *testing.T) {
		t.Parallel()
		// One-bit indexes: every customer shares its index with about half
		// the tenant. Only decrypt-and-compare tells them apart.
		b := setup(t, &setupOpts{bits: 1})
		var people []profile.Customer
		for i := range 20 {
			people = append(people, b.insert(t, person(i)))
		}
		for _, i := range []int{0, 7, 19} {
			var colliding int
			require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM customers
				WHERE tenant_id = $1 AND email_bidx = (SELECT email_bidx FROM customers WHERE id = $2) AND id <> $2`,
				b.tenant, people[i].ID).Scan(&colliding))
			require.Positive(t, colliding, "the test must force collisions")
			require.Equal(t, []uuid.UUID{people[i].ID}, b.lookup(t, profile.LookupQuery{Email: people[i].Email}))
			require.Equal(t, []uuid.UUID{people[i].ID}, b.lookup(t, profile.LookupQuery{Phone: people[i].Phone}))
		}
		require.Empty(t, b.lookup(t, profile.LookupQuery{Email: "nobody@example.com"}))
	})

	t.Run("MatchesNormalisedValues", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.insert(t, profile.Customer{DisplayName: "Ada", Email: "Ada@Example.com", Phone: "+442071234567"})
		require.Equal(t, []uuid.UUID{c.ID}, b.lookup(t, profile.LookupQuery{Email: "ada@example.COM"}))
		require.Equal(t, []uuid.UUID{c.ID}, b.lookup(t, profile.LookupQuery{Phone: "+44 20 7123 4567"}))
		found, err := b.store.Lookup(context.Background(), b.pool, profile.LookupQuery{TenantID: b.tenant, Email: "ada@example.com", Limit: 10})
		require.NoError(t, err)
		require.Equal(t, "Ada@Example.com", found[0].Email, "returned as entered")
		require.Equal(t, "Ada", found[0].DisplayName)
	})

	t.Run("ReturnsEverySharerNewestFirstUpToTheLimit", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		first := b.insert(t, profile.Customer{DisplayName: "One", Email: "shared@example.com"})
		second := b.insert(t, profile.Customer{DisplayName: "Two", Email: "shared@example.com"})
		require.Equal(t, []uuid.UUID{second.ID, first.ID}, b.lookup(t, profile.LookupQuery{Email: "shared@example.com"}))
		require.Equal(t, []uuid.UUID{second.ID}, b.lookup(t, profile.LookupQuery{Email: "shared@example.com", Limit: 1}))
	})

	t.Run("StaysInsideTheTenant", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		mine := b.insert(t, person(1))
		b.insert(t, profile.Customer{TenantID: uuid.New(), DisplayName: "Twin", Email: person(1).Email})
		require.Equal(t, []uuid.UUID{mine.ID}, b.lookup(t, profile.LookupQuery{Email: person(1).Email}))
		require.Empty(t, b.lookup(t, profile.LookupQuery{TenantID: uuid.New(), Email: person(1).Email}),
			"a tenant without keys finds nothing, and gets no keys for asking")
	})
}

func TestTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("AnEmailCopiedToAnotherCustomerDoesNotOpen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.insert(t, person(1)), b.insert(t, person(2))
		_, err := b.pool.Exec(ctx, `UPDATE customers SET email_sealed = (SELECT email_sealed FROM customers WHERE id = $1) WHERE id = $2`, ada.ID, bob.ID)
		require.NoError(t, err)
		_, err = b.get(t, bob.ID)
		require.ErrorIs(t, err, pii.ErrIntegrity)
		require.NotContains(t, err.Error(), "person", "the error carries no value")
		_, err = b.store.List(ctx, b.pool, profile.ListQuery{TenantID: b.tenant, Limit: 10})
		require.ErrorIs(t, err, pii.ErrIntegrity, "a list fails closed too")
		got, err := b.get(t, ada.ID)
		require.NoError(t, err, "the source row is untouched")
		require.Equal(t, ada.Email, got.Email)
	})

	t.Run("AnEmailCopiedIntoThePhoneColumnDoesNotOpen", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada := b.insert(t, person(1))
		_, err := b.pool.Exec(ctx, `UPDATE customers SET phone_sealed = email_sealed WHERE id = $1`, ada.ID)
		require.NoError(t, err)
		_, err = b.get(t, ada.ID)
		require.ErrorIs(t, err, pii.ErrIntegrity)
		_, err = b.store.Lookup(ctx, b.pool, profile.LookupQuery{TenantID: b.tenant, Phone: ada.Phone, Limit: 10})
		require.ErrorIs(t, err, pii.ErrIntegrity, "a lookup that meets it fails closed")
	})

	t.Run("DeletingTheKeyErasesThatCustomerOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ada, bob := b.insert(t, person(1)), b.insert(t, person(2))
		_, err := b.get(t, ada.ID) // caches Ada's key
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, ada.ID)
		require.NoError(t, err)

		got, err := b.get(t, ada.ID)
		require.NoError(t, err)
		require.True(t, got.Erased)
		require.Empty(t, got.DisplayName+got.Email+got.Phone)
		require.Equal(t, ada.ID, got.ID, "non-personal fields stay")
		require.Empty(t, b.lookup(t, profile.LookupQuery{Email: ada.Email}))
		var updateErr error
		_ = pgdb.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			ada.DisplayName = "Back"
			_, updateErr = b.store.Update(ctx, tx, ada)
			return updateErr
		})
		require.ErrorIs(t, updateErr, profile.ErrNotFound, "nothing new is sealed for an erased customer")

		page, err := b.store.List(ctx, b.pool, profile.ListQuery{TenantID: b.tenant, Limit: 10})
		require.NoError(t, err)
		require.Len(t, page, 2, "paging still counts the erased row")
		require.Equal(t, bob, page[0])
		require.True(t, page[1].Erased)
		got, err = b.get(t, bob.ID)
		require.NoError(t, err)
		require.Equal(t, bob, got)
	})
}

// TestMigration00002 runs the PII migration over a dev database that holds
// plaintext profiles and their stored responses: they are deleted (no
// release ever stored them; SQL cannot encrypt), other methods' records
// stay, and the migration goes down and up again.
func TestMigration00002(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	all := customer.Migrations()
	upTo := func(n int) fstest.MapFS {
		fsys := fstest.MapFS{}
		for _, name := range []string{"00001_customers.sql", "00002_pii.sql"}[:n] {
			b, err := fs.ReadFile(all, name)
			require.NoError(t, err)
			fsys[name] = &fstest.MapFile{Data: b}
		}
		return fsys
	}
	dev := pgdbtest.Spec{Schema: "customer", Migrations: upTo(1)}
	pool := pgdbtest.NewPool(t, dev)
	for i := range 3 {
		_, err := pool.Exec(ctx, `INSERT INTO customers (tenant_id, id, display_name, email, phone) VALUES ($1, $2, $3, $4, '+15550000000')`,
			uuid.New(), uuid.New(), fmt.Sprintf("Dev %d", i), fmt.Sprintf("dev%d@example.com", i))
		require.NoError(t, err)
	}
	for _, method := range []string{"/rapport.customer.v1.CustomerService/CreateCustomer", "/rapport.customer.v1.ConsentService/SetConsent"} {
		_, err := pool.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, principal, request_id, method, request_hash, response)
			VALUES ($1, 'dev', $2, $3, '\x00', 'Dev 0 dev0@example.com')`, uuid.New(), uuid.New(), method)
		require.NoError(t, err)
	}

	require.NoError(t, pgdb.Migrate(ctx, pool, upTo(2), nil))
	var customers, keys int
	require.NoError(t, pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM idempotency_keys)`).Scan(&customers, &keys))
	require.Zero(t, customers, "plaintext dev profiles are deleted")
	require.Equal(t, 1, keys, "only the customer API's stored responses go")

	// Today's shape (every later migration on top) takes a sealed profile,
	// and every migration goes down to the first and up again.
	require.NoError(t, pgdb.Migrate(ctx, pool, all, nil))
	master, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	sealer, err := pii.New(pool, pii.Config{MasterKey: master})
	require.NoError(t, err)
	b := &testBundle{pool: pool, store: store.New(sealer), tenant: uuid.New()}
	c := b.insert(t, person(1))

	db := stdlib.OpenDBFromPool(pool)
	t.Cleanup(func() { _ = db.Close() })
	p, err := goose.NewProvider(goose.DialectPostgres, db, all, goose.WithDisableGlobalRegistry(true))
	require.NoError(t, err)
	_, err = p.DownTo(ctx, 1)
	require.NoError(t, err, "down")
	var tables int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables WHERE table_schema = 'customer'
		AND table_name IN ('tenant_keys', 'customer_keys')`).Scan(&tables))
	require.Zero(t, tables)
	_, err = p.Up(ctx)
	require.NoError(t, err, "and up again")
	_, err = b.get(t, c.ID)
	require.ErrorIs(t, err, profile.ErrNotFound, "going down deleted the profiles")
}
