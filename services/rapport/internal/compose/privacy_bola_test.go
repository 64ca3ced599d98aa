package compose

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// privacyCases are the PrivacyService rows of the cross-tenant matrix, over
// gRPC (see consentCases for why): X's admin can neither export nor erase
// Y's customer nor read Y's audit log, and Y's own calls work, so the cases
// are not vacuous.
func privacyCases(b *testBundle) map[string]func(t *testing.T, w world) {
	p := customerv1.NewPrivacyServiceClient(b.grpcConn)
	c := customerv1.NewCustomerServiceClient(b.grpcConn)
	return map[string]func(t *testing.T, w world){
		customerv1.PrivacyService_ExportCustomer_FullMethodName: func(t *testing.T, w world) {
			_, err := p.ExportCustomer(authCtx(w.x), &customerv1.ExportCustomerRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			own, err := p.ExportCustomer(authCtx(w.y), &customerv1.ExportCustomerRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Contains(t, string(own.GetData()), w.yCustomer.GetId())
		},
		customerv1.PrivacyService_EraseCustomer_FullMethodName: func(t *testing.T, w world) {
			_, err := p.EraseCustomer(authCtx(w.x), &customerv1.EraseCustomerRequest{CustomerId: w.yCustomer.GetId(),
				RequestId: uuid.NewString()})
			notFound(t, err)
			got, err := c.GetCustomer(authCtx(w.y), &customerv1.GetCustomerRequest{Id: w.yCustomer.GetId()})
			require.NoError(t, err, "Y's customer is not erased")
			require.Equal(t, w.yCustomer.GetEmail(), got.GetEmail())
			_, err = p.EraseCustomer(authCtx(w.y), &customerv1.EraseCustomerRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err, "Y may erase its own")
		},
		customerv1.PrivacyService_ListAuditEvents_FullMethodName: func(t *testing.T, w world) {
			theirs, err := p.ListAuditEvents(authCtx(w.x), &customerv1.ListAuditEventsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, theirs.GetAuditEvents(), "X sees none of Y's audit rows")
			all, err := p.ListAuditEvents(authCtx(w.x), &customerv1.ListAuditEventsRequest{PageSize: 500})
			require.NoError(t, err)
			for _, e := range all.GetAuditEvents() {
				require.NotContains(t, e.GetCustomerIds(), w.yCustomer.GetId())
			}
			own, err := p.ListAuditEvents(authCtx(w.y), &customerv1.ListAuditEventsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.NotEmpty(t, own.GetAuditEvents(), "Y's creation of its customer is audited")
		},
	}
}
