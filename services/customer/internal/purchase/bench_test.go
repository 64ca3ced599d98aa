package purchase_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store"
)

// Benchmark sizes. The defaults keep `make bench` short on two cores; for a
// production-sized tenant run, for example:
//
//	RAPPORT_BENCH_RFM_CUSTOMERS=1000000 RAPPORT_BENCH_RFM_PURCHASES=10000000 \
//	  go test -run '^$' -bench Recompute -benchtime 3x -timeout 2h ./internal/purchase/
const (
	envBenchCustomers = "RAPPORT_BENCH_RFM_CUSTOMERS"
	envBenchPurchases = "RAPPORT_BENCH_RFM_PURCHASES"
)

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(tb, err, "%s", name)
	require.Positive(tb, n, "%s", name)
	return n
}

// BenchmarkRecordPurchase compares RecordPurchase through the gRPC server
// (interceptors, validation, idem.Do, the per-customer recompute, events)
// with the same statements run by hand on the pool, and with the bare
// minimum (the purchase, its item and one outbox row). Each baseline reports
// grpc/op-ratio: the gRPC path's ns/op over its own.
func BenchmarkRecordPurchase(b *testing.B) {
	tb := setup(b, nil)
	tenant := uuid.New()
	customers := tb.newCustomers(b, tenant, 1000)
	ctx := context.Background()
	var grpcNs, handNs, minimalNs float64
	seq := 0
	next := func() (uuid.UUID, string) {
		seq++
		return customers[seq%len(customers)], fmt.Sprintf("BENCH-%d", seq)
	}

	b.Run("GRPC", func(b *testing.B) {
		caller := as(tenant, "service")
		for b.Loop() {
			c, ref := next()
			_, err := tb.purchases.RecordPurchase(caller, &customerv1.RecordPurchaseRequest{
				CustomerId: c.String(), Purchase: newPurchase(ref, 1_000), RequestId: uuid.NewString()})
			if err != nil {
				b.Fatal(err)
			}
		}
		grpcNs = perOp(b)
	})

	st := store.New()
	b.Run("SameSQLByHand", func(b *testing.B) {
		for b.Loop() {
			c, ref := next()
			if err := recordByHand(ctx, tb, st, tenant, c, ref); err != nil {
				b.Fatal(err)
			}
		}
		handNs = perOp(b)
		if grpcNs > 0 {
			b.ReportMetric(grpcNs/handNs, "grpc/op-ratio")
		}
	})

	b.Run("MinimalSQL", func(b *testing.B) {
		for b.Loop() {
			c, ref := next()
			err := pgdb.InTx(ctx, tb.pool, func(tx pgx.Tx) error {
				id := uuid.Must(uuid.NewV7())
				now := tb.clock.Now()
				if _, err := tx.Exec(ctx, `INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel,
					currency_code, total_amount_minor, purchase_time, request_hash, create_time)
					VALUES ($1, $2, $3, $4, 'online', 'USD', 1000, $5, '\x00', $5)`, tenant, id, c, ref, now); err != nil {
					return err
				}
				if _, err := tx.Exec(ctx, `INSERT INTO purchase_items (tenant_id, purchase_id, line, sku, name, category,
					quantity, currency_code, unit_price_minor) VALUES ($1, $2, 1, 'SKU-1', 'Walking boots', 'shoes', 1, 'USD', 1000)`,
					tenant, id); err != nil {
					return err
				}
				return outbox.Write(ctx, tx, outbox.Event{TenantID: tenant.String(), Subject: purchase.SubjectPurchaseRecorded,
					AggregateType: "purchase", AggregateID: id.String(), AggregateVersion: 1,
					Payload: &customerv1.PurchaseRecorded{PurchaseId: id.String()}})
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		minimalNs = perOp(b)
		if grpcNs > 0 {
			b.ReportMetric(grpcNs/minimalNs, "grpc/op-ratio")
		}
	})
}

// recordByHand issues RecordPurchase's statements directly: the request id
// claim and its stored response, the customer lock, the purchase and its
// items, the schedule, the settings, the customer's recompute and the
// events, in one transaction.
func recordByHand(ctx context.Context, tb *testBundle, st *store.Store, tenant, c uuid.UUID, ref string) error {
	return pgdb.InTx(ctx, tb.pool, func(tx pgx.Tx) error {
		rid := uuid.New()
		if _, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (tenant_id, principal, request_id, method, request_hash, response)
			VALUES ($1, 'bench', $2, 'm', '\x00', '') ON CONFLICT DO NOTHING`, tenant, rid); err != nil {
			return err
		}
		now := tb.clock.Now()
		if _, _, err := st.LockCustomer(ctx, tx, pgdb.LockKey(tenant.String()+c.String()), tenant, c); err != nil {
			return err
		}
		p := store.Purchase{TenantID: tenant, ID: uuid.Must(uuid.NewV7()), CustomerID: c, OrderReference: ref,
			Channel: "online", CurrencyCode: "USD", TotalAmountMinor: 1_000, PurchaseTime: now, CreateTime: now,
			RequestHash: []byte{0}, Items: []store.Item{{SKU: "SKU-1", Name: "Walking boots", Category: "shoes", Quantity: 1, UnitPriceMinor: 1_000}}}
		if _, _, err := st.InsertPurchase(ctx, tx, p); err != nil {
			return err
		}
		if err := st.AddToSchedule(ctx, tx, tenant, now); err != nil {
			return err
		}
		if _, err := st.Settings(ctx, tx, tenant, false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		changes, err := st.Recompute(ctx, tx, store.RecomputeParams{TenantID: tenant, CustomerID: c, Settings: purchase.DefaultSettings(), Now: now})
		if err != nil {
			return err
		}
		events := []outbox.Event{{TenantID: tenant.String(), Subject: purchase.SubjectPurchaseRecorded,
			AggregateType: "purchase", AggregateID: p.ID.String(), AggregateVersion: 1,
			Payload: &customerv1.PurchaseRecorded{PurchaseId: p.ID.String()}}}
		for _, m := range changes {
			events = append(events, outbox.Event{TenantID: tenant.String(), Subject: purchase.SubjectSegmentChanged,
				AggregateType: "customer_segment", AggregateID: m.CustomerID.String(), AggregateVersion: m.SegmentVersion,
				Payload: &customerv1.SegmentChanged{CustomerId: m.CustomerID.String()}})
		}
		if err := outbox.Write(ctx, tx, events...); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE idempotency_keys SET response = '\x00' WHERE tenant_id = $1 AND principal = 'bench' AND request_id = $2`, tenant, rid)
		return err
	})
}

// BenchmarkRecompute measures the tenant-wide RFM recompute over a
// generated tenant (RAPPORT_BENCH_RFM_CUSTOMERS customers,
// RAPPORT_BENCH_RFM_PURCHASES purchases over 500 days) against a bare
// aggregate over the same purchases, and RecordPurchase's per-customer
// recompute inside that tenant (which must not grow with it).
// BareAggregate reports each recompute's ns/op over its own
// (allchanged/op-ratio, steady/op-ratio).
func BenchmarkRecompute(b *testing.B) {
	nCustomers := envInt(b, envBenchCustomers, 20_000)
	nPurchases := envInt(b, envBenchPurchases, 200_000)
	tb := setup(b, nil)
	tenant := uuid.New()
	ctx := context.Background()
	long, cancel := context.WithTimeout(as(tenant), 2*time.Hour)
	defer cancel()
	tb.server.RecomputeTimeout = 2 * time.Hour

	start := time.Now()
	generateTenant(b, tb, tenant, nCustomers, nPurchases)
	b.Logf("fixture: %d customers, %d purchases in %s", nCustomers, nPurchases, time.Since(start).Round(time.Millisecond))

	var changedNs, steadyNs, bareNs float64
	b.Run("AllChanged", func(b *testing.B) {
		// Every customer gets a segment: the upsert writes every row and
		// one segment.changed per customer (the first run on a tenant).
		for b.Loop() {
			b.StopTimer()
			_, err := tb.pool.Exec(ctx, `DELETE FROM customer_segments WHERE tenant_id = $1`, tenant)
			require.NoError(b, err)
			_, err = tb.pool.Exec(ctx, `DELETE FROM outbox WHERE tenant_id = $1`, tenant)
			require.NoError(b, err)
			b.StartTimer()
			resp, err := tb.segments.RecomputeSegments(long, &customerv1.RecomputeSegmentsRequest{})
			require.NoError(b, err)
			require.Equal(b, int64(nCustomers), resp.GetSegmentsChanged())
		}
		changedNs = perOp(b)
	})

	b.Run("Steady", func(b *testing.B) {
		// Nothing changed since the last run: one pass, no writes.
		for b.Loop() {
			resp, err := tb.segments.RecomputeSegments(long, &customerv1.RecomputeSegmentsRequest{})
			require.NoError(b, err)
			require.Zero(b, resp.GetSegmentsChanged())
		}
		steadyNs = perOp(b)
	})

	b.Run("BareAggregate", func(b *testing.B) {
		for b.Loop() {
			err := pgdb.InTx(ctx, tb.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
					return err
				}
				var n, f int64
				return tx.QueryRow(ctx, `
					SELECT count(*), sum(frequency) FROM (
					    SELECT customer_id, max(purchase_time), count(*) AS frequency, sum(total_amount_minor)
					    FROM purchases WHERE tenant_id = $1 GROUP BY customer_id) s`, tenant).Scan(&n, &f)
			})
			require.NoError(b, err)
		}
		bareNs = perOp(b)
		if changedNs > 0 && steadyNs > 0 {
			b.ReportMetric(changedNs/bareNs, "allchanged/op-ratio")
			b.ReportMetric(steadyNs/bareNs, "steady/op-ratio")
		}
	})

	b.Run("RecordPurchaseInThisTenant", func(b *testing.B) {
		caller := as(tenant, "service")
		i := 0
		for b.Loop() {
			i++
			c := benchCustomerID(1 + i%nCustomers)
			_, err := tb.purchases.RecordPurchase(caller, &customerv1.RecordPurchaseRequest{
				CustomerId: c.String(), Purchase: newPurchase(fmt.Sprintf("BIG-%d", i), 1_000)})
			require.NoError(b, err)
		}
	})
}

// benchCustomerID is generated customer i's id (1-based).
func benchCustomerID(i int) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("00000000-0000-7000-8000-%012x", i))
}

// generateTenant creates the tenant's customers and purchases with one
// INSERT … SELECT generate_series each (no Go loop), then vacuums and
// analyzes so the aggregate runs index-only as it would on a settled table.
// Purchase i belongs to customer i mod n, is dated a pseudo-random time in
// the last 500 days, and costs 5.00 to 204.99.
func generateTenant(b *testing.B, tb *testBundle, tenant uuid.UUID, nCustomers, nPurchases int) {
	b.Helper()
	ctx := context.Background()
	conn, err := tb.pool.Acquire(ctx)
	require.NoError(b, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, `SET statement_timeout = 0`)
	require.NoError(b, err)
	defer func() { _, _ = conn.Exec(ctx, `RESET statement_timeout`) }()

	cols, exprs := customertest.Fill(b, tb.pool, "tenant_id", "id")
	_, err = conn.Exec(ctx, fmt.Sprintf(`
		INSERT INTO customers (tenant_id, id%s)
		SELECT $1, ('00000000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid%s
		FROM generate_series(1, $2::int) g`, cols, exprs), tenant, nCustomers)
	require.NoError(b, err)
	_, err = conn.Exec(ctx, `
		INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel, currency_code,
		                       total_amount_minor, purchase_time, request_hash, create_time)
		SELECT $1, gen_random_uuid(),
		       ('00000000-0000-7000-8000-' || lpad(to_hex(1 + g % $2::int), 12, '0'))::uuid,
		       'gen-' || g, 'online', 'USD', 500 + (g::bigint * 7919) % 20000,
		       $4::timestamptz - make_interval(secs => ((g::bigint * 104729) % (500 * 86400))::double precision),
		       '\x00', $4::timestamptz
		FROM generate_series(1, $3::int) g`, tenant, nCustomers, nPurchases, tb.clock.Now())
	require.NoError(b, err)
	for _, table := range []string{"customers", "purchases"} {
		_, err = conn.Exec(ctx, "VACUUM ANALYZE "+table)
		require.NoError(b, err)
	}
	var n int
	require.NoError(b, conn.QueryRow(ctx, `SELECT count(DISTINCT customer_id) FROM purchases WHERE tenant_id = $1`, tenant).Scan(&n))
	require.Equal(b, min(nCustomers, nPurchases), n, "every customer has purchases")
}

// perOp is the finished benchmark's time per iteration.
func perOp(b *testing.B) float64 {
	if b.N == 0 {
		return 0
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}
