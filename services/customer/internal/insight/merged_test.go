package insight_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// TestRecommendationsForMergedCustomer: recommendations are for a
// customer's next purchase, which only the customer it was merged into can
// make. Under the old id the list would be best sellers (its purchases
// moved), so the call is refused with the id to ask about instead.
func TestRecommendationsForMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBasketFixture(t, b)
	ctx := context.Background()
	_, err := b.server.RefreshDue(ctx, time.Hour)
	require.NoError(t, err)
	require.NotEmpty(t, b.recommend(t, f.t, f.u[4], 0).GetRecommendations(), "u4 has recommendations before the merge")

	// u4 merged into u1 as MergeCustomers leaves it: the source marked, its
	// purchases moved to the primary.
	_, err = b.pool.Exec(ctx, `UPDATE purchases SET customer_id = $3 WHERE tenant_id = $1 AND customer_id = $2`, f.t, f.u[4], f.u[1])
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2`,
		f.t, f.u[4], f.u[1])
	require.NoError(t, err)

	_, err = b.insight.ListRecommendations(grpcxtest.As(f.t, "agent"), &customerv1.ListRecommendationsRequest{CustomerId: f.u[4].String()})
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
	require.Equal(t, f.u[1].String(), info.GetMetadata()["merged_into"])

	// The primary is served as before; another tenant still sees NotFound,
	// not the merge.
	require.NotNil(t, b.recommend(t, f.t, f.u[1], 0).GetRefreshTime())
	_, err = b.insight.ListRecommendations(grpcxtest.As(f.z, "agent"), &customerv1.ListRecommendationsRequest{CustomerId: f.u[4].String()})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}
