package purchase_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// TestSegmentOfMergedCustomer: a merge drops the source's segment and
// counts its purchases in the primary's, so under the old id there is no
// standing left to report ("no segment" would read as a customer who never
// bought). GetCustomerSegment refuses with the customer to ask about; the
// old id's purchases stay listed where the merge left them.
func TestSegmentOfMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	tenant := uuid.New()
	ids := b.newCustomers(t, tenant, 2)
	primary, source := ids[0], ids[1]
	b.record(t, tenant, source, &customerv1.Purchase{OrderReference: "ORD-S", TotalAmount: usd(500),
		Items:        []*customerv1.PurchaseItem{{Sku: "A", Quantity: 1, UnitPrice: usd(500)}},
		Channel:      customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
		PurchaseTime: timestamppb.New(t0.Add(-time.Hour))})
	require.NotEqual(t, customerv1.Segment_SEGMENT_UNSPECIFIED, b.segment(t, tenant, source).GetSegment())

	// The merge as MergeCustomers runs it: the profile marks the source,
	// then the purchase package moves its purchases.
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `UPDATE customers SET merged_into = $2, merge_time = now() WHERE tenant_id = $1 AND id = $3`,
		tenant, primary, source)
	require.NoError(t, err)
	_, err = b.server.Merger().Merge(ctx, tx, tenant, primary, []uuid.UUID{source})
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))

	_, err = b.segments.GetCustomerSegment(as(tenant), &customerv1.GetCustomerSegmentRequest{CustomerId: source.String()})
	st := status.Convert(err)
	require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	require.NotNil(t, info)
	require.Equal(t, lifecycle.ReasonCustomerMerged, info.GetReason())
	require.Equal(t, primary.String(), info.GetMetadata()["merged_into"])

	require.NotEqual(t, customerv1.Segment_SEGMENT_UNSPECIFIED, b.segment(t, tenant, primary).GetSegment(),
		"the primary's segment counts the moved purchase")
	_, err = b.purchases.ListPurchases(as(tenant), &customerv1.ListPurchasesRequest{CustomerId: source.String()})
	require.NoError(t, err, "reads under the old id keep working")
	// Another tenant learns nothing of the merge.
	_, err = b.segments.GetCustomerSegment(as(uuid.New()), &customerv1.GetCustomerSegmentRequest{CustomerId: source.String()})
	require.Equal(t, codes.NotFound, status.Code(err))
}
