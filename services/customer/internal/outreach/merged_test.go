package outreach_test

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

// TestSendOutreachToMergedCustomer: nothing is sent to, or recorded for, a
// customer merged into another; the refusal is lifecycle.MergedError, which
// names the customer to send to. The merged customer's deliveries stay
// readable under its old id.
func TestSendOutreachToMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	b.createTemplate(t, emailTemplate("birthday"))
	primary := b.newCustomer(t, b.tenant, person{email: "primary@example.org"})
	source := b.newCustomer(t, b.tenant, person{email: "source@example.org"})
	vars := map[string]string{"first_name": "S", "code": "C"}
	old := b.send(t, &customerv1.SendOutreachRequest{CustomerId: source.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	_, err := b.pool.Exec(ctx, `UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2`,
		b.tenant, source, primary)
	require.NoError(t, err)
	count := func(sql string) int {
		t.Helper()
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, sql, b.tenant).Scan(&n))
		return n
	}
	const (
		deliveries = `SELECT count(*) FROM outreach_deliveries WHERE tenant_id = $1`
		outbox     = `SELECT count(*) FROM outbox WHERE tenant_id = $1`
		audits     = `SELECT count(*) FROM pii_audit WHERE tenant_id = $1`
	)
	beforeDeliveries, beforeOutbox, beforeAudits := count(deliveries), count(outbox), count(audits)
	beforeTouches := b.touches(t, source) + b.touches(t, primary)

	req := &customerv1.SendOutreachRequest{CustomerId: source.String(), Purpose: service, Variables: vars,
		RequestId: uuid.NewString(), Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}}
	for range 2 { // a retry of the same request is refused the same way
		_, err = b.client.SendOutreach(b.ctx(), req)
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
		require.Equal(t, primary.String(), info.GetMetadata()["merged_into"])
	}
	require.Equal(t, beforeDeliveries, count(deliveries), "no delivery")
	require.Equal(t, beforeOutbox, count(outbox), "no event")
	require.Equal(t, beforeAudits, count(audits), "no personal data opened")
	require.Equal(t, beforeTouches, b.touches(t, source)+b.touches(t, primary), "no contact reserved")

	// History stays reachable under the old id.
	got, err := b.client.GetOutreachDelivery(b.ctx(), &customerv1.GetOutreachDeliveryRequest{CustomerId: source.String(), Id: old.GetId()})
	require.NoError(t, err)
	require.Equal(t, source.String(), got.GetCustomerId())
	list, err := b.client.ListOutreachDeliveries(b.ctx(), &customerv1.ListOutreachDeliveriesRequest{CustomerId: source.String()})
	require.NoError(t, err)
	require.Len(t, list.GetOutreachDeliveries(), 1)
}
