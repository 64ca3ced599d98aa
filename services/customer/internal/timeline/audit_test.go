package timeline_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit/audittest"
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
	rows := func(call func()) []audittest.Row { return audittest.Audited(t, b.pool, b.tenant, call) }

	req := create(c, &customerv1.Interaction{Kind: note, Summary: summary, Body: body})
	req.RequestId = uuid.NewString()
	var in *customerv1.Interaction
	r := audittest.RequireOneRow(t, rows(func() {
		var err error
		in, err = b.client.CreateInteraction(ctx, req)
		require.NoError(t, err)
	}), "create", "agent-7", "/CreateInteraction", one, both, summary, body)
	require.Equal(t, req.GetRequestId(), r.IdempotencyKey)

	// The retry reads the entry back.
	audittest.RequireOneRow(t, rows(func() {
		again, err := b.client.CreateInteraction(ctx, req)
		require.NoError(t, err)
		require.Equal(t, in.GetId(), again.GetId())
	}), "read", "agent-7", "/CreateInteraction", one, both, summary, body)

	audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.GetInteraction(ctx, &customerv1.GetInteractionRequest{CustomerId: c.String(), Id: in.GetId()})
		require.NoError(t, err)
	}), "read", "agent-7", "/GetInteraction", one, both, summary, body)

	// A summary-only entry: a page names the fields any of its entries has.
	audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.CreateInteraction(ctx, create(c, &customerv1.Interaction{Kind: note, Summary: summary + "-2"}))
		require.NoError(t, err)
	}), "create", "agent-7", "/CreateInteraction", one, []string{"interaction.summary"}, summary)
	audittest.RequireOneRow(t, rows(func() {
		page, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.String()})
		require.NoError(t, err)
		require.Len(t, page.GetInteractions(), 2)
	}), "list", "agent-7", "/ListInteractions", one, both, summary, body)

	// A call logged without text: its creation is audited, reading it is not
	// a read of personal data.
	var bare *customerv1.Interaction
	audittest.RequireOneRow(t, rows(func() {
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
