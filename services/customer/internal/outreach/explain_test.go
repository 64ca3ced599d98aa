package outreach_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// queryText is the SQL of the named sqlc query, as generated, with $n
// parameters.
func queryText(t testing.TB, name string) string {
	t.Helper()
	src, err := os.ReadFile("store/dbgen/outreach_deliveries.sql.go")
	require.NoError(t, err)
	m := regexp.MustCompile("(?s)= `-- name: " + name + " :[a-z]+\n(.*?)`").FindSubmatch(src)
	require.NotNil(t, m, "query %s", name)
	return string(m[1])
}

// TestExplainClaim prints the claim's plan on a realistic fixture: 300
// tenants, one with 100k due deliveries, 299 with 5 each, and 600k sent
// ones of history. It takes a while, so it runs only with
// RAPPORT_OUTREACH_EXPLAIN=1, and fails unless the tenants are probed
// through the index the claim is written for (migration 00013).
func TestExplainClaim(t *testing.T) {
	if os.Getenv("RAPPORT_OUTREACH_EXPLAIN") == "" {
		t.Skip("set RAPPORT_OUTREACH_EXPLAIN=1 to print the claim's plan on a large fixture")
	}
	ctx := context.Background()
	pool := pgdbtest.NewPool(t, spec)
	conn, err := pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	exec := func(sql string, args ...any) {
		_, err := conn.Exec(ctx, sql, args...)
		require.NoError(t, err)
	}
	// Deliveries only: no customers (the foreign key is not what is measured).
	exec(`SET session_replication_role = replica`)
	exec(`CREATE TEMP TABLE fixture_tenants AS
		SELECT gen_random_uuid() AS tenant_id, g AS n FROM generate_series(1, 300) g`)
	insert := `INSERT INTO outreach_deliveries (tenant_id, id, customer_id, sealed_customer_id, template_id,
		template_key, channel, purpose, locale, status, content_sealed, attempts, next_attempt_time, version,
		create_time, update_time, send_time)
	SELECT t.tenant_id, gen_random_uuid(), c, c, gen_random_uuid(), 'k', 'email', 'service', 'en', $1,
		'\x00'::bytea, 1, CASE WHEN $1 = 'queued' THEN $2::timestamptz + g * interval '1 ms' END, 1,
		$2::timestamptz, $2::timestamptz, CASE WHEN $1 = 'sent' THEN $2::timestamptz END
	FROM fixture_tenants t, generate_series(1, $3::int) g, LATERAL (SELECT gen_random_uuid() AS c) c
	WHERE t.n BETWEEN $4 AND $5`
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	exec(insert, "sent", t0.Add(-24*time.Hour), 2000, 1, 300)
	exec(insert, "queued", t0, 100000, 1, 1)
	exec(insert, "queued", t0.Add(time.Hour), 5, 2, 300)
	exec(`RESET session_replication_role`)
	exec(`ANALYZE outreach_deliveries`)

	q := queryText(t, "OutreachDeliveryClaim")
	now := t0.Add(2 * time.Hour)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) "+q, now.Add(time.Minute), now, int32(20))
	require.NoError(t, err)
	var plan []string
	for rows.Next() {
		var line string
		require.NoError(t, rows.Scan(&line))
		plan = append(plan, line)
	}
	require.NoError(t, rows.Err())
	t.Log("\n" + strings.Join(plan, "\n"))
	require.Contains(t, strings.Join(plan, "\n"), "Index Scan using outreach_deliveries_queued_tenant")
}
