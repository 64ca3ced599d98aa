// Package audittest reads the personal-data audit log back in tests: which
// rows a call wrote, and that they name fields, never values (SEC-09).
package audittest

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// Row is one pii_audit row; Text is the whole row as JSON, to scan it for
// personal values.
type Row struct {
	Action, Actor, Method, IdempotencyKey string
	Customers                             []uuid.UUID
	Fields                                []string
	Text                                  string
}

// Rows returns the tenant's audit rows, oldest first (ids are UUIDv7).
func Rows(tb testing.TB, pool *pgxpool.Pool, tenant uuid.UUID) []Row {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT action, actor_subject, method, coalesce(idempotency_key::text, ''), customer_ids, fields, row_to_json(a)::text
		FROM pii_audit a WHERE tenant_id = $1 ORDER BY id`, tenant)
	require.NoError(tb, err)
	defer rows.Close()
	var out []Row
	for rows.Next() {
		var r Row
		require.NoError(tb, rows.Scan(&r.Action, &r.Actor, &r.Method, &r.IdempotencyKey, &r.Customers, &r.Fields, &r.Text))
		out = append(out, r)
	}
	require.NoError(tb, rows.Err())
	return out
}

// Audited runs call and returns the audit rows it added to the tenant's log.
func Audited(tb testing.TB, pool *pgxpool.Pool, tenant uuid.UUID, call func()) []Row {
	tb.Helper()
	before := len(Rows(tb, pool, tenant))
	call()
	return Rows(tb, pool, tenant)[before:]
}

// RequireOneRow asserts rows is exactly one row of action by actor, from a
// method ending in method, about customers, naming fields and holding none
// of values.
func RequireOneRow(tb testing.TB, rows []Row, action, actor, method string, customers []uuid.UUID, fields []string, values ...string) Row {
	tb.Helper()
	require.Len(tb, rows, 1, "exactly one audit row")
	r := rows[0]
	require.Equal(tb, action, r.Action)
	require.Equal(tb, actor, r.Actor)
	require.True(tb, strings.HasSuffix(r.Method, method), "method %s, want …%s", r.Method, method)
	require.ElementsMatch(tb, customers, r.Customers)
	require.ElementsMatch(tb, fields, r.Fields)
	for _, v := range values {
		require.NotContains(tb, r.Text, v, "the audit row holds a personal value")
	}
	return r
}
