package insight_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/insight/store"
)

// Benchmark sizes; the defaults are the "realistic" tenant. For a
// bigger one, for example:
//
//	RAPPORT_BENCH_INSIGHT_CUSTOMERS=200000 RAPPORT_BENCH_INSIGHT_LINES=2000000 \
//	  go test -run '^$' -bench . -benchtime 20x -timeout 1h ./internal/insight/
const (
	envBenchCustomers = "RAPPORT_BENCH_INSIGHT_CUSTOMERS"
	envBenchLines     = "RAPPORT_BENCH_INSIGHT_LINES"
	envBenchSKUs      = "RAPPORT_BENCH_INSIGHT_SKUS"
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

// onTheFly computes what RecommendationList's co-occurrence part returns,
// straight from purchases, for one customer: the customer's items, every
// buyer of those items in the window, what else those buyers bought, the
// buyers of each candidate, the cosine score, the best anchor. It is the
// baseline the stored counts are measured against (without the best-seller
// filler, which only makes it cheaper).
const onTheFly = `
WITH owned AS MATERIALIZED (
    SELECT DISTINCT i.sku
    FROM purchases p JOIN purchase_items i ON i.tenant_id = p.tenant_id AND i.purchase_id = p.id
    WHERE p.tenant_id = $1 AND p.customer_id = $2
),
ob AS MATERIALIZED (
    SELECT DISTINCT p.customer_id, i.sku
    FROM purchases p JOIN purchase_items i ON i.tenant_id = p.tenant_id AND i.purchase_id = p.id
    WHERE p.tenant_id = $1 AND p.purchase_time >= $3
),
buyers AS (SELECT sku, count(*) AS n FROM ob GROUP BY sku),
anchor_buyers AS (SELECT ob.customer_id, ob.sku AS anchor FROM ob JOIN owned o ON o.sku = ob.sku),
pairs AS (
    SELECT ab.anchor, ob.sku, count(*) AS co
    FROM anchor_buyers ab JOIN ob ON ob.customer_id = ab.customer_id
    WHERE ob.sku NOT IN (SELECT sku FROM owned)
    GROUP BY ab.anchor, ob.sku
    HAVING count(*) >= 2
),
scored AS (
    SELECT p.sku, p.anchor, p.co, least(1.0, p.co / sqrt(ba.n::float8 * bb.n::float8)) AS score
    FROM pairs p JOIN buyers ba ON ba.sku = p.anchor JOIN buyers bb ON bb.sku = p.sku
),
best AS (
    SELECT DISTINCT ON (sku) sku, anchor, co, score FROM scored ORDER BY sku, score DESC, co DESC, anchor
)
SELECT sku, anchor, co FROM best ORDER BY score DESC, co DESC, sku LIMIT $4`

// BenchmarkRecommendations compares the per-request query over the stored
// counts (what ListRecommendations runs) with computing the same
// co-occurrence from purchases on the fly, for the same customers, on a
// generated tenant (20k customers, 200k purchase lines, 2k SKUs by
// default); OnTheFly reports onthefly/stored-ratio. Refresh is one tenant's
// set-based refresh; GRPC is the whole RPC; the reports are the two
// analytics statements over the same tenant.
func BenchmarkRecommendations(b *testing.B) {
	nCustomers := envInt(b, envBenchCustomers, 20_000)
	nLines := envInt(b, envBenchLines, 200_000)
	nSKUs := envInt(b, envBenchSKUs, 2_000)
	tb := setup(b)
	tenant := uuid.New()
	ctx := context.Background()
	start := time.Now()
	generateTenant(b, tb, tenant, nCustomers, nLines, nSKUs)
	b.Logf("fixture: %d customers, %d lines, %d SKUs in %s", nCustomers, nLines, nSKUs, time.Since(start).Round(time.Millisecond))

	long, cancel := context.WithTimeout(grpcxtest.As(tenant), time.Hour)
	defer cancel()
	start = time.Now()
	r, err := tb.insight.RefreshRecommendations(long, &customerv1.RefreshRecommendationsRequest{})
	require.NoError(b, err)
	b.Logf("first refresh: %d items, %d pairs in %s", r.GetItems(), r.GetPairs(), time.Since(start).Round(time.Millisecond))

	// The two ways agree on what they both compute.
	st := store.New()
	windowStart := tb.clock.Now().Add(-365 * 24 * time.Hour)
	for i := 1; i <= 20; i++ {
		c := benchCustomerID(i * 97)
		stored, _, err := st.Recommendations(ctx, tb.pool, tenant, c, 10)
		require.NoError(b, err)
		var want []string
		for _, x := range stored {
			if x.Kind == store.KindTogether {
				want = append(want, fmt.Sprintf("%s<-%s:%d", x.SKU, x.AnchorSKU, x.CoBuyers))
			}
		}
		rows, err := tb.pool.Query(ctx, onTheFly, tenant, c, windowStart, 10)
		require.NoError(b, err)
		var got []string
		for rows.Next() {
			var sku, anchor string
			var co int64
			require.NoError(b, rows.Scan(&sku, &anchor, &co))
			got = append(got, fmt.Sprintf("%s<-%s:%d", sku, anchor, co))
		}
		require.NoError(b, rows.Err())
		require.Equal(b, got, want, "customer %d", i*97)
	}

	customer := func(i int) uuid.UUID { return benchCustomerID(1 + (i*7919)%nCustomers) }
	var storedNs float64
	b.Run("StoredCounts", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			if _, _, err := st.Recommendations(ctx, tb.pool, tenant, customer(i), 10); err != nil {
				b.Fatal(err)
			}
		}
		storedNs = perOp(b)
	})
	b.Run("OnTheFly", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			rows, err := tb.pool.Query(ctx, onTheFly, tenant, customer(i), windowStart, 10)
			if err != nil {
				b.Fatal(err)
			}
			for rows.Next() {
			}
			if err := rows.Err(); err != nil {
				b.Fatal(err)
			}
		}
		if storedNs > 0 {
			b.ReportMetric(perOp(b)/storedNs, "onthefly/stored-ratio")
		}
	})
	b.Run("GRPC", func(b *testing.B) {
		caller := grpcxtest.As(tenant, "agent")
		i := 0
		for b.Loop() {
			i++
			if _, err := tb.insight.ListRecommendations(caller, &customerv1.ListRecommendationsRequest{
				CustomerId: customer(i).String()}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Refresh", func(b *testing.B) {
		for b.Loop() {
			if _, err := tb.insight.RefreshRecommendations(long, &customerv1.RefreshRecommendationsRequest{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RetentionReport", func(b *testing.B) {
		for b.Loop() {
			if _, err := tb.insight.GetRetentionReport(long, &customerv1.GetRetentionReportRequest{
				StartMonth: "2025-01", EndMonth: "2026-04", MonthsAfter: 12}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("CustomerMetrics", func(b *testing.B) {
		end := tb.clock.Now()
		for b.Loop() {
			if _, err := tb.insight.GetCustomerMetrics(long, &customerv1.GetCustomerMetricsRequest{
				StartTime: timestamp(end.Add(-90 * 24 * time.Hour)), EndTime: timestamp(end)}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// benchCustomerID is generated customer i's id (1-based).
func benchCustomerID(i int) uuid.UUID {
	return uuid.MustParse(fmt.Sprintf("00000000-0000-7000-8000-%012x", i))
}

// generateTenant creates the tenant's customers, purchases and lines with
// one INSERT … SELECT generate_series each, then analyzes. Purchases have two
// lines each (nLines/2 purchases), customer g mod n, dated pseudo-randomly
// over the last 500 days. Each customer has a taste: one of 40 groups of 50
// SKUs; the first line comes from the group, the second from the whole
// range, both skewed towards low numbers (squared uniform), so there are
// best sellers and real co-occurrence.
func generateTenant(b *testing.B, tb *testBundle, tenant uuid.UUID, nCustomers, nLines, nSKUs int) {
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
	nPurchases := nLines / 2
	_, err = conn.Exec(ctx, `
		INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel, currency_code,
		                       total_amount_minor, purchase_time, request_hash, create_time)
		SELECT $1, ('00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'))::uuid,
		       ('00000000-0000-7000-8000-' || lpad(to_hex(1 + g % $2::int), 12, '0'))::uuid,
		       'gen-' || g, 'online', 'USD', 1000,
		       $4::timestamptz - make_interval(secs => ((g::bigint * 104729) % (500 * 86400))::double precision),
		       '\x00', $4::timestamptz
		FROM generate_series(1, $3::int) g`, tenant, nCustomers, nPurchases, tb.clock.Now())
	require.NoError(b, err)
	_, err = conn.Exec(ctx, `
		INSERT INTO purchase_items (tenant_id, purchase_id, line, sku, name, category, quantity, currency_code, unit_price_minor)
		SELECT $1, ('00000000-0000-7000-9000-' || lpad(to_hex(g), 12, '0'))::uuid, l,
		       'SKU-' || sku, 'item', 'cat-' || (sku % 37), 1, 'USD', 500
		FROM generate_series(1, $2::int) g
		CROSS JOIN generate_series(1, 2) l
		CROSS JOIN LATERAL (SELECT ((g::bigint * 7919 + l * 104729) % 1000003) / 1000003.0 AS r) u
		CROSS JOIN LATERAL (SELECT CASE WHEN l = 1
		        THEN (((1 + g % $3::int) % 40) * 50 + floor(50 * u.r * u.r))::int % $4::int
		        ELSE floor($4::int * u.r * u.r)::int END AS sku) s`, tenant, nPurchases, nCustomers, nSKUs)
	require.NoError(b, err)
	for _, table := range []string{"customers", "purchases", "purchase_items"} {
		_, err = conn.Exec(ctx, "VACUUM ANALYZE "+table)
		require.NoError(b, err)
	}
}

// perOp is the finished benchmark's time per iteration.
func perOp(b *testing.B) float64 {
	if b.N == 0 {
		return 0
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}
