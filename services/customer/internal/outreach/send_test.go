package outreach_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

var (
	sms       = customerv1.ContactChannel_CONTACT_CHANNEL_SMS
	marketing = customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING
	care      = customerv1.ContactPurpose_CONTACT_PURPOSE_CARE
)

func (b *testBundle) grant(t testing.TB, customer uuid.UUID, ch customerv1.ContactChannel, p customerv1.ContactPurpose) {
	t.Helper()
	_, err := b.consents.SetConsent(b.ctx(), &customerv1.SetConsentRequest{CustomerId: customer.String(), Channel: ch,
		Purpose: p, State: customerv1.ConsentState_CONSENT_STATE_GRANTED,
		LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.NoError(t, err)
}

func smsSend(customer uuid.UUID, p customerv1.ContactPurpose) *customerv1.SendOutreachRequest {
	return &customerv1.SendOutreachRequest{CustomerId: customer.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "repair-ready"}, Purpose: p,
		Variables: map[string]string{"ticket": "T-1"}}
}

func fieldOf(t testing.TB, err error) string {
	t.Helper()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.GetFieldViolations()) > 0 {
			return br.GetFieldViolations()[0].GetField()
		}
	}
	t.Fatalf("no field violation in %v", err)
	return ""
}

// TestGovernorRefusal: without consent, marketing is REFUSED: recorded,
// announced, not sent, not counted.
func TestGovernorRefusal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	d := b.send(t, smsSend(cust, marketing))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, d.GetStatus())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_NO_CONSENT, d.GetRefusalReason())
	require.Equal(t, "refused:NO_CONSENT", d.GetFailureReason())
	require.Zero(t, b.deliverDue(t))
	require.Empty(t, b.hook.requests())
	require.Zero(t, b.touches(t, cust))
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, "refused:NO_CONSENT", failed[0].GetReason())
	require.Equal(t, d.GetId(), failed[0].GetDeliveryId())
	require.Equal(t, sms, failed[0].GetChannel())
	require.Equal(t, marketing, failed[0].GetPurpose())
}

// TestGovernorCountsTouches: each allowed send is a touch, so the
// marketing cap (2 per 7 days by default) holds the third back: DEFERRED
// until the time it frees (within the 7-day bound), not counted, not sent.
func TestGovernorCountsTouches(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	b.grant(t, cust, sms, marketing)
	for range 2 {
		require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, b.send(t, smsSend(cust, marketing)).GetStatus())
	}
	require.Equal(t, 2, b.touches(t, cust))
	third := b.send(t, smsSend(cust, marketing))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_DEFERRED, third.GetStatus())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_FREQUENCY_CAP, third.GetRefusalReason())
	require.Empty(t, third.GetFailureReason())
	require.True(t, third.GetNextAllowedTime().AsTime().After(t0))
	require.Equal(t, 2, b.touches(t, cust), "a deferred delivery holds no touch")
	require.Equal(t, 2, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 2)
	require.Empty(t, failedEvents(t, b), "a deferral is no failure")
}

// TestGovernorQuietHours: care in the customer's quiet hours is deferred
// to the time they end; service is not held back.
func TestGovernorQuietHours(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	b.grant(t, cust, sms, care)
	_, err := b.consents.UpdateContactPreferences(b.ctx(), &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: cust.String(),
			QuietHours: &customerv1.QuietHours{StartTime: "09:00", EndTime: "12:00"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
	require.NoError(t, err)
	d := b.send(t, smsSend(cust, care))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_DEFERRED, d.GetStatus())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_QUIET_HOURS, d.GetRefusalReason())
	require.Equal(t, d.GetNextAllowedTime().AsTime(), d.GetNextAttemptTime().AsTime())
	require.Equal(t, "2026-03-04T12:00:00Z", d.GetNextAllowedTime().AsTime().Format("2006-01-02T15:04:05Z07:00"))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, b.send(t, smsSend(cust, service)).GetStatus())
}

// TestSendIdempotent: one request id, one delivery and one message, also
// after the idempotency record is gone, and also under 20 concurrent
// retries; the same id for another outreach is refused.
func TestSendIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	req := smsSend(cust, service)
	req.RequestId = uuid.NewString()

	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]int{}
	)
	for range 20 {
		wg.Go(func() {
			d, err := b.client.SendOutreach(b.ctx(), req)
			require.NoError(t, err)
			mu.Lock()
			ids[d.GetId()]++
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Len(t, ids, 1, "one delivery")
	var first string
	for id := range ids {
		first = id
	}
	require.Equal(t, 1, b.touches(t, cust), "one touch")

	_, err := b.pool.Exec(context.Background(), `DELETE FROM idempotency_keys WHERE tenant_id = $1`, b.tenant.String())
	require.NoError(t, err)
	again := b.send(t, req)
	require.Equal(t, first, again.GetId(), "the delivery remembers its request id for ever")

	require.Equal(t, 1, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 1, "one message on the wire")

	// Another principal of the tenant replaying the id gets the same delivery.
	d, err := b.client.SendOutreach(grpcxtest.AsSubject(b.tenant, "other-service", "service"), req)
	require.NoError(t, err)
	require.Equal(t, first, d.GetId())

	other := b.newCustomer(t, b.tenant, person{phone: "+4915100000000"})
	reuse := smsSend(other, service)
	reuse.RequestId = req.GetRequestId()
	_, err = b.client.SendOutreach(grpcxtest.AsSubject(b.tenant, "third", "service"), reuse)
	require.Equal(t, "request_id", fieldOf(t, err))
}

// TestSendErrors: bad input names the field; unknown things are NOT_FOUND.
func TestSendErrors(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "a@example.org"})

	_, err := b.client.SendOutreach(b.ctx(), &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "A"}})
	require.Equal(t, "variables", fieldOf(t, err), "code is missing")
	require.Contains(t, status.Convert(err).Message(), "code")

	for name, tc := range map[string]struct {
		req   *customerv1.SendOutreachRequest
		field string
	}{
		"NoTemplate":  {&customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service}, "template"},
		"NoPurpose":   {&customerv1.SendOutreachRequest{CustomerId: cust.String(), Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}}, "purpose"},
		"BadCustomer": {&customerv1.SendOutreachRequest{CustomerId: "x", Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service}, "customer_id"},
		"BadVarName": {&customerv1.SendOutreachRequest{CustomerId: cust.String(), Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"},
			Purpose: service, Variables: map[string]string{"a-b": "x"}}, "variables"},
		"BadLocale": {&customerv1.SendOutreachRequest{CustomerId: cust.String(), Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"},
			Purpose: service, Locale: "not a locale"}, "locale"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.client.SendOutreach(b.ctx(), tc.req)
			require.True(t, strings.HasPrefix(fieldOf(t, err), tc.field), "%v", err)
		})
	}

	_, err = b.client.SendOutreach(b.ctx(), &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "nope"}, Purpose: service})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.client.SendOutreach(b.ctx(), &customerv1.SendOutreachRequest{CustomerId: uuid.NewString(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "A", "code": "c"}})
	require.Equal(t, codes.NotFound, status.Code(err))

	// Another tenant's customer and template are not found.
	otherTenant := uuid.New()
	theirs := b.newCustomer(t, otherTenant, person{email: "b@example.org"})
	_, err = b.client.SendOutreach(b.ctx(), &customerv1.SendOutreachRequest{CustomerId: theirs.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "A", "code": "c"}})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.client.SendOutreach(grpcxtest.As(otherTenant), &customerv1.SendOutreachRequest{CustomerId: theirs.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "A", "code": "c"}})
	require.Equal(t, codes.NotFound, status.Code(err), "the template is tenant A's")
	require.Empty(t, failedEvents(t, b))
}

// TestNoAddress: a customer without an address for the channel gets a
// FAILED no_address delivery and no touch.
func TestNoAddress(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{email: "only-email@example.org"})
	d := b.send(t, smsSend(cust, service))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, d.GetStatus())
	require.Equal(t, "no_address", d.GetFailureReason())
	require.Zero(t, b.touches(t, cust))
	require.Len(t, failedEvents(t, b), 1)
}

// TestNoPersonalDataAtRest: neither the address, the variables nor the
// rendered text appear in any outreach row, outbox row or stored response.
func TestNoPersonalDataAtRest(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "marker-addr@example.org"})
	req := &customerv1.SendOutreachRequest{CustomerId: cust.String(), RequestId: uuid.NewString(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "MarkerName", "code": "MarkerCode"}}
	b.send(t, req)
	require.Equal(t, 1, b.deliverDue(t))
	for _, q := range []string{
		`SELECT count(*) FROM outreach_deliveries d WHERE d::text ~* $1 OR encode(coalesce(content_sealed, ''), 'escape') ~* $1`,
		`SELECT count(*) FROM outbox o WHERE o::text ~* $1 OR encode(payload, 'escape') ~* $1`,
		`SELECT count(*) FROM idempotency_keys k WHERE k::text ~* $1 OR encode(response, 'escape') ~* $1`,
	} {
		var n int
		require.NoError(t, b.pool.QueryRow(context.Background(), q, "marker").Scan(&n))
		require.Zero(t, n, q)
	}
	require.Contains(t, string(b.smtp.received()[0].Data), "MarkerCode", "the marker did go out")
}
