package outreach_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit/audittest"
)

// TestSEC09OutreachAudit: SendOutreach writes one create row in its
// transaction (the address it opened, the content it sealed); every worker
// attempt that opens address and content writes one read row as the
// service itself; retries of the request and delivery reads, which return
// neither, write none. No row holds an address or a rendered value.
func TestSEC09OutreachAudit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	b.createTemplate(t, smsTemplate("repair-ready"))
	const addr, phone, name, code = "marker-addr-3f@example.org", "+4915177700011", "MarkerAda", "MarkerCode-93"
	values := []string{addr, phone, "4915177700011", name, code}
	cust := b.newCustomer(t, b.tenant, person{email: addr, phone: phone, locale: "en"})
	one := []uuid.UUID{cust}
	rows := func(call func()) []audittest.Row { return audittest.Audited(t, b.pool, b.tenant, call) }
	content := []string{"email", outreach.FieldContent}

	req := &customerv1.SendOutreachRequest{CustomerId: cust.String(), RequestId: uuid.NewString(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}, Purpose: service,
		Variables: map[string]string{"first_name": name, "code": code}}
	var d *customerv1.OutreachDelivery
	r := audittest.RequireOneRow(t, rows(func() { d = b.send(t, req) }), "create", "tester", "/SendOutreach", one, content, values...)
	require.Equal(t, req.GetRequestId(), r.IdempotencyKey)

	// Nothing personal comes back from a retry or a delivery read.
	require.Empty(t, rows(func() {
		require.Equal(t, d.GetId(), b.send(t, req).GetId())
		_, err := b.pool.Exec(context.Background(), `DELETE FROM idempotency_keys WHERE tenant_id = $1`, b.tenant.String())
		require.NoError(t, err)
		require.Equal(t, d.GetId(), b.send(t, req).GetId(), "the delivery log's own replay")
		b.delivery(t, d)
		_, err = b.client.ListOutreachDeliveries(b.ctx(), &customerv1.ListOutreachDeliveriesRequest{CustomerId: cust.String()})
		require.NoError(t, err)
	}))

	// The worker's send is the service's read.
	audittest.RequireOneRow(t, rows(func() { require.Equal(t, 1, b.deliverDue(t)) }),
		"read", outreach.WorkerActor, outreach.MethodDeliver, one, content, values...)
	require.Contains(t, string(b.smtp.received()[0].Data), code, "the message did go out")
	require.Empty(t, rows(func() { require.Zero(t, b.deliverDue(t)) }), "nothing due, nothing opened")

	// One read row per attempt: a temporary failure and its retry open the
	// address and content twice.
	sms := []string{"phone", outreach.FieldContent}
	var second *customerv1.OutreachDelivery
	audittest.RequireOneRow(t, rows(func() {
		second = b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(),
			Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "repair-ready"}, Purpose: service,
			Variables: map[string]string{"ticket": code}})
	}), "create", "tester", "/SendOutreach", one, sms, values...)
	b.hook.reply(http.StatusServiceUnavailable, http.StatusOK)
	audittest.RequireOneRow(t, rows(func() { require.Equal(t, 1, b.deliverDue(t)) }),
		"read", outreach.WorkerActor, outreach.MethodDeliver, one, sms, values...)
	b.clock.Set(b.delivery(t, second).GetNextAttemptTime().AsTime())
	audittest.RequireOneRow(t, rows(func() { require.Equal(t, 1, b.deliverDue(t)) }),
		"read", outreach.WorkerActor, outreach.MethodDeliver, one, sms, values...)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, b.delivery(t, second).GetStatus())

	// A refused send opened the address and sealed nothing; a send without
	// an address sealed the content and opened nothing.
	audittest.RequireOneRow(t, rows(func() {
		got := b.send(t, smsSend(cust, marketing))
		require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, got.GetStatus())
	}), "create", "tester", "/SendOutreach", one, []string{"phone"}, values...)
	noPhone := b.newCustomer(t, b.tenant, person{email: addr})
	audittest.RequireOneRow(t, rows(func() {
		got := b.send(t, smsSend(noPhone, service))
		require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	}), "create", "tester", "/SendOutreach", []uuid.UUID{noPhone}, []string{outreach.FieldContent}, values...)

	// An erased customer's queued delivery is not opened: no row.
	queued := b.send(t, smsSend(cust, service))
	_, err := b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, cust)
	require.NoError(t, err)
	require.Empty(t, rows(func() { require.Equal(t, 1, b.deliverDue(t)) }))
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, b.delivery(t, queued).GetStatus())
}

// TestSEC09CareOccasionAudit: a delivery the care.due consumer makes is one
// create row of the consumer's own work (no caller: actor CareActor), naming
// the address, the display name its variables opened and the content; the
// same event again opens nothing.
func TestSEC09CareOccasionAudit(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	w.createTemplate(t, birthdayTemplate("birthday-greeting"))
	w.careSettings(t, w.tenant, "birthday-greeting")
	const name, addr = "MarkerGrace Hopper", "marker-grace@example.org"
	grace := w.birthdayToday(t, w.tenant, name, addr)
	w.grantEmailCare(t, w.tenant, grace)
	rows := func(call func()) []audittest.Row { return audittest.Audited(t, w.pool, w.tenant, call) }

	r := audittest.RequireOneRow(t, rows(func() { w.runCalendar(t, 0) }), "create", outreach.CareActor, outreach.MethodSend,
		[]uuid.UUID{grace}, []string{"email", "display_name", outreach.FieldContent}, name, addr)
	require.Contains(t, r.Text, `"actor_roles":["service"]`)
	require.Empty(t, rows(func() {
		_, payload := w.dueEvent(t, grace)
		w.republish(t, w.tenant, uuid.NewString(), uuid.NewString(), payload) // a copy under a new id
		w.waitConsumed(t, 1)
	}))
	audittest.RequireOneRow(t, rows(func() { require.Equal(t, 1, w.deliverDue(t)) }), "read", outreach.WorkerActor,
		outreach.MethodDeliver, []uuid.UUID{grace}, []string{"email", outreach.FieldContent}, name, addr)
}
