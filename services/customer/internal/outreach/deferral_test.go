package outreach_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

var (
	email    = customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL
	deferred = customerv1.OutreachStatus_OUTREACH_STATUS_DEFERRED
)

// quietUntilNoon gives tenant's customer quiet hours 09:00-12:00 (in UTC,
// the default zone): t0, 10:00, is inside them.
func (b *testBundle) quietUntilNoon(t testing.TB, tenant, customer uuid.UUID) {
	t.Helper()
	_, err := b.consents.UpdateContactPreferences(grpcxtest.As(tenant), &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: customer.String(),
			QuietHours: &customerv1.QuietHours{StartTime: "09:00", EndTime: "12:00"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
	require.NoError(t, err)
}

func careEmail(customer uuid.UUID) *customerv1.SendOutreachRequest {
	return &customerv1.SendOutreachRequest{CustomerId: customer.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: care,
		Variables: map[string]string{"first_name": "Ann", "code": "B-42"}}
}

var noon = time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)

// TestQuietHoursDeferred: a send in the customer's quiet hours is DEFERRED
// (no touch, no event), goes out on the SMTP wire at the first worker run
// once they end and not before, and is never sent twice.
func TestQuietHoursDeferred(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "ann@example.org", locale: "en"})
	b.grant(t, cust, email, care)
	b.quietUntilNoon(t, b.tenant, cust)

	d := b.send(t, careEmail(cust))
	require.Equal(t, deferred, d.GetStatus())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_QUIET_HOURS, d.GetRefusalReason())
	require.Equal(t, noon, d.GetNextAllowedTime().AsTime())
	require.Equal(t, noon, d.GetNextAttemptTime().AsTime())
	require.Empty(t, d.GetFailureReason())
	require.Zero(t, b.touches(t, cust), "a deferred delivery eats no cap")

	for _, at := range []time.Time{t0, noon.Add(-time.Second)} {
		b.clock.Set(at)
		require.Zero(t, b.deliverDue(t), "at %s", at)
		require.Empty(t, b.smtp.received(), "nothing on the wire at %s", at)
		require.Equal(t, deferred, b.delivery(t, d).GetStatus())
	}

	b.clock.Set(noon)
	require.Equal(t, 1, b.deliverDue(t))
	msgs := b.smtp.received()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"ann@example.org"}, msgs[0].To)
	require.Equal(t, "<"+d.GetId()+"@acme.example>", parseMail(t, msgs[0].Data).Header.Get("Message-Id"))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus())
	require.Equal(t, noon, got.GetSendTime().AsTime())
	require.Equal(t, int32(1), got.GetAttempts())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_UNSPECIFIED, got.GetRefusalReason())
	require.Equal(t, 1, b.touches(t, cust), "the touch is recorded when the send goes ahead")
	require.Len(t, sentEvents(t, b), 1)
	require.Empty(t, failedEvents(t, b))

	b.clock.Set(noon.Add(24 * time.Hour))
	require.Zero(t, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 1)
	require.Equal(t, 1, b.touches(t, cust))
}

// TestDeferredReleasedOnce: workers racing (one server, and a second one
// on the same database, as replicas) over a deferred delivery as it comes
// due release it once, record one touch and send one message.
func TestDeferredReleasedOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	replica, err := outreach.New(b.pool, b.sealer, outreach.Config{
		SMTP: outreach.SMTPConfig{Addr: b.smtp.addr, TLS: "none", From: "Acme Care <care@acme.example>"},
	}, b.clock.Now, nil)
	require.NoError(t, err)
	var custs []uuid.UUID
	for range 5 {
		c := b.newCustomer(t, b.tenant, person{email: uuid.NewString() + "@example.org", locale: "en"})
		b.grant(t, c, email, care)
		b.quietUntilNoon(t, b.tenant, c)
		require.Equal(t, deferred, b.send(t, careEmail(c)).GetStatus())
		custs = append(custs, c)
	}
	b.clock.Set(noon)
	var wg sync.WaitGroup
	for i := range 6 {
		srv := b.srv
		if i%2 == 1 {
			srv = replica
		}
		wg.Go(func() {
			_, err := srv.DeliverDue(context.Background())
			require.NoError(t, err)
		})
	}
	wg.Wait()
	require.Zero(t, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 5, "one message per delivery")
	for _, c := range custs {
		require.Equal(t, 1, b.touches(t, c))
	}
	require.Len(t, sentEvents(t, b), 5)
}

// TestFrequencyCapDeferred: the third marketing SMS within the cap's 7 days
// waits until the cap frees and then goes out on the webhook, once; a cap
// that frees beyond the deferral bound refuses at once.
func TestFrequencyCapDeferred(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	b.grant(t, cust, sms, marketing)
	for range 2 {
		require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, b.send(t, smsSend(cust, marketing)).GetStatus())
	}
	require.Equal(t, 2, b.deliverDue(t))
	third := b.send(t, smsSend(cust, marketing))
	require.Equal(t, deferred, third.GetStatus())
	frees := third.GetNextAllowedTime().AsTime()
	require.Equal(t, t0.Add(7*24*time.Hour), frees, "the first touch leaves the 7-day window")

	b.clock.Set(frees.Add(-time.Second))
	require.Zero(t, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 2)
	require.Equal(t, 2, b.touches(t, cust))

	b.clock.Set(frees)
	require.Equal(t, 1, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 3)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, b.delivery(t, third).GetStatus())
	require.Equal(t, 3, b.touches(t, cust))
	require.Zero(t, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 3)
	require.Empty(t, failedEvents(t, b))
}

// TestFrequencyCapBeyondBound: with a 1-day bound, a cap freeing in 7 days
// is REFUSED at once, with its event, as before deferral existed.
func TestFrequencyCapBeyondBound(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{configure: func(c *outreach.Config) { c.MaxDeferral = 24 * time.Hour }})
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	b.grant(t, cust, sms, marketing)
	for range 2 {
		b.send(t, smsSend(cust, marketing))
	}
	third := b.send(t, smsSend(cust, marketing))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, third.GetStatus())
	require.Equal(t, "refused:FREQUENCY_CAP", third.GetFailureReason())
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, third.GetId(), failed[0].GetDeliveryId())
}

// TestDeferredWithdrawnRefused: consent withdrawn while a delivery waits
// makes it REFUSED at the re-check: nothing sent, no touch, its content
// dropped, and then (only then) OutreachFailed.
func TestDeferredWithdrawnRefused(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "ann@example.org", locale: "en"})
	b.grant(t, cust, email, care)
	b.quietUntilNoon(t, b.tenant, cust)
	d := b.send(t, careEmail(cust))
	require.Equal(t, deferred, d.GetStatus())
	require.Empty(t, failedEvents(t, b))

	_, err := b.consents.SetConsent(b.ctx(), &customerv1.SetConsentRequest{CustomerId: cust.String(), Channel: email,
		Purpose: care, State: customerv1.ConsentState_CONSENT_STATE_WITHDRAWN,
		LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "unsubscribe-link"})
	require.NoError(t, err)

	b.clock.Set(noon)
	require.Zero(t, b.deliverDue(t))
	require.Empty(t, b.smtp.received())
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, got.GetStatus())
	require.Equal(t, "refused:WITHDRAWN", got.GetFailureReason())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_WITHDRAWN, got.GetRefusalReason())
	require.Nil(t, got.GetNextAttemptTime())
	require.Zero(t, b.touches(t, cust))
	var content []byte
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT content_sealed FROM outreach_deliveries WHERE tenant_id = $1 AND id = $2`, b.tenant, d.GetId()).Scan(&content))
	require.Nil(t, content, "a refused delivery holds no content")
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, d.GetId(), failed[0].GetDeliveryId())
	require.Equal(t, "refused:WITHDRAWN", failed[0].GetReason())

	b.clock.Set(noon.Add(time.Hour))
	require.Zero(t, b.deliverDue(t))
	require.Len(t, failedEvents(t, b), 1)
}

// TestCareGreetingInQuietHours: a birthday greeting falling due in the
// customer's quiet hours (care.due consumer) is DEFERRED and goes out on
// the wire when they end, once.
func TestCareGreetingInQuietHours(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	w.createTemplate(t, birthdayTemplate("birthday-greeting"))
	w.careSettings(t, w.tenant, "birthday-greeting")
	ada := w.birthdayToday(t, w.tenant, "Ada Lovelace", "ada@example.com")
	w.grantEmailCare(t, w.tenant, ada)
	w.quietUntilNoon(t, w.tenant, ada)

	w.runCalendar(t, 0)
	ds := w.deliveriesOf(t, w.tenant, ada)
	require.Len(t, ds, 1)
	require.Equal(t, deferred, ds[0].GetStatus())
	require.Equal(t, noon, ds[0].GetNextAllowedTime().AsTime())
	require.Zero(t, w.touches(t, ada))
	require.Zero(t, w.deliverDue(t))
	require.Empty(t, w.smtp.received())

	w.clock.Set(noon.Add(-time.Minute))
	require.Zero(t, w.deliverDue(t))
	require.Empty(t, w.smtp.received(), "not before quiet hours end")

	w.clock.Set(noon)
	require.Equal(t, 1, w.deliverDue(t))
	msgs := w.smtp.received()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"ada@example.com"}, msgs[0].To)
	require.Equal(t, "Happy birthday, Ada Lovelace!", decodeHeader(t, parseMail(t, msgs[0].Data).Header.Get("Subject")))
	require.Equal(t, 1, w.touches(t, ada))

	// A later calendar round and worker run change nothing.
	w.clock.Set(noon.Add(time.Hour))
	w.runCalendar(t, 0)
	require.Zero(t, w.deliverDue(t))
	require.Len(t, w.smtp.received(), 1)
	require.Len(t, w.deliveriesOf(t, w.tenant, ada), 1)
}

// TestDeferredAgain: quiet hours lengthened while a delivery waits make the
// re-check defer it again, to their new end, where it goes out.
func TestDeferredAgain(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "ann@example.org", locale: "en"})
	b.grant(t, cust, email, care)
	b.quietUntilNoon(t, b.tenant, cust)
	d := b.send(t, careEmail(cust))
	require.Equal(t, deferred, d.GetStatus())

	_, err := b.consents.UpdateContactPreferences(b.ctx(), &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: cust.String(),
			QuietHours: &customerv1.QuietHours{StartTime: "09:00", EndTime: "15:00"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
	require.NoError(t, err)
	b.clock.Set(noon)
	require.Zero(t, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, deferred, got.GetStatus())
	three := noon.Add(3 * time.Hour)
	require.Equal(t, three, got.GetNextAllowedTime().AsTime())
	require.Equal(t, three, got.GetNextAttemptTime().AsTime())
	require.Zero(t, b.touches(t, cust))

	b.clock.Set(three)
	require.Equal(t, 1, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 1)
	require.Equal(t, 1, b.touches(t, cust))
	require.Empty(t, failedEvents(t, b))
}

// TestDeferredErased: erasing a customer fails a deferred delivery like a
// queued one (erased, content gone, one OutreachFailed); its re-check time
// passes without a send.
func TestDeferredErased(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "ann@example.org", locale: "en"})
	b.grant(t, cust, email, care)
	b.quietUntilNoon(t, b.tenant, cust)
	d := b.send(t, careEmail(cust))
	require.Equal(t, deferred, d.GetStatus())

	b.inTx(t, func(tx pgx.Tx) {
		require.NoError(t, b.srv.Erase(context.Background(), tx, b.tenant, cust))
	})
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	require.Equal(t, outreach.ReasonErased, got.GetFailureReason())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_UNSPECIFIED, got.GetRefusalReason())
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, outreach.ReasonErased, failed[0].GetReason())

	b.clock.Set(noon)
	require.Zero(t, b.deliverDue(t))
	require.Empty(t, b.smtp.received())
	require.Zero(t, b.touches(t, cust))
}
