// Package customertest inserts customers straight into the customer schema
// for the tests of packages that only refer to them (purchases, care,
// timeline, insight…): those tests need rows to point at, not the profile
// API, whose own tests cover it.
package customertest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// Options shape the inserted customers. Zero values leave a column to the
// filler (a placeholder for what the schema requires) or its default.
type Options struct {
	TimeZone   string
	Created    time.Time
	BirthMonth int // with BirthDay; 0: no birthday
	BirthDay   int
	// Sealer, when set, gives each customer a data key, as a customer
	// created through the API has (needed to seal anything of theirs).
	Sealer *pii.Sealer
}

// Insert inserts n customers of tenant and returns their ids (UUIDv7, in
// creation order). Columns the schema requires and the options do not set
// are filled with placeholders of their type, so the helper keeps working
// as the profile gains columns.
func Insert(tb testing.TB, pool *pgxpool.Pool, tenant uuid.UUID, n int, o Options) []uuid.UUID {
	tb.Helper()
	ctx := context.Background()
	cols, args := []string{"tenant_id", "id"}, []any{tenant}
	exprs := []string{"$1", "unnest($2::uuid[])"}
	set := func(col string, v any) {
		args = append(args, v)
		cols, exprs = append(cols, col), append(exprs, fmt.Sprintf("$%d", len(args)+1))
	}
	if o.TimeZone != "" {
		set("time_zone", o.TimeZone)
	}
	if !o.Created.IsZero() {
		set("create_time", o.Created)
	}
	if o.BirthMonth != 0 {
		set("birth_month", o.BirthMonth)
		set("birth_day", o.BirthDay)
	}
	fillCols, fillExprs := fillers(tb, pool, cols)
	cols, exprs = append(cols, fillCols...), append(exprs, fillExprs...)

	ids := make([]uuid.UUID, n)
	for i := range ids {
		ids[i] = uuid.Must(uuid.NewV7())
	}
	args = append([]any{args[0], ids}, args[1:]...)
	_, err := pool.Exec(ctx, fmt.Sprintf("INSERT INTO customers (%s) SELECT %s",
		strings.Join(cols, ", "), strings.Join(exprs, ", ")), args...)
	require.NoError(tb, err)
	if o.Sealer != nil {
		keys, err := o.Sealer.Tenant(ctx, pool, tenant)
		require.NoError(tb, err)
		for _, id := range ids {
			_, err := keys.NewCustomerKey(ctx, pool, id)
			require.NoError(tb, err)
		}
	}
	return ids
}

// fillers returns the customers columns that need a value (required
// without a default, and the sealed display name every customer not erased
// has) and are not among set, with a placeholder expression for each.
func fillers(tb testing.TB, pool *pgxpool.Pool, set []string) (cols, exprs []string) {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = 'customers'
		  AND ((is_nullable = 'NO' AND column_default IS NULL) OR column_name = 'display_name_sealed')
		  AND NOT column_name = ANY($1)
		ORDER BY ordinal_position`, set)
	require.NoError(tb, err)
	defer rows.Close()
	for rows.Next() {
		var name, typ string
		require.NoError(tb, rows.Scan(&name, &typ))
		expr := map[string]string{
			"text": "'test'", "bytea": `'\x01'::bytea`, "ARRAY": "'{}'", "integer": "0", "bigint": "1",
			"smallint": "0", "boolean": "false", "uuid": "gen_random_uuid()",
			"timestamp with time zone": "now()", "jsonb": "'{}'::jsonb",
		}[typ]
		require.NotEmpty(tb, expr, "customers.%s has type %s, which customertest does not know how to fill", name, typ)
		cols, exprs = append(cols, name), append(exprs, expr)
	}
	require.NoError(tb, rows.Err())
	return cols, exprs
}

// Fill is for an INSERT INTO customers written by hand (a benchmark
// generating rows with generate_series): the columns that need a value
// besides set, and a placeholder expression for each, as two lists that
// each start with ", " to append to the statement's own.
func Fill(tb testing.TB, pool *pgxpool.Pool, set ...string) (cols, exprs string) {
	tb.Helper()
	c, e := fillers(tb, pool, set)
	for i := range c {
		cols += ", " + c[i]
		exprs += ", " + e[i]
	}
	return cols, exprs
}
