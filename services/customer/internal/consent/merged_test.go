package consent_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// TestMergedCustomer: once a customer is merged into another, its consent
// can neither change nor be asked about; every call says which customer to
// use instead, and nothing is recorded for the merged one.
func TestMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	primary, source := b.customer(t, b.tenant, "Europe/Berlin"), b.customer(t, b.tenant, "Europe/Berlin")
	b.grant(t, source, sms, service) // decided before the merge
	_, err := b.pool.Exec(t.Context(), `UPDATE customers SET merged_into = $2, merge_time = now()
		WHERE tenant_id = $1 AND id = $3`, b.tenant, primary, source)
	require.NoError(t, err)
	before := b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant)

	requireMerged := func(t *testing.T, err error) {
		t.Helper()
		requireCode(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
		for _, d := range status.Convert(err).Details() {
			if ei, ok := d.(*errdetails.ErrorInfo); ok {
				require.Equal(t, primary, ei.GetMetadata()["merged_into"])
			}
		}
	}
	_, err = b.client.SetConsent(b.as(t, "agent"), &customerv1.SetConsentRequest{CustomerId: source,
		Channel: sms, Purpose: service, State: stateWithdrawn, LegalBasis: basisConsent, Source: "web-form"})
	requireMerged(t, err)
	_, err = b.client.CheckContact(b.as(t, "marketer"), &customerv1.CheckContactRequest{CustomerId: source,
		Channel: sms, Purpose: service})
	requireMerged(t, err)
	_, err = b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: source,
		Channel: sms, Purpose: service, SourceService: "outreach", Reference: "r-1"})
	requireMerged(t, err)

	require.Equal(t, before, b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant))
	require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches WHERE tenant_id = $1`, b.tenant), "no touch recorded")
	// The primary is unaffected.
	b.grant(t, primary, sms, service)
	require.True(t, b.check(t, primary, sms, service).GetAllowed())
}
