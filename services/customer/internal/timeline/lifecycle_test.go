package timeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	loyaltyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/loyalty/v1"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/timeline"
)

// inTx runs fn in a committed transaction of the customer schema.
func (b *testBundle) inTx(t *testing.T, fn func(tx pgx.Tx) error) {
	t.Helper()
	require.NoError(t, pgdb.InTx(context.Background(), b.pool, fn))
}

// note logs a manual entry with text through the API.
func (b *testBundle) note(t *testing.T, customerID uuid.UUID, summary, body string) *customerv1.Interaction {
	t.Helper()
	got, err := b.client.CreateInteraction(agent(b.tenant), create(customerID, &customerv1.Interaction{
		Kind: call, Direction: inbound, Summary: summary, Body: body}))
	require.NoError(t, err)
	b.clock.Advance(time.Minute) // distinct times, so the order is known
	return got
}

// projectPoints adds a projected entry for customerID through the real
// projection (a running one), returning it as listed.
func (b *testBundle) projectPoints(t *testing.T, p *projection, customerID uuid.UUID) {
	t.Helper()
	p.publish(t, event(b.tenant, customerID, timeline.SubjectPointsEarned, uuid.NewString(), &loyaltyv1.PointsEarned{
		TenantId: b.tenant.String(), EntryId: uuid.NewString(), CustomerId: customerID.String(),
		OccurredAt: timestamppb.New(start.Add(-time.Hour)), Points: 10, Reason: "bonus"}))
	p.settle(t)
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.startProjection(t)
	l := timeline.NewLifecycle(b.sealer)
	require.Equal(t, "interactions", l.Section())
	ctx := context.Background()

	t.Run("ExportHasEverythingInClear", func(t *testing.T) {
		c := b.newCustomer(t, b.tenant)
		b.note(t, c, "Wants a callback", "After 5 pm please")
		b.projectPoints(t, p, c)
		b.note(t, b.newCustomer(t, b.tenant), "someone else", "")
		var got proto.Message
		b.inTx(t, func(tx pgx.Tx) error {
			var err error
			got, err = l.Export(ctx, tx, b.tenant, c)
			return err
		})
		want := &customerv1.ListInteractionsResponse{Interactions: b.timeline(t, b.tenant, c)}
		require.Len(t, want.GetInteractions(), 2)
		require.Equal(t, "After 5 pm please", want.GetInteractions()[0].GetBody())
		require.Empty(t, cmp.Diff(want, got, protocmp.Transform()))
	})

	t.Run("MergeMovesEntriesAndReseals", func(t *testing.T) {
		primary, s1, s2 := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		b.note(t, primary, "primary's", "")
		b.note(t, s1, "first source", "with a body")
		b.note(t, s1, "", "body only")
		b.projectPoints(t, p, s1)
		b.note(t, s2, "erased source", "gone")
		b.erase(t, b.tenant, s2) // its text can no longer be read, so it moves without it
		var moved int64
		b.inTx(t, func(tx pgx.Tx) error {
			var err error
			moved, err = l.Merge(ctx, tx, b.tenant, primary, []uuid.UUID{s1, s2, primary})
			return err
		})
		require.Equal(t, int64(4), moved)
		require.Zero(t, b.count(t, b.tenant, s1))
		require.Zero(t, b.count(t, b.tenant, s2))
		got := b.timeline(t, b.tenant, primary)
		type text struct{ Summary, Body string }
		var texts []text
		for _, it := range got {
			texts = append(texts, text{it.GetSummary(), it.GetBody()})
		}
		require.Equal(t, []text{{"", ""}, {"", "body only"}, {"first source", "with a body"}, {"primary's", ""}, {"", ""}}, texts,
			"newest first: the erased source's call, the first source's two calls, the primary's call, the projected points")
		require.Equal(t, customerv1.InteractionKind_INTERACTION_KIND_POINTS_EARNED, got[4].GetKind())

		b.inTx(t, func(tx pgx.Tx) error {
			var err error
			moved, err = l.Merge(ctx, tx, b.tenant, primary, []uuid.UUID{s1, s2})
			return err
		})
		require.Zero(t, moved, "merging again moves nothing")
	})

	t.Run("MergeIntoAnErasedPrimaryFails", func(t *testing.T) {
		primary, source := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		b.note(t, source, "text", "")
		b.erase(t, b.tenant, primary)
		err := pgdb.InTx(ctx, b.pool, func(tx pgx.Tx) error {
			_, err := l.Merge(ctx, tx, b.tenant, primary, []uuid.UUID{source})
			return err
		})
		require.Error(t, err)
		require.Equal(t, 1, b.count(t, b.tenant, source), "nothing moved")
	})

	t.Run("EraseDropsTheTextAndKeepsTheRest", func(t *testing.T) {
		c, other := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		b.note(t, c, "private", "very private")
		b.note(t, other, "other's", "kept")
		b.projectPoints(t, p, c)
		for range 2 { // erasing twice is harmless
			b.inTx(t, func(tx pgx.Tx) error { return l.Erase(ctx, tx, b.tenant, c) })
		}
		var rows, sealed int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE summary_sealed IS NOT NULL OR body_sealed IS NOT NULL)
			FROM interactions WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, c).Scan(&rows, &sealed))
		require.Equal(t, 2, rows, "the call and the projected entry stay")
		require.Zero(t, sealed)
		b.erase(t, b.tenant, c) // the caller destroys the key; the API forgets the customer
		_, err := b.client.ListInteractions(agent(b.tenant), &customerv1.ListInteractionsRequest{CustomerId: c.String()})
		require.Equal(t, codes.NotFound, status.Code(err))
		require.Equal(t, "kept", b.timeline(t, b.tenant, other)[0].GetBody(), "another customer's text is untouched")
	})
}
