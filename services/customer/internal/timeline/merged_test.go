package timeline_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// TestCreateInteractionForMergedCustomer: nothing new is written on a
// customer merged into another; the refusal names the customer to use, and
// the merged customer's history stays readable under its old id.
func TestCreateInteractionForMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	primary, source := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
	old, err := b.client.CreateInteraction(agent(b.tenant), create(source, &customerv1.Interaction{Kind: note, Summary: "before the merge"}))
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2`,
		b.tenant, source, primary)
	require.NoError(t, err)

	requestID := uuid.NewString()
	req := create(source, &customerv1.Interaction{Kind: call, Direction: inbound, Summary: "after the merge"})
	req.RequestId = requestID
	_, err = b.client.CreateInteraction(agent(b.tenant), req)
	requireMerged(t, err, primary)

	require.Equal(t, 1, b.count(t, b.tenant, source), "no entry under the merged id")
	require.Zero(t, b.count(t, b.tenant, primary), "nor redirected to the primary")
	// A retry is answered with the same refusal (pkg/idem keeps rule
	// refusals), and still writes nothing.
	_, err = b.client.CreateInteraction(agent(b.tenant), req)
	requireMerged(t, err, primary)
	require.Equal(t, 1, b.count(t, b.tenant, source))
	var audited int
	require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM pii_audit WHERE tenant_id = $1 AND action = 'create'`, b.tenant).Scan(&audited))
	require.Equal(t, 1, audited, "only the entry made before the merge was audited as created")

	// Reads keep working under the old id.
	got, err := b.client.GetInteraction(agent(b.tenant), &customerv1.GetInteractionRequest{CustomerId: source.String(), Id: old.GetId()})
	require.NoError(t, err)
	require.Equal(t, "before the merge", got.GetSummary())
	list, err := b.client.ListInteractions(agent(b.tenant), &customerv1.ListInteractionsRequest{CustomerId: source.String()})
	require.NoError(t, err)
	require.Len(t, list.GetInteractions(), 1)

	// The primary takes entries as before.
	_, err = b.client.CreateInteraction(agent(b.tenant), create(primary, &customerv1.Interaction{Kind: note, Summary: "on the primary"}))
	require.NoError(t, err)
	require.Equal(t, 1, b.count(t, b.tenant, primary))
}

// requireMerged asserts err is lifecycle.MergedError naming into.
func requireMerged(t *testing.T, err error, into uuid.UUID) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	require.NotNil(t, info, "an ErrorInfo")
	require.Equal(t, lifecycle.ReasonCustomerMerged, info.GetReason())
	require.Equal(t, into.String(), info.GetMetadata()["merged_into"])
}
