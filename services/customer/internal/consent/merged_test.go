package consent_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

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

	_, err = b.client.SetConsent(b.as(t, "agent"), &customerv1.SetConsentRequest{CustomerId: source,
		Channel: sms, Purpose: service, State: stateWithdrawn, LegalBasis: basisConsent, Source: "web-form"})
	requireMerged(t, err, primary)
	_, err = b.client.CheckContact(b.as(t, "marketer"), &customerv1.CheckContactRequest{CustomerId: source,
		Channel: sms, Purpose: service})
	requireMerged(t, err, primary)
	_, err = b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{CustomerId: source,
		Channel: sms, Purpose: service, SourceService: "outreach", Reference: "r-1"})
	requireMerged(t, err, primary)

	require.Equal(t, before, b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant))
	require.Zero(t, b.count(t, `SELECT count(*) FROM contact_touches WHERE tenant_id = $1`, b.tenant), "no touch recorded")
	// The primary is unaffected.
	b.grant(t, primary, sms, service)
	require.True(t, b.check(t, primary, sms, service).GetAllowed())
}

// TestMergedCustomerOtherChanges: the rest of the consent API's changes
// about a merged customer (confirming a double opt-in sent before the
// merge, contact preferences, a touch that happened) are refused the same
// way, naming the customer to use, and write nothing.
func TestMergedCustomerOtherChanges(t *testing.T) {
	t.Parallel()
	b := setup(t)
	primary, source := b.customer(t, b.tenant, "Europe/Berlin"), b.customer(t, b.tenant, "Europe/Berlin")
	pending := b.set(t, source, email, marketing, stateGranted, basisConsent) // a double opt-in, not yet confirmed
	require.NotEmpty(t, pending.GetConfirmationToken())
	_, err := b.pool.Exec(t.Context(), `UPDATE customers SET merged_into = $2, merge_time = now()
		WHERE tenant_id = $1 AND id = $3`, b.tenant, primary, source)
	require.NoError(t, err)
	written := func() int {
		return b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant) +
			b.count(t, `SELECT count(*) FROM contact_touches WHERE tenant_id = $1`, b.tenant) +
			b.count(t, `SELECT count(*) FROM contact_settings WHERE tenant_id = $1 AND preferences_update_time IS NOT NULL`, b.tenant) +
			b.count(t, `SELECT count(*) FROM outbox WHERE tenant_id = $1`, b.tenant)
	}
	before := written()

	_, err = b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: pending.GetConfirmationToken()})
	requireMerged(t, err, primary)
	_, err = b.client.UpdateContactPreferences(b.as(t, "agent"), &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: source,
			QuietHours: &customerv1.QuietHours{StartTime: "22:00", EndTime: "07:00"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}},
	})
	requireMerged(t, err, primary)
	_, err = b.client.RecordContact(b.as(t, "service"), &customerv1.RecordContactRequest{
		CustomerId: source, Channel: sms, Purpose: service, SourceService: "ticket", Reference: "t-1",
	})
	requireMerged(t, err, primary)
	require.Equal(t, before, written(), "nothing recorded for the merged customer")

	// Its history stays readable under the old id.
	_, err = b.client.ListConsentEvents(b.as(t, "agent"), &customerv1.ListConsentEventsRequest{CustomerId: source})
	require.NoError(t, err)
	_, err = b.client.GetContactPreferences(b.as(t, "agent"), &customerv1.GetContactPreferencesRequest{CustomerId: source})
	require.NoError(t, err)
}

// requireMerged asserts the refusal of a call about a customer merged into
// primary: FAILED_PRECONDITION, CUSTOMER_MERGED, naming primary.
func requireMerged(t *testing.T, err error, primary string) {
	t.Helper()
	requireCode(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED") // fails without an ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, primary, ei.GetMetadata()["merged_into"])
		}
	}
}

// TestConsentChangeWaitingOnAMerge: a consent change that waits for the
// customer's lock while a merge holds it sees the merge once it commits,
// and is refused, rather than recording a decision for the merged customer.
func TestConsentChangeWaitingOnAMerge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := t.Context()
	primary, source := b.customer(t, b.tenant, "Europe/Berlin"), b.customer(t, b.tenant, "Europe/Berlin")
	b.grant(t, source, sms, service) // the source has its settings row
	before := b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant)

	merge, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = merge.Rollback(ctx) }()
	_, err = merge.Exec(ctx, `SELECT 1 FROM contact_settings WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE`, b.tenant, source)
	require.NoError(t, err)
	_, err = merge.Exec(ctx, `UPDATE customers SET merged_into = $2, merge_time = now() WHERE tenant_id = $1 AND id = $3`,
		b.tenant, primary, source)
	require.NoError(t, err)
	changed := make(chan error, 1)
	go func() {
		_, err := b.client.SetConsent(b.as(t, "agent"), &customerv1.SetConsentRequest{CustomerId: source,
			Channel: sms, Purpose: service, State: stateWithdrawn, LegalBasis: basisConsent, Source: "web-form"})
		changed <- err
	}()
	time.Sleep(200 * time.Millisecond) // the change waits on the merge's lock
	require.NoError(t, merge.Commit(ctx))
	requireMerged(t, <-changed, primary)
	require.Equal(t, before, b.count(t, `SELECT count(*) FROM consent_events WHERE tenant_id = $1`, b.tenant))
}
