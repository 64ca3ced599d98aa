package outreach_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

var service = customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE

// TestSMTPDeliveryOnTheWire sends a templated email through the real SMTP
// client to a real SMTP server and checks what arrived: envelope, headers,
// both bodies, in the customer's language, with values escaped in HTML.
func TestSMTPDeliveryOnTheWire(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tpl := b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "ann@example.org", locale: "de-CH"})

	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "Änn <b>", "code": "B-42"}})
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, d.GetStatus())
	require.Equal(t, "de", d.GetLocale(), "de-CH falls back to the language")
	require.Equal(t, tpl.GetId(), d.GetTemplateId())
	require.Empty(t, b.smtp.received(), "nothing is sent before the worker runs")

	require.Equal(t, 1, b.deliverDue(t))
	msgs := b.smtp.received()
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Equal(t, "care@acme.example", m.From, "MAIL FROM")
	require.Equal(t, []string{"ann@example.org"}, m.To, "RCPT TO")

	p := parseMail(t, m.Data)
	require.Equal(t, `"Acme Care" <care@acme.example>`, p.Header.Get("From"))
	require.Equal(t, "<ann@example.org>", p.Header.Get("To"))
	require.Equal(t, "Alles Gute, Änn <b>!", decodeHeader(t, p.Header.Get("Subject")))
	require.Equal(t, "<"+d.GetId()+"@acme.example>", p.Header.Get("Message-Id"))
	require.Equal(t, "de", p.Header.Get("Content-Language"))
	require.Equal(t, "Liebe(r) Änn <b>, Ihr Code: B-42.", p.Text)
	require.Equal(t, "<p>Liebe(r) Änn &lt;b&gt;, Ihr Code: <b>B-42</b>.</p>", p.HTML, "html/template escapes values")

	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus())
	require.Equal(t, int32(1), got.GetAttempts())
	require.Equal(t, "<"+d.GetId()+"@acme.example>", got.GetProviderMessageId())
	require.Equal(t, t0, got.GetSendTime().AsTime())
	require.Nil(t, got.GetNextAttemptTime())

	sent := sentEvents(t, b)
	require.Len(t, sent, 1)
	require.Equal(t, d.GetId(), sent[0].GetDeliveryId())
	require.Equal(t, cust.String(), sent[0].GetCustomerId())
	require.Equal(t, int64(2), sent[0].GetAggregateVersion())
	require.Equal(t, int32(1), sent[0].GetAttempts())
	require.Equal(t, customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, sent[0].GetChannel())
	require.Equal(t, service, sent[0].GetPurpose())
	require.Equal(t, tpl.GetId(), sent[0].GetTemplateId())
	require.Empty(t, failedEvents(t, b))

	require.Zero(t, b.deliverDue(t), "a sent delivery is never claimed again")
	require.Len(t, b.smtp.received(), 1)
}

// TestSMTPTemporaryReplyIsRetried: a 451 to RCPT TO keeps the delivery
// queued with a backoff; it goes out when due, not before.
func TestSMTPTemporaryReplyIsRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "bo@example.org", locale: "en"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "Bo", "code": "X"}})

	b.smtp.reject(smtp451)
	require.Equal(t, 1, b.deliverDue(t))
	require.Empty(t, b.smtp.received())
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, got.GetStatus())
	require.Equal(t, int32(1), got.GetAttempts())
	require.Equal(t, "smtp_451", got.GetLastErrorCode())
	next := got.GetNextAttemptTime().AsTime()
	require.False(t, next.Before(t0.Add(30*time.Second)), "equal jitter waits at least half the base: %v", next)
	require.False(t, next.After(t0.Add(time.Minute)), "and at most the base: %v", next)

	require.Zero(t, b.deliverDue(t), "not due yet")
	require.Equal(t, 1, b.smtp.rcptCount())

	b.clock.Set(next)
	require.Equal(t, 1, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 1)
	got = b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus())
	require.Equal(t, int32(2), got.GetAttempts())
	sent := sentEvents(t, b)
	require.Len(t, sent, 1)
	require.Equal(t, int32(2), sent[0].GetAttempts())
}

// TestSMTPPermanentReplyIsNotRetried: a 550 fails the delivery at once.
func TestSMTPPermanentReplyIsNotRetried(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "gone@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "Cy", "code": "X"}})

	b.smtp.reject(smtp550)
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	require.Equal(t, "bounced", got.GetFailureReason())
	require.Equal(t, "smtp_550", got.GetLastErrorCode())
	require.Equal(t, int32(1), got.GetAttempts())

	b.clock.Advance(24 * time.Hour)
	require.Zero(t, b.deliverDue(t))
	require.Equal(t, 1, b.smtp.rcptCount(), "one attempt only")
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, "bounced", failed[0].GetReason())
	require.Equal(t, int32(1), failed[0].GetAttempts())
	require.Equal(t, int64(2), failed[0].GetAggregateVersion())
}

// TestSMTPAttemptsExhausted: temporary failures up to MaxAttempts (3),
// then FAILED attempts_exhausted; backoff doubles.
func TestSMTPAttemptsExhausted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "busy@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "Di", "code": "X"}})

	b.smtp.reject(smtp451, smtp451, smtp451)
	var waits []time.Duration
	for range 3 {
		now := b.clock.Now()
		require.Equal(t, 1, b.deliverDue(t))
		got := b.delivery(t, d)
		if got.GetStatus() == customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED {
			waits = append(waits, got.GetNextAttemptTime().AsTime().Sub(now))
			b.clock.Set(got.GetNextAttemptTime().AsTime())
		}
	}
	require.Len(t, waits, 2)
	require.GreaterOrEqual(t, waits[0], 30*time.Second)
	require.LessOrEqual(t, waits[0], time.Minute)
	require.GreaterOrEqual(t, waits[1], time.Minute, "the second wait doubles")
	require.LessOrEqual(t, waits[1], 2*time.Minute)

	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	require.Equal(t, outreach.ReasonAttemptsExhausted, got.GetFailureReason())
	require.Equal(t, int32(3), got.GetAttempts())
	require.Empty(t, b.smtp.received())
	failed := failedEvents(t, b)
	require.Len(t, failed, 1)
	require.Equal(t, outreach.ReasonAttemptsExhausted, failed[0].GetReason())
	require.Equal(t, int32(3), failed[0].GetAttempts())
}

// TestSMTPServerDown: a refused connection is temporary.
func TestSMTPServerDown(t *testing.T) {
	t.Parallel()
	b := setup(t, setupOpts{configure: func(c *outreach.Config) { c.SMTP.Addr = "127.0.0.1:1" }})
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "x@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "X", "code": "X"}})
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, got.GetStatus())
	require.Equal(t, "network", got.GetLastErrorCode())
}

// TestRunDelivers: the background loop sends what SendOutreach queued.
func TestRunDelivers(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "run@example.org"})
	b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": "R", "code": "X"}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.srv.Run(ctx) }()
	require.Eventually(t, func() bool { return len(b.smtp.received()) == 1 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.True(t, strings.Contains(string(b.smtp.received()[0].Data), "run@example.org"))
}

// TestSMTPAuth: with a username and password the driver upgrades with
// STARTTLS (verifying the server against the configured CA) and
// authenticates before MAIL FROM. Without TLS it refuses to send the
// password in clear, and wrong credentials send nothing.
func TestSMTPAuth(t *testing.T) {
	t.Parallel()
	tlsServer, caFile := startSMTPTLS(t)
	tlsServer.user, tlsServer.password = "care", "s3cret" // before any connection
	b := setup(t, setupOpts{configure: func(c *outreach.Config) {
		c.SMTP = outreach.SMTPConfig{Addr: tlsServer.addr, TLS: "starttls", CAFile: caFile,
			Username: "care", Password: "s3cret", From: "care@acme.example"}
	}})
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "auth@example.org"})
	sendOne := func(b *testBundle) *customerv1.OutreachDelivery {
		return b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
			Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
			Variables: map[string]string{"first_name": "A", "code": "X"}})
	}
	d := sendOne(b)
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus(), got.GetLastErrorCode())
	tlsServer.mu.Lock()
	require.Equal(t, []string{"care"}, tlsServer.authed)
	tlsServer.mu.Unlock()
	require.Len(t, tlsServer.received(), 1)

	tlsServer.mu.Lock()
	tlsServer.password = "rotated"
	tlsServer.mu.Unlock()
	d = sendOne(b)
	require.Equal(t, 1, b.deliverDue(t))
	got = b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, got.GetStatus(), "retried: the fix is ours")
	require.Equal(t, "smtp_535", got.GetLastErrorCode())
	require.Len(t, tlsServer.received(), 1, "nothing sent with wrong credentials")

	// A plain-text server offering AUTH: the password is never sent.
	plain := b.smtp
	plain.mu.Lock()
	plain.user, plain.password = "care", "s3cret"
	plain.mu.Unlock()
	c := setup(t, setupOpts{configure: func(c *outreach.Config) {
		c.SMTP = outreach.SMTPConfig{Addr: plain.addr, TLS: "none", Username: "care", Password: "s3cret", From: "care@acme.example"}
	}})
	c.createTemplate(t, emailTemplate("birthday"))
	cust = c.newCustomer(t, c.tenant, person{email: "auth@example.org"})
	d = sendOne(c)
	require.Equal(t, 1, c.deliverDue(t))
	require.NotEqual(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, c.delivery(t, d).GetStatus())
	plain.mu.Lock()
	require.Empty(t, plain.authed)
	plain.mu.Unlock()
	require.Empty(t, plain.received())
}
