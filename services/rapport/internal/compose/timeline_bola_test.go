package compose

import (
	"testing"

	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// timelineCases are the TimelineService rows of the cross-tenant matrix,
// over gRPC (see consentCases for why).
func timelineCases(b *testBundle) map[string]func(t *testing.T, w world) {
	c := customerv1.NewTimelineServiceClient(b.grpcConn)
	logCall := func(t *testing.T, token, customerID string) *customerv1.Interaction {
		t.Helper()
		got, err := c.CreateInteraction(authCtx(token), &customerv1.CreateInteractionRequest{CustomerId: customerID,
			Interaction: &customerv1.Interaction{Kind: customerv1.InteractionKind_INTERACTION_KIND_CALL,
				Direction: customerv1.InteractionDirection_INTERACTION_DIRECTION_INBOUND, Summary: "Asked about delivery"}})
		require.NoError(t, err)
		return got
	}
	return map[string]func(t *testing.T, w world){
		customerv1.TimelineService_CreateInteraction_FullMethodName: func(t *testing.T, w world) {
			_, err := c.CreateInteraction(authCtx(w.x), &customerv1.CreateInteractionRequest{CustomerId: w.yCustomer.GetId(),
				Interaction: &customerv1.Interaction{Kind: customerv1.InteractionKind_INTERACTION_KIND_NOTE, Summary: "X was here"}})
			notFound(t, err)
			l, err := c.ListInteractions(authCtx(w.y), &customerv1.ListInteractionsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, l.GetInteractions(), "X's attempt left nothing on Y's timeline")
		},
		customerv1.TimelineService_GetInteraction_FullMethodName: func(t *testing.T, w world) {
			logged := logCall(t, w.y, w.yCustomer.GetId())
			_, err := c.GetInteraction(authCtx(w.x), &customerv1.GetInteractionRequest{CustomerId: w.yCustomer.GetId(), Id: logged.GetId()})
			notFound(t, err)
			own, err := c.GetInteraction(authCtx(w.y), &customerv1.GetInteractionRequest{CustomerId: w.yCustomer.GetId(), Id: logged.GetId()})
			require.NoError(t, err)
			require.Equal(t, "Asked about delivery", own.GetSummary())
		},
		customerv1.TimelineService_ListInteractions_FullMethodName: func(t *testing.T, w world) {
			logCall(t, w.y, w.yCustomer.GetId())
			_, err := c.ListInteractions(authCtx(w.x), &customerv1.ListInteractionsRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			own, err := c.ListInteractions(authCtx(w.y), &customerv1.ListInteractionsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Len(t, own.GetInteractions(), 1)
		},
	}
}
