package privacy_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// TestEraseMergedCustomer: erasing a customer merged into another is
// refused with lifecycle.MergedError naming the customer to erase, and
// nothing is erased: the person's data lives under the primary now, and
// erasing the old id alone would answer as if they were forgotten. The
// old id stays exportable; erasing the primary takes it along.
func TestEraseMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	ctx := grpcxtest.As(tenant)
	primary, source := b.createCustomer(t, ctx), b.createCustomer(t, ctx)
	_, err := b.customers.MergeCustomers(ctx, &customerv1.MergeCustomersRequest{PrimaryId: primary.GetId(),
		SourceIds: []string{source.GetId()}})
	require.NoError(t, err)
	audits := b.auditRows(t, tenant)

	req := &customerv1.EraseCustomerRequest{CustomerId: source.GetId(), RequestId: uuid.NewString()}
	for range 2 { // a retry of the same request is refused the same way
		_, err = b.privacy.EraseCustomer(ctx, req)
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
		require.Equal(t, primary.GetId(), info.GetMetadata()["merged_into"])
	}
	require.Zero(t, b.erasedEvents(t, tenant), "no customer.erased")
	require.Equal(t, 2, b.count(t, `SELECT count(*) FROM customer_keys WHERE tenant_id = $1`, tenant), "no key destroyed")
	require.Zero(t, b.count(t, `SELECT count(*) FROM customers WHERE tenant_id = $1 AND erase_time IS NOT NULL`, tenant))
	require.Equal(t, audits, b.auditRows(t, tenant), "no erasure audited")

	doc, _ := b.export(t, ctx, source.GetId())
	require.Equal(t, source.GetId(), doc.CustomerID, "the old id stays exportable")

	_, err = b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: primary.GetId()})
	require.NoError(t, err)
	require.Equal(t, 2, b.erasedEvents(t, tenant), "the primary's erasure takes the merged row")
	_, err = b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: source.GetId()})
	require.NoError(t, err, "erased with its primary: erasing it again is the same answer")
}
