package outreach_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/outbox"
	carecal "github.com/rapporthq/rapport/services/customer/internal/care"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	profilestore "github.com/rapporthq/rapport/services/customer/internal/store"
)

// careWorld is the whole path of a due occasion: the real care scheduler
// writes care.due to the outbox, the real relay publishes it to an embedded
// JetStream, the care consumer turns it into a delivery, and the real
// worker sends it to the test SMTP server.
type careWorld struct {
	*testBundle
	care  *carecal.Server
	cares customerv1.CareServiceClient
	js    jetstream.JetStream
}

func setupCare(t *testing.T) *careWorld {
	t.Helper()
	w := &careWorld{testBundle: setup(t)}
	w.care = carecal.NewServer(w.pool, w.sealer, w.clock.Now)
	w.cares = customerv1.NewCareServiceClient(grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) { w.care.Register(r) }))

	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	w.js = js
	_, err := natsx.EnsureStream(context.Background(), js, "customer", 1)
	require.NoError(t, err)

	relay := outbox.NewRelay(w.pool, js, outbox.RelayConfig{Source: "rapport/customer", PollInterval: 10 * time.Millisecond})
	cons, err := w.srv.CareConsumer(js, inbox.Config{NakDelayFunc: func(uint64) time.Duration { return 10 * time.Millisecond }}, w.care)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- relay.Run(ctx) }()
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, <-done)
	})
	return w
}

// birthdayToday is a customer of tenant, in UTC, with an email address,
// whose birthday is t0's day, created a month before.
func (w *careWorld) birthdayToday(t *testing.T, tenant uuid.UUID, name, email string) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	created := t0.AddDate(0, -1, 0)
	w.inTx(t, func(tx pgx.Tx) {
		_, err := profilestore.New(w.sealer).Insert(context.Background(), tx, profile.Customer{
			TenantID: tenant, ID: id, DisplayName: name, Email: email, Locale: "en", TimeZone: "UTC",
			Birthday: &profile.Birthday{Year: 1990, Month: int(t0.Month()), Day: t0.Day()},
			Tags:     []string{}, CreateTime: created, UpdateTime: created,
		})
		require.NoError(t, err)
	})
	return id
}

// careSettings turns birthdays on for tenant with templateKey ("" for no
// message).
func (w *careWorld) careSettings(t *testing.T, tenant uuid.UUID, templateKey string) {
	t.Helper()
	_, err := w.cares.UpdateCareSettings(grpcxtest.As(tenant), &customerv1.UpdateCareSettingsRequest{
		Settings: &customerv1.CareSettings{BirthdayEnabled: true, DueHour: 9, BirthdayTemplateKey: templateKey}})
	require.NoError(t, err)
}

func (w *careWorld) grantEmailCare(t *testing.T, tenant, customer uuid.UUID) {
	t.Helper()
	_, err := w.consents.SetConsent(grpcxtest.As(tenant), &customerv1.SetConsentRequest{CustomerId: customer.String(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: care,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT,
		Source: "web-form"})
	require.NoError(t, err)
}

// birthdayTemplate uses every care variable.
func birthdayTemplate(key string) *customerv1.OutreachTemplate {
	return &customerv1.OutreachTemplate{
		Key: key, Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
		Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Happy birthday, {{.DisplayName}}!",
			TextBody: "Dear {{.DisplayName}}, a happy {{.OccasionKind}} on {{.OccasionDate}}{{.HolidayName}}."}},
	}
}

func (w *careWorld) createTemplateAs(t *testing.T, tenant uuid.UUID, tpl *customerv1.OutreachTemplate) {
	t.Helper()
	_, err := w.client.CreateOutreachTemplate(grpcxtest.As(tenant), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: tpl})
	require.NoError(t, err)
}

// runCalendar runs the care scheduler at the clock's now and waits until
// the consumer has taken every care.due event in the outbox (plus extra
// copies published by hand).
func (w *careWorld) runCalendar(t *testing.T, extra int) {
	t.Helper()
	_, err := w.care.RunDue(context.Background(), time.Minute)
	require.NoError(t, err)
	w.waitConsumed(t, extra)
}

func (w *careWorld) waitConsumed(t *testing.T, extra int) {
	t.Helper()
	due := w.count(t, `SELECT count(*) FROM outbox WHERE subject = $1`, carecal.SubjectCareDue)
	require.Eventually(t, func() bool {
		c, err := w.js.Consumer(context.Background(), natsx.StreamName("customer"), outreach.CareConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && w.count(t, `SELECT count(*) FROM inbox WHERE consumer = $1`, outreach.CareConsumerName) >= due &&
			info.Delivered.Consumer >= uint64(due+extra) && info.NumAckPending == 0 && info.NumPending == 0 //nolint:gosec // small
	}, 15*time.Second, 20*time.Millisecond, "every care.due event consumed")
}

func (w *careWorld) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, w.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (w *careWorld) deliveriesOf(t *testing.T, tenant, customer uuid.UUID) []*customerv1.OutreachDelivery {
	t.Helper()
	resp, err := w.client.ListOutreachDeliveries(grpcxtest.As(tenant),
		&customerv1.ListOutreachDeliveriesRequest{CustomerId: customer.String()})
	require.NoError(t, err)
	return resp.GetOutreachDeliveries()
}

// dueEvent is the care.due event the scheduler wrote for customer.
func (w *careWorld) dueEvent(t *testing.T, customer uuid.UUID) (id uuid.UUID, payload []byte) {
	t.Helper()
	rows, err := w.pool.Query(context.Background(), `SELECT id, payload FROM outbox WHERE subject = $1`, carecal.SubjectCareDue)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		require.NoError(t, rows.Scan(&id, &payload))
		ev := &customerv1.CareDue{}
		require.NoError(t, proto.Unmarshal(payload, ev))
		if ev.GetCustomerId() == customer.String() {
			return id, payload
		}
	}
	require.NoError(t, rows.Err())
	t.Fatalf("no care.due event for customer %s", customer)
	return uuid.Nil, nil
}

// republish publishes a copy of a care.due event under eventID (ce-id)
// and msgID (Nats-Msg-Id), as a relay restored from a backup would.
func (w *careWorld) republish(t *testing.T, tenant uuid.UUID, eventID, msgID string, payload []byte) {
	t.Helper()
	h := nats.Header{}
	h.Set(natsx.HeaderID, eventID)
	h.Set(natsx.HeaderTenant, tenant.String())
	h.Set(natsx.HeaderContentType, natsx.ContentTypeProtobuf)
	_, err := w.js.PublishMsg(context.Background(), &nats.Msg{Subject: carecal.SubjectCareDue, Header: h, Data: payload},
		jetstream.WithMsgID(msgID))
	require.NoError(t, err)
}

func TestCareOccasionBecomesEmail(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	require.Equal(t, carecal.SubjectCareDue, outreach.SubjectCareDue)
	w.createTemplate(t, birthdayTemplate("birthday-greeting"))
	w.careSettings(t, w.tenant, "birthday-greeting")
	ada := w.birthdayToday(t, w.tenant, "Ada Lovelace", "ada@example.com")
	w.grantEmailCare(t, w.tenant, ada)

	w.runCalendar(t, 0)
	ds := w.deliveriesOf(t, w.tenant, ada)
	require.Len(t, ds, 1)
	d := ds[0]
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, d.GetStatus())
	require.Equal(t, customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, d.GetPurpose())
	require.Equal(t, "birthday-greeting", d.GetTemplateKey())
	require.Equal(t, 1, w.touches(t, ada), "the governor counted the touch")

	// The same event again, under its own id (the inbox drops it) and
	// under a new id (the occasion's request id finds the delivery).
	eventID, payload := w.dueEvent(t, ada)
	w.republish(t, w.tenant, eventID.String(), uuid.NewString(), payload)
	w.republish(t, w.tenant, uuid.NewString(), uuid.NewString(), payload)
	w.waitConsumed(t, 2)
	require.Len(t, w.deliveriesOf(t, w.tenant, ada), 1)
	require.Equal(t, 1, w.touches(t, ada))

	require.Equal(t, 1, w.deliverDue(t))
	require.Zero(t, w.deliverDue(t))
	msgs := w.smtp.received()
	require.Len(t, msgs, 1, "one email on the wire")
	require.Equal(t, []string{"ada@example.com"}, msgs[0].To)
	m := parseMail(t, msgs[0].Data)
	require.Equal(t, "Happy birthday, Ada Lovelace!", decodeHeader(t, m.Header.Get("Subject")))
	require.Equal(t, "Dear Ada Lovelace, a happy birthday on 2026-03-04.", m.Text)
	sent := sentEvents(t, w.testBundle)
	require.Len(t, sent, 1)
	require.Equal(t, d.GetId(), sent[0].GetDeliveryId())

	// The content is sealed: the name is nowhere in clear in the row.
	var content []byte
	require.NoError(t, w.pool.QueryRow(context.Background(),
		`SELECT content_sealed FROM outreach_deliveries WHERE tenant_id = $1 AND id = $2`, w.tenant, d.GetId()).Scan(&content))
	require.NotEmpty(t, content)
	require.NotContains(t, string(content), "Ada")

	// A later round records nothing new: still one email.
	w.clock.Set(t0.Add(time.Hour))
	w.runCalendar(t, 2)
	require.Zero(t, w.deliverDue(t))
	require.Len(t, w.smtp.received(), 1)
}

func TestCareOccasionOutcomes(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	other := uuid.New()

	// This tenant: birthdays on, no template. The other tenant: a template
	// configured, so its settings must never reach this tenant's customers.
	w.careSettings(t, w.tenant, "")
	w.careSettings(t, other, "birthday-greeting")
	w.createTemplateAs(t, other, birthdayTemplate("birthday-greeting"))
	quiet := w.birthdayToday(t, w.tenant, "Quiet Customer", "quiet@example.com")
	w.grantEmailCare(t, w.tenant, quiet)
	// The other tenant: one customer with consent, one without, and one
	// tenant-wide setting later changed to a key naming no template.
	granted := w.birthdayToday(t, other, "Grace Hopper", "grace@example.com")
	w.grantEmailCare(t, other, granted)
	refused := w.birthdayToday(t, other, "No Consent", "nc@example.com")

	w.runCalendar(t, 0)
	require.Equal(t, 3, w.count(t, `SELECT count(*) FROM outbox WHERE subject = $1`, carecal.SubjectCareDue))

	require.Empty(t, w.deliveriesOf(t, w.tenant, quiet), "no template: nothing sent")
	require.Zero(t, w.touches(t, quiet))

	ds := w.deliveriesOf(t, other, refused)
	require.Len(t, ds, 1)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, ds[0].GetStatus())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_NO_CONSENT, ds[0].GetRefusalReason())
	require.Equal(t, "refused:NO_CONSENT", ds[0].GetFailureReason())

	ds = w.deliveriesOf(t, other, granted)
	require.Len(t, ds, 1)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, ds[0].GetStatus())

	require.Equal(t, 1, w.deliverDue(t))
	msgs := w.smtp.received()
	require.Len(t, msgs, 1)
	require.Equal(t, []string{"grace@example.com"}, msgs[0].To)
	require.Equal(t, 2, w.count(t, `SELECT count(*) FROM outreach_deliveries`), "nothing for this tenant's customer")
}

func TestCareOccasionTemplateProblems(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	// A key naming no template is accepted at settings time...
	w.careSettings(t, w.tenant, "not-created-yet")
	missing := w.birthdayToday(t, w.tenant, "Missing Template", "mt@example.com")
	w.grantEmailCare(t, w.tenant, missing)
	w.runCalendar(t, 0)

	// ...and logged as a FAILED delivery when an occasion falls due.
	ds := w.deliveriesOf(t, w.tenant, missing)
	require.Len(t, ds, 1)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, ds[0].GetStatus())
	require.Equal(t, outreach.ReasonNoTemplate, ds[0].GetFailureReason())
	require.Equal(t, "not-created-yet", ds[0].GetTemplateKey())
	require.Empty(t, ds[0].GetTemplateId())
	require.Equal(t, customerv1.ContactChannel_CONTACT_CHANNEL_UNSPECIFIED, ds[0].GetChannel())
	require.Zero(t, w.touches(t, missing), "nothing sent, no touch")
	failed := failedEvents(t, w.testBundle)
	require.Len(t, failed, 1)
	require.Equal(t, outreach.ReasonNoTemplate, failed[0].GetReason())
	require.Empty(t, failed[0].GetTemplateId())

	// A template using a variable care does not provide fails to render.
	bad := emailTemplate("uses-other-variables") // {{.first_name}}, {{.code}}
	w.createTemplate(t, bad)
	w.careSettings(t, w.tenant, "uses-other-variables")
	w.clock.Set(t0.AddDate(0, 0, 1))
	unrendered := w.birthdayToday(t, w.tenant, "Render Fails", "rf@example.com")
	_, err := w.pool.Exec(context.Background(), `UPDATE customers SET birth_day = $3 WHERE tenant_id = $1 AND id = $2`,
		w.tenant, unrendered, t0.AddDate(0, 0, 1).Day())
	require.NoError(t, err)
	w.grantEmailCare(t, w.tenant, unrendered)
	w.runCalendar(t, 0)
	ds = w.deliveriesOf(t, w.tenant, unrendered)
	require.Len(t, ds, 1)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, ds[0].GetStatus())
	require.Equal(t, outreach.ReasonRenderFailed, ds[0].GetFailureReason())
	require.Zero(t, w.deliverDue(t))
	require.Empty(t, w.smtp.received())

	// Both are counted, like every delivery that ends at once.
	require.Equal(t, 1.0, metricValue(t, w.metrics, "rapport_outreach_deliveries_total",
		map[string]string{"channel": "none", "outcome": "failed", "reason": outreach.ReasonNoTemplate}))
	require.Equal(t, 1.0, metricValue(t, w.metrics, "rapport_outreach_deliveries_total",
		map[string]string{"channel": "email", "outcome": "failed", "reason": outreach.ReasonRenderFailed}))
}

func TestCareSettingsTemplateKeys(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	ctx := grpcxtest.As(w.tenant)
	got, err := w.cares.UpdateCareSettings(ctx, &customerv1.UpdateCareSettingsRequest{
		Settings: &customerv1.CareSettings{HolidayTemplateKey: "holiday.v2", TicketFollowUpTemplateKey: "after_ticket", DueHour: 9}})
	require.NoError(t, err)
	require.Equal(t, "holiday.v2", got.GetHolidayTemplateKey())
	require.Equal(t, "after_ticket", got.GetTicketFollowUpTemplateKey())
	require.Empty(t, got.GetBirthdayTemplateKey())

	// A masked update changes only its path.
	got, err = w.cares.UpdateCareSettings(ctx, &customerv1.UpdateCareSettingsRequest{
		Settings:   &customerv1.CareSettings{AnniversaryTemplateKey: "anniversary"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"anniversary_template_key"}}})
	require.NoError(t, err)
	require.Equal(t, "anniversary", got.GetAnniversaryTemplateKey())
	require.Equal(t, "holiday.v2", got.GetHolidayTemplateKey())

	for field, st := range map[string]*customerv1.CareSettings{
		"settings.birthday_template_key":           {BirthdayTemplateKey: "Upper"},
		"settings.purchase_follow_up_template_key": {PurchaseFollowUpTemplateKey: "has space"},
		"settings.holiday_template_key":            {HolidayTemplateKey: strings.Repeat("a", 64)},
	} {
		_, err := w.cares.UpdateCareSettings(ctx, &customerv1.UpdateCareSettingsRequest{Settings: st})
		require.Equal(t, field, fieldOf(t, err))
	}
	read, err := w.cares.GetCareSettings(ctx, &customerv1.GetCareSettingsRequest{})
	require.NoError(t, err)
	require.Equal(t, "anniversary", read.GetAnniversaryTemplateKey())

	// The consumer's view, per kind, in a transaction; another tenant's
	// settings are its own (none: "").
	w.inTx(t, func(tx pgx.Tx) {
		for kind, want := range map[customerv1.CareOccasionKind]string{
			customerv1.CareOccasionKind_CARE_OCCASION_KIND_BIRTHDAY:           "",
			customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY:            "holiday.v2",
			customerv1.CareOccasionKind_CARE_OCCASION_KIND_ANNIVERSARY:        "anniversary",
			customerv1.CareOccasionKind_CARE_OCCASION_KIND_PURCHASE_FOLLOW_UP: "",
			customerv1.CareOccasionKind_CARE_OCCASION_KIND_TICKET_FOLLOW_UP:   "after_ticket",
		} {
			key, err := w.care.OutreachTemplate(context.Background(), tx, w.tenant, kind)
			require.NoError(t, err)
			require.Equal(t, want, key, kind.String())
			key, err = w.care.OutreachTemplate(context.Background(), tx, uuid.New(), kind)
			require.NoError(t, err)
			require.Empty(t, key)
		}
	})
}

func TestCareHolidayOccasion(t *testing.T) {
	t.Parallel()
	w := setupCare(t)
	ctx := grpcxtest.As(w.tenant)
	w.createTemplate(t, &customerv1.OutreachTemplate{
		Key: "holiday-greeting", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
		Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Happy {{.HolidayName}}",
			TextBody: "{{.DisplayName}}: {{.OccasionKind}} {{.OccasionDate}}"}},
	})
	_, err := w.cares.UpdateCareSettings(ctx, &customerv1.UpdateCareSettingsRequest{
		Settings:   &customerv1.CareSettings{HolidayTemplateKey: "holiday-greeting"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"holiday_template_key"}}})
	require.NoError(t, err)
	_, err = w.cares.CreateHoliday(ctx, &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Spring Day", Date: t0.Format(time.DateOnly)}})
	require.NoError(t, err)
	// Birthdays are off: this customer's birthday today sends nothing.
	c := w.birthdayToday(t, w.tenant, "Lin Wei", "lin@example.com")
	w.grantEmailCare(t, w.tenant, c)

	w.runCalendar(t, 0)
	ds := w.deliveriesOf(t, w.tenant, c)
	require.Len(t, ds, 1)
	require.Equal(t, "holiday-greeting", ds[0].GetTemplateKey())
	require.Equal(t, 1, w.deliverDue(t))
	msgs := w.smtp.received()
	require.Len(t, msgs, 1)
	m := parseMail(t, msgs[0].Data)
	require.Equal(t, "Happy Spring Day", decodeHeader(t, m.Header.Get("Subject")))
	require.Equal(t, "Lin Wei: holiday 2026-03-04", m.Text)
}
