package outreach_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

// TestWebhookSMS: an SMS goes to the provider as a signed POST (verified by
// the official Standard Webhooks library); webhook-id is the delivery id on
// every attempt; 503 and 429 are retried, then 200 is sent.
func TestWebhookSMS(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{email: "e@example.org", phone: "+4915112345678", locale: "en"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "repair-ready"}, Purpose: service,
		Variables: map[string]string{"ticket": "T-7"}})
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, d.GetStatus())

	b.hook.reply(http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusOK)
	for attempt := 1; attempt <= 3; attempt++ {
		require.Equal(t, 1, b.deliverDue(t), "attempt %d", attempt)
		got := b.delivery(t, d)
		if attempt < 3 {
			require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, got.GetStatus())
			require.Equal(t, []string{"http_503", "http_429"}[attempt-1], got.GetLastErrorCode())
			b.clock.Set(got.GetNextAttemptTime().AsTime())
		}
	}
	reqs := b.hook.requests()
	require.Len(t, reqs, 3)
	for _, r := range reqs {
		require.True(t, r.SignatureOK, "signature verifies")
		require.Equal(t, d.GetId(), r.Header.Get("webhook-id"), "the same id on every attempt")
		require.Equal(t, "application/json", r.Header.Get("Content-Type"))
		require.Equal(t, map[string]string{
			"type": "outreach.message", "delivery_id": d.GetId(), "tenant_id": b.tenant.String(), "channel": "sms",
			"purpose": "service", "locale": "en", "to": "+4915112345678", "text": "Your repair T-7 is ready.",
		}, r.Body)
	}
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus())
	require.Equal(t, int32(3), got.GetAttempts())
	require.Equal(t, "prov-"+d.GetId(), got.GetProviderMessageId())
	require.Len(t, sentEvents(t, b), 1)
}

// TestWebhookClientErrorIsNotRetried: a 4xx (here 422) fails the delivery
// at once, provider_rejected.
func TestWebhookClientErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "repair-ready"}, Purpose: service,
		Variables: map[string]string{"ticket": "T-7"}})
	b.hook.reply(http.StatusUnprocessableEntity)
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	require.Equal(t, outreach.ReasonProviderRejected, got.GetFailureReason())
	require.Equal(t, "http_422", got.GetLastErrorCode())
	b.clock.Advance(24 * time.Hour)
	require.Zero(t, b.deliverDue(t))
	require.Len(t, b.hook.requests(), 1)
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, outreach.ReasonProviderRejected, failed[0].GetReason())
}

// TestWebhookTimeoutIsRetried: a provider that does not answer within the
// send timeout is a temporary failure.
func TestWebhookTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{configure: func(c *outreach.Config) { c.SendTimeout = 200 * time.Millisecond }})
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "repair-ready"}, Purpose: service,
		Variables: map[string]string{"ticket": "T-7"}})
	block := make(chan struct{})
	defer close(block)
	b.hook.mu.Lock()
	b.hook.block = block
	b.hook.mu.Unlock()
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, got.GetStatus())
	require.Equal(t, "timeout", got.GetLastErrorCode())

	b.clock.Set(got.GetNextAttemptTime().AsTime())
	require.Equal(t, 1, b.deliverDue(t))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, b.delivery(t, d).GetStatus())
}

// TestNoDriver: a channel without a configured driver fails at once with
// no_driver, and no touch is counted.
func TestNoDriver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, &customerv1.OutreachTemplate{Key: "wa", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_MESSAGING,
		DefaultLocale: "en", Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", TextBody: "Hi"}}})
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "wa"}, Purpose: service})
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, d.GetStatus())
	require.Equal(t, outreach.ReasonNoDriver, d.GetFailureReason())
	require.Zero(t, b.touches(t, cust))
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, outreach.ReasonNoDriver, failed[0].GetReason())
	require.Equal(t, int32(0), failed[0].GetAttempts())
	require.Equal(t, int64(1), failed[0].GetAggregateVersion())
	require.Zero(t, b.deliverDue(t))
}
