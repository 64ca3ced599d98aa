package timeline_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// TestSEC09InteractionAudit: creating an entry writes one audit row in its
// transaction, and every read that returns an entry's text (a get, a page,
// a retried create) writes one; rows name the fields, never the text. Reads
// of entries without text return nothing personal and write none.
func TestSEC09InteractionAudit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)
	ctx := agent(b.tenant)
	const summary, body = "MARKER-audit-summary-9c1", "MARKER-audit-body-4e7 Ada's new address"
	both := []string{"interaction.summary", "interaction.body"}
	one := []uuid.UUID{c}
	rows := func(call func()) []auditRow { return audited(t, b.pool, b.tenant, call) }

	req := create(c, &customerv1.Interaction{Kind: note, Summary: summary, Body: body})
	req.RequestId = uuid.NewString()
	var in *customerv1.Interaction
	r := requireOneRow(t, rows(func() {
		var err error
		in, err = b.client.CreateInteraction(ctx, req)
		require.NoError(t, err)
	}), "create", "agent-7", "/CreateInteraction", one, both, summary, body)
	require.Equal(t, req.GetRequestId(), r.idempotencyKey)

	// The retry reads the entry back.
	requireOneRow(t, rows(func() {
		again, err := b.client.CreateInteraction(ctx, req)
		require.NoError(t, err)
		require.Equal(t, in.GetId(), again.GetId())
	}), "read", "agent-7", "/CreateInteraction", one, both, summary, body)

	requireOneRow(t, rows(func() {
		_, err := b.client.GetInteraction(ctx, &customerv1.GetInteractionRequest{CustomerId: c.String(), Id: in.GetId()})
		require.NoError(t, err)
	}), "read", "agent-7", "/GetInteraction", one, both, summary, body)

	// A summary-only entry: a page names the fields any of its entries has.
	requireOneRow(t, rows(func() {
		_, err := b.client.CreateInteraction(ctx, create(c, &customerv1.Interaction{Kind: note, Summary: summary + "-2"}))
		require.NoError(t, err)
	}), "create", "agent-7", "/CreateInteraction", one, []string{"interaction.summary"}, summary)
	requireOneRow(t, rows(func() {
		page, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.String()})
		require.NoError(t, err)
		require.Len(t, page.GetInteractions(), 2)
	}), "list", "agent-7", "/ListInteractions", one, both, summary, body)

	// A call logged without text: its creation is audited, reading it is not
	// a read of personal data.
	var bare *customerv1.Interaction
	requireOneRow(t, rows(func() {
		var err error
		bare, err = b.client.CreateInteraction(ctx, create(c, &customerv1.Interaction{Kind: call, Direction: inbound}))
		require.NoError(t, err)
	}), "create", "agent-7", "/CreateInteraction", one, []string{})
	require.Empty(t, rows(func() {
		_, err := b.client.GetInteraction(ctx, &customerv1.GetInteractionRequest{CustomerId: c.String(), Id: bare.GetId()})
		require.NoError(t, err)
		page, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.String(),
			Kinds: []customerv1.InteractionKind{call}})
		require.NoError(t, err)
		require.Len(t, page.GetInteractions(), 1)
	}))

	// Failed calls write nothing: another customer's entry, a refused create.
	other := b.newCustomer(t, b.tenant)
	require.Empty(t, rows(func() {
		_, err := b.client.GetInteraction(ctx, &customerv1.GetInteractionRequest{CustomerId: other.String(), Id: in.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		b.erase(t, b.tenant, other)
		_, err = b.client.CreateInteraction(ctx, create(other, &customerv1.Interaction{Kind: note, Summary: summary}))
		require.Equal(t, codes.NotFound, status.Code(err))
	}))
}

// auditRow is one pii_audit row; text is the whole row as JSON, for
// scanning it for personal values.
type auditRow struct {
	action, actor, method, idempotencyKey string
	customers                             []uuid.UUID
	fields                                []string
	text                                  string
}

// auditRows returns the tenant's audit rows, oldest first (ids are UUIDv7).
func auditRows(tb testing.TB, pool *pgxpool.Pool, tenant uuid.UUID) []auditRow {
	tb.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT action, actor_subject, method, coalesce(idempotency_key::text, ''), customer_ids, fields, row_to_json(a)::text
		FROM pii_audit a WHERE tenant_id = $1 ORDER BY id`, tenant)
	require.NoError(tb, err)
	defer rows.Close()
	var out []auditRow
	for rows.Next() {
		var r auditRow
		require.NoError(tb, rows.Scan(&r.action, &r.actor, &r.method, &r.idempotencyKey, &r.customers, &r.fields, &r.text))
		out = append(out, r)
	}
	require.NoError(tb, rows.Err())
	return out
}

// audited runs call and returns the audit rows it added to the tenant's log.
func audited(tb testing.TB, pool *pgxpool.Pool, tenant uuid.UUID, call func()) []auditRow {
	tb.Helper()
	before := len(auditRows(tb, pool, tenant))
	call()
	return auditRows(tb, pool, tenant)[before:]
}

// requireOneRow asserts rows is exactly one row of action by actor about
// customers, naming fields, and holding none of the values.
func requireOneRow(tb testing.TB, rows []auditRow, action, actor, method string, customers []uuid.UUID, fields []string, values ...string) auditRow {
	tb.Helper()
	require.Len(tb, rows, 1, "exactly one audit row")
	r := rows[0]
	require.Equal(tb, action, r.action)
	require.Equal(tb, actor, r.actor)
	require.True(tb, strings.HasSuffix(r.method, method), "method %s, want …%s", r.method, method)
	require.ElementsMatch(tb, customers, r.customers)
	require.ElementsMatch(tb, fields, r.fields)
	for _, v := range values {
		require.NotContains(tb, r.text, v, "the audit row holds a personal value")
	}
	return r
}
