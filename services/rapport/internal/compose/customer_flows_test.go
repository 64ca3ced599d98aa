package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/services/gateway"
)

// flowDeadline bounds every wait of the flows for asynchronous work (relay,
// projector, outreach worker, care scheduler); each wait polls and returns
// as soon as the work is seen.
const flowDeadline = 15 * time.Second

// TestCustomerFlows runs the customer service's newer parts inside the
// composed binary: real Postgres, JetStream, the relay, the timeline
// projector, the outreach worker against a real SMTP server, the care
// scheduler, and the gateway for REST. One system serves all flows, each
// in a tenant of its own; the SEC-08 log scan of setupWith covers them all
// (the flows send the personal-data markers: name, email, phone).
func TestCustomerFlows(t *testing.T) {
	mailbox := startFlowSMTP(t)
	b := setupWith(t, Options{}, func(c *Config) {
		c.Outreach.SMTP.Addr = mailbox.addr
		c.Outreach.SMTP.TLS = "none"
		c.Outreach.SMTP.From = "Acme Care <care@acme.example>"
		c.Outreach.PollInterval = 50 * time.Millisecond
		c.Outreach.SendTimeout = 5 * time.Second
		c.CareSchedule = 200 * time.Millisecond
	})

	t.Run("PurchaseReachesTheTimeline", func(t *testing.T) { t.Parallel(); purchaseTimelineFlow(t, b) })
	t.Run("OutreachOverSMTP", func(t *testing.T) { t.Parallel(); outreachSMTPFlow(t, b, mailbox) })
	t.Run("CareOccasionsFallDue", func(t *testing.T) { t.Parallel(); careFlow(t, b, mailbox) })
	t.Run("PrivacyOverREST", func(t *testing.T) { t.Parallel(); privacyFlow(t, b, mailbox) })
	t.Run("MergeOverREST", func(t *testing.T) { t.Parallel(); mergeFlow(t, b) })
	t.Run("VerbRoutesDoNotDependOnRegistrationOrder", func(t *testing.T) { t.Parallel(); verbRoutesFlow(t, b) })
}

// verbRoutesFlow: GET /v1/customers/{id}:export (PrivacyService) and
// :checkContact (ConsentService) share their prefix with GetCustomer's
// GET /v1/customers/{id}. grpc-gateway tries the most recently registered
// pattern first, and a pattern without a verb also matches "id:verb" as
// its id, so the verb routes work only when CustomerService's handlers are
// registered before the others'. Each gateway built here must route them
// right; twenty builds leave a registration order that depends on chance
// (map iteration) a one-in-a-million chance to pass.
func verbRoutesFlow(t *testing.T, b *testBundle) {
	tok := b.token(t, uuid.NewString(), "routes-flow")
	created := restAPI{base: b.httpBase, b: b}.create(t, tok, ada(), "")
	require.Equal(t, codes.OK, created.code)
	id := created.customer.GetId()
	for i := range 20 {
		gw, err := gateway.New(context.Background(), gateway.Deps{Customer: b.grpcConn, Access: b.grpcConn}, gateway.Config{})
		require.NoError(t, err)
		for _, path := range []string{"/v1/customers/" + id + ":export",
			"/v1/customers/" + id + ":checkContact?channel=CONTACT_CHANNEL_EMAIL&purpose=CONTACT_PURPOSE_SERVICE"} {
			req := httptest.NewRequestWithContext(context.Background(), http.MethodGet, path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			rec := httptest.NewRecorder()
			gw.ServeHTTP(rec, req)
			require.Equal(t, http.StatusOK, rec.Code, "gateway build %d, GET %s: %s", i, path, rec.Body.String())
		}
	}
}

// ---- 1. purchase → relay → JetStream → projector → timeline

func purchaseTimelineFlow(t *testing.T, b *testBundle) {
	tok := b.token(t, uuid.NewString(), "timeline-flow")
	ctx := authCtx(tok)
	customers := customerv1.NewCustomerServiceClient(b.grpcConn)
	purchases := customerv1.NewPurchaseServiceClient(b.grpcConn)
	timeline := customerv1.NewTimelineServiceClient(b.grpcConn)

	c, err := customers.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: ada()})
	require.NoError(t, err)
	req := &customerv1.RecordPurchaseRequest{CustomerId: c.GetId(), RequestId: uuid.NewString(),
		Purchase: flowPurchase("order-1001", time.Now().Add(-time.Hour))}
	p, err := purchases.RecordPurchase(ctx, req)
	require.NoError(t, err)

	listPurchases := func() []*customerv1.Interaction {
		r, err := timeline.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.GetId(),
			Kinds: []customerv1.InteractionKind{customerv1.InteractionKind_INTERACTION_KIND_PURCHASE}, PageSize: 100})
		require.NoError(t, err)
		return r.GetInteractions()
	}
	entries := waitFor(t, "the purchase on the timeline", func() ([]*customerv1.Interaction, bool) {
		e := listPurchases()
		return e, len(e) > 0
	})
	require.Len(t, entries, 1)
	e := entries[0]
	require.Equal(t, c.GetId(), e.GetCustomerId())
	require.Equal(t, customerv1.InteractionKind_INTERACTION_KIND_PURCHASE, e.GetKind())
	require.Equal(t, p.GetId(), e.GetPurchase().GetPurchaseId())
	require.Equal(t, "order-1001", e.GetPurchase().GetOrderReference())
	require.Equal(t, int64(900), e.GetPurchase().GetTotalAmount().GetAmountMinor())
	require.Equal(t, int32(1), e.GetPurchase().GetItemCount())
	require.True(t, p.GetPurchaseTime().AsTime().Equal(e.GetOccurTime().AsTime()), "the entry is dated by the purchase")

	// A replay of the request records nothing and publishes nothing.
	again, err := purchases.RecordPurchase(ctx, req)
	require.NoError(t, err)
	require.Equal(t, p.GetId(), again.GetId())

	// Barrier: a later purchase reaches the timeline, so the projector has
	// consumed past anything the first one (or the replay) could have
	// added. Each purchase is there once.
	p2, err := purchases.RecordPurchase(ctx, &customerv1.RecordPurchaseRequest{CustomerId: c.GetId(),
		Purchase: flowPurchase("order-1002", time.Now())})
	require.NoError(t, err)
	entries = waitFor(t, "the second purchase on the timeline", func() ([]*customerv1.Interaction, bool) {
		e := listPurchases()
		for _, x := range e {
			if x.GetPurchase().GetPurchaseId() == p2.GetId() {
				return e, true
			}
		}
		return e, false
	})
	seen := map[string]int{}
	for _, x := range entries {
		seen[x.GetPurchase().GetPurchaseId()]++
	}
	require.Equal(t, map[string]int{p.GetId(): 1, p2.GetId(): 1}, seen, "each purchase exactly once")
}

// ---- 2. outreach over SMTP

func outreachSMTPFlow(t *testing.T, b *testBundle, mailbox *flowSMTP) {
	const email = "ada@example.com" // a SEC-08 marker: no log line may hold it
	tok := b.token(t, uuid.NewString(), "outreach-flow")
	ctx := authCtx(tok)
	customers := customerv1.NewCustomerServiceClient(b.grpcConn)
	consents := customerv1.NewConsentServiceClient(b.grpcConn)
	outreach := customerv1.NewOutreachServiceClient(b.grpcConn)
	timeline := customerv1.NewTimelineServiceClient(b.grpcConn)

	c, err := customers.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: ada()})
	require.NoError(t, err)
	granted, err := consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: c.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT,
		Source: "web-form"})
	require.NoError(t, err)
	require.Equal(t, customerv1.ConsentState_CONSENT_STATE_GRANTED, granted.GetConsent().GetState(),
		"double opt-in applies to marketing only")

	_, err = outreach.CreateOutreachTemplate(ctx, &customerv1.CreateOutreachTemplateRequest{
		OutreachTemplate: &customerv1.OutreachTemplate{Key: "care-thanks",
			Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
			Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Thank you, {{.name}}",
				TextBody: "Dear {{.name}}, how is order {{.order}} working out?",
				HtmlBody: "<p>Dear {{.name}}, how is order <b>{{.order}}</b> working out?</p>"}}}})
	require.NoError(t, err)

	send := &customerv1.SendOutreachRequest{CustomerId: c.GetId(),
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "care-thanks"},
		Purpose:  customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, RequestId: uuid.NewString(),
		Variables: map[string]string{"name": "Ada Lovelace", "order": "A-1"}}
	d, err := outreach.SendOutreach(ctx, send)
	require.NoError(t, err)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, d.GetStatus(), "refusal: %v", d.GetRefusalReason())

	msgs := waitFor(t, "the email on the SMTP server", func() ([]flowMail, bool) {
		m := mailbox.to(email)
		return m, len(m) > 0
	})
	require.Len(t, msgs, 1)
	m := msgs[0]
	require.Equal(t, "care@acme.example", m.from, "MAIL FROM")
	require.Equal(t, []string{email}, m.rcpt, "RCPT TO")
	p := parseFlowMail(t, m.data)
	require.Equal(t, "<"+email+">", p.header.Get("To"))
	require.Equal(t, "Thank you, Ada Lovelace", decodeFlowHeader(t, p.header.Get("Subject")))
	require.Equal(t, "Dear Ada Lovelace, how is order A-1 working out?", p.text)
	require.Equal(t, "<p>Dear Ada Lovelace, how is order <b>A-1</b> working out?</p>", p.html)
	require.Equal(t, "<"+d.GetId()+"@acme.example>", p.header.Get("Message-Id"))

	sent := waitFor(t, "the delivery to be SENT", func() (*customerv1.OutreachDelivery, bool) {
		l, err := outreach.ListOutreachDeliveries(ctx, &customerv1.ListOutreachDeliveriesRequest{CustomerId: c.GetId()})
		require.NoError(t, err)
		require.Len(t, l.GetOutreachDeliveries(), 1)
		got := l.GetOutreachDeliveries()[0]
		return got, got.GetStatus() == customerv1.OutreachStatus_OUTREACH_STATUS_SENT
	})
	require.Equal(t, d.GetId(), sent.GetId())
	require.Equal(t, int32(1), sent.GetAttempts())
	require.Equal(t, "<"+d.GetId()+"@acme.example>", sent.GetProviderMessageId())

	// The same request id again: the same delivery, nothing new to send.
	again, err := outreach.SendOutreach(ctx, send)
	require.NoError(t, err)
	require.Equal(t, d.GetId(), again.GetId())

	// Barrier: a second message (another request id) arrives, so the worker
	// has polled after the replay; still one copy of the first.
	second := proto.Clone(send).(*customerv1.SendOutreachRequest)
	second.RequestId = uuid.NewString()
	second.Variables = map[string]string{"name": "Ada Lovelace", "order": "A-2"}
	d2, err := outreach.SendOutreach(ctx, second)
	require.NoError(t, err)
	require.NotEqual(t, d.GetId(), d2.GetId())
	msgs = waitFor(t, "the second email", func() ([]flowMail, bool) {
		m := mailbox.to(email)
		return m, len(m) >= 2
	})
	require.Len(t, msgs, 2)
	var orders []string
	for _, m := range msgs {
		orders = append(orders, parseFlowMail(t, m.data).text)
	}
	require.ElementsMatch(t, []string{"Dear Ada Lovelace, how is order A-1 working out?",
		"Dear Ada Lovelace, how is order A-2 working out?"}, orders, "the replay sent nothing")
	l, err := outreach.ListOutreachDeliveries(ctx, &customerv1.ListOutreachDeliveriesRequest{CustomerId: c.GetId()})
	require.NoError(t, err)
	require.Len(t, l.GetOutreachDeliveries(), 2)

	// The sent events reach the timeline too, once each.
	entries := waitFor(t, "outreach on the timeline", func() ([]*customerv1.Interaction, bool) {
		r, err := timeline.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.GetId(),
			Kinds: []customerv1.InteractionKind{customerv1.InteractionKind_INTERACTION_KIND_OUTREACH_SENT}})
		require.NoError(t, err)
		return r.GetInteractions(), len(r.GetInteractions()) >= 2
	})
	ids := []string{}
	for _, e := range entries {
		ids = append(ids, e.GetOutreach().GetDeliveryId())
		require.Equal(t, customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, e.GetOutreach().GetPurpose())
	}
	require.ElementsMatch(t, []string{d.GetId(), d2.GetId()}, ids)
}

// ---- 3. care calendar

// careFlow: the composed system's clock is the wall clock, so the flow
// picks occasions due now: a birthday today (UTC, due hour 0) and the
// one-day follow-up of a purchase made 30 hours ago.
func careFlow(t *testing.T, b *testBundle, mailbox *flowSMTP) {
	tenant := uuid.NewString()
	tok := b.token(t, tenant, "care-flow")
	ctx := authCtx(tok)
	customers := customerv1.NewCustomerServiceClient(b.grpcConn)
	purchases := customerv1.NewPurchaseServiceClient(b.grpcConn)
	care := customerv1.NewCareServiceClient(b.grpcConn)
	pool := b.customerPool(t)

	now := time.Now().UTC()
	person := ada()
	person.TimeZone = "UTC"
	person.Email = careFlowEmail
	person.Birthday = &customerv1.Birthday{Year: 1990, Month: int32(now.Month()), Day: int32(now.Day())}
	c, err := customers.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: person})
	require.NoError(t, err)
	p, err := purchases.RecordPurchase(ctx, &customerv1.RecordPurchaseRequest{CustomerId: c.GetId(),
		Purchase: flowPurchase("order-care", now.Add(-30*time.Hour))})
	require.NoError(t, err)
	// The birthday becomes a greeting: a template for the occasion kind and
	// the customer's consent to care email, both in place before the
	// calendar is switched on (a refusal would be final).
	_, err = customerv1.NewConsentServiceClient(b.grpcConn).SetConsent(ctx, &customerv1.SetConsentRequest{
		CustomerId: c.GetId(), Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL,
		Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, State: customerv1.ConsentState_CONSENT_STATE_GRANTED,
		LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.NoError(t, err)
	_, err = customerv1.NewOutreachServiceClient(b.grpcConn).CreateOutreachTemplate(ctx, &customerv1.CreateOutreachTemplateRequest{
		OutreachTemplate: &customerv1.OutreachTemplate{Key: "birthday-greeting",
			Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
			Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Happy birthday, {{.DisplayName}}",
				TextBody: "Best wishes on {{.OccasionDate}} ({{.OccasionKind}})."}}}})
	require.NoError(t, err)

	st, err := care.UpdateCareSettings(ctx, &customerv1.UpdateCareSettingsRequest{
		Settings: &customerv1.CareSettings{BirthdayEnabled: true, PurchaseFollowUpDays: 1, DueHour: 0,
			BirthdayTemplateKey: "birthday-greeting"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"birthday_enabled", "purchase_follow_up_days", "due_hour",
			"birthday_template_key"}}})
	require.NoError(t, err)
	require.True(t, st.GetBirthdayEnabled())
	require.Equal(t, int32(1), st.GetPurchaseFollowUpDays())

	list := func() []*customerv1.CareOccasion {
		r, err := care.ListCareOccasions(ctx, &customerv1.ListCareOccasionsRequest{CustomerId: c.GetId()})
		require.NoError(t, err)
		return r.GetOccasions()
	}
	waitFor(t, "both occasions", func() ([]*customerv1.CareOccasion, bool) {
		o := list()
		return o, len(o) >= 2
	})
	// Barrier: three more rounds of this tenant have run since; none adds
	// an occasion or an event.
	rounds := careRounds(t, pool, tenant)
	waitFor(t, "three more care rounds", func() (int64, bool) {
		n := careRounds(t, pool, tenant)
		return n, n >= rounds+3
	})
	occasions := list()
	require.Len(t, occasions, 2)
	byKind := map[customerv1.CareOccasionKind]*customerv1.CareOccasion{}
	for _, o := range occasions {
		require.Equal(t, c.GetId(), o.GetCustomerId())
		require.Nil(t, byKind[o.GetKind()], "one occasion of each kind")
		byKind[o.GetKind()] = o
		require.False(t, o.GetDueTime().AsTime().After(time.Now()), "due already")
	}
	bday := byKind[customerv1.CareOccasionKind_CARE_OCCASION_KIND_BIRTHDAY]
	require.NotNil(t, bday)
	require.Equal(t, now.Format(time.DateOnly), bday.GetOccasionDate())
	follow := byKind[customerv1.CareOccasionKind_CARE_OCCASION_KIND_PURCHASE_FOLLOW_UP]
	require.NotNil(t, follow)
	require.Equal(t, p.GetId(), follow.GetReferenceId())
	require.Equal(t, now.Add(-30*time.Hour).AddDate(0, 0, 1).Format(time.DateOnly), follow.GetOccasionDate())

	// One care.due event per occasion, relayed to JetStream.
	waitFor(t, "the care.due events published", func() (int, bool) {
		var n, published int
		require.NoError(t, pool.QueryRow(context.Background(),
			`SELECT count(*), count(published_at) FROM outbox WHERE tenant_id = $1 AND subject = 'rapport.customer.care.due'`,
			tenant).Scan(&n, &published))
		require.LessOrEqual(t, n, 2, "one event per occasion")
		return n, n == 2 && published == 2
	})
	events := streamEvents(t, b, "rapport.customer.care.due", func(data []byte) (string, proto.Message) {
		ev := &customerv1.CareDue{}
		require.NoError(t, proto.Unmarshal(data, ev))
		return ev.GetCustomerId(), ev
	}, c.GetId())
	got := map[string]int{}
	for _, m := range events {
		ev := m.(*customerv1.CareDue)
		require.Equal(t, tenant, ev.GetTenantId())
		got[ev.GetOccasionId()]++
	}
	require.Equal(t, map[string]int{bday.GetId(): 1, follow.GetId(): 1}, got, "exactly one care.due per occasion on the stream")

	// The birthday, whose kind has a template, was greeted once; the
	// follow-up, whose kind has none, sent nothing.
	msgs := waitFor(t, "the birthday greeting on the SMTP server", func() ([]flowMail, bool) {
		m := mailbox.to(careFlowEmail)
		return m, len(m) > 0
	})
	require.Len(t, msgs, 1)
	greeting := parseFlowMail(t, msgs[0].data)
	require.Equal(t, "Happy birthday, "+person.GetDisplayName(), decodeFlowHeader(t, greeting.header.Get("Subject")))
	require.Equal(t, "Best wishes on "+now.Format(time.DateOnly)+" (birthday).", greeting.text)
	deliveries := waitFor(t, "the greeting's delivery SENT", func() ([]*customerv1.OutreachDelivery, bool) {
		l, err := customerv1.NewOutreachServiceClient(b.grpcConn).ListOutreachDeliveries(ctx,
			&customerv1.ListOutreachDeliveriesRequest{CustomerId: c.GetId()})
		require.NoError(t, err)
		d := l.GetOutreachDeliveries()
		return d, len(d) == 1 && d[0].GetStatus() == customerv1.OutreachStatus_OUTREACH_STATUS_SENT
	})
	require.Equal(t, customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, deliveries[0].GetPurpose())
	require.Len(t, mailbox.to(careFlowEmail), 1, "one greeting")
}

// careFlowEmail is the care flow customer's address, apart from the other
// flows' so each counts only its own mail.
const careFlowEmail = "care-flow@example.com"

func careRounds(t *testing.T, pool *pgxpool.Pool, tenant string) int64 {
	t.Helper()
	var n int64
	err := pool.QueryRow(context.Background(), `SELECT coalesce((SELECT rounds FROM care_schedule WHERE tenant_id = $1), 0)`, tenant).Scan(&n)
	require.NoError(t, err)
	return n
}

// streamEvents reads every message on subject from the customer stream and
// returns those whose decoded customer is customerID.
func streamEvents(t *testing.T, b *testBundle, subject string, decode func([]byte) (string, proto.Message), customerID string) []proto.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), flowDeadline)
	defer cancel()
	nc, js, err := natsx.Connect(ctx, natsx.Config{URL: b.natsURL, Name: "flow-test"})
	require.NoError(t, err)
	defer nc.Close()
	cons, err := js.OrderedConsumer(ctx, natsx.StreamName("customer"), jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	var out []proto.Message
	for {
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		require.NoError(t, err)
		var last jetstream.Msg
		for m := range batch.Messages() {
			last = m
			if id, ev := decode(m.Data()); id == customerID {
				out = append(out, ev)
			}
		}
		require.NoError(t, batch.Error())
		if last == nil {
			return out
		}
		md, err := last.Metadata()
		require.NoError(t, err)
		if md.NumPending == 0 {
			return out
		}
	}
}

// ---- 4. privacy over REST

func privacyFlow(t *testing.T, b *testBundle, mailbox *flowSMTP) {
	const email = "ada.privacy@example.org"
	tenant := uuid.NewString()
	tok := b.token(t, tenant, "privacy-flow")
	rest := restAPI{base: b.httpBase, b: b}

	person := ada()
	person.Email = email
	created := rest.create(t, tok, person, "")
	require.Equal(t, codes.OK, created.code)
	id := created.customer.GetId()

	purchase := &customerv1.Purchase{}
	restOK(t, b, http.MethodPost, "/v1/customers/"+id+"/purchases", tok, uuid.NewString(),
		protoBody(t, flowPurchase("order-priv", time.Now().Add(-time.Hour))), purchase)

	tpl := &customerv1.OutreachTemplate{}
	restOK(t, b, http.MethodPost, "/v1/outreachTemplates", tok, "", protoBody(t, &customerv1.OutreachTemplate{
		Key: "order-note", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
		Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Your order", TextBody: "Order {{.order}} ships today."}},
	}), tpl)
	delivery := &customerv1.OutreachDelivery{}
	restOK(t, b, http.MethodPost, "/v1/customers/"+id+":sendOutreach", tok, uuid.NewString(),
		[]byte(`{"templateKey":"order-note","purpose":"CONTACT_PURPOSE_SERVICE","variables":{"order":"order-priv"}}`), delivery)

	// Wait until the asynchronous parts are done: the timeline has the
	// purchase, the message went out.
	waitFor(t, "the purchase on the timeline", func() (int, bool) {
		l := &customerv1.ListInteractionsResponse{}
		restOK(t, b, http.MethodGet, "/v1/customers/"+id+"/interactions", tok, "", nil, l)
		return len(l.GetInteractions()), len(l.GetInteractions()) > 0
	})
	waitFor(t, "the delivery to be SENT", func() (customerv1.OutreachStatus, bool) {
		d := &customerv1.OutreachDelivery{}
		restOK(t, b, http.MethodGet, "/v1/customers/"+id+"/outreachDeliveries/"+delivery.GetId(), tok, "", nil, d)
		return d.GetStatus(), d.GetStatus() == customerv1.OutreachStatus_OUTREACH_STATUS_SENT
	})
	require.Len(t, mailbox.to(email), 1)

	// The export: one JSON document with every section.
	doc := exportDoc(t, b, tok, id)
	require.Equal(t, id, doc.CustomerID)
	require.Subset(t, keys(doc.Sections), []string{"profile", "purchases", "interactions", "outreach", "consent", "care"})
	prof := &customerv1.ProfileExport{}
	section(t, doc, "profile", prof)
	require.False(t, prof.GetErased())
	require.Equal(t, email, prof.GetCustomer().GetEmail())
	require.Equal(t, "Ada Lovelace", prof.GetCustomer().GetDisplayName())
	purchases := &customerv1.PurchaseExport{}
	section(t, doc, "purchases", purchases)
	require.Len(t, purchases.GetPurchases(), 1)
	require.Equal(t, purchase.GetId(), purchases.GetPurchases()[0].GetId())
	interactions := &customerv1.ListInteractionsResponse{}
	section(t, doc, "interactions", interactions)
	require.NotEmpty(t, interactions.GetInteractions())
	var purchaseEntries int
	for _, e := range interactions.GetInteractions() {
		if e.GetPurchase().GetPurchaseId() == purchase.GetId() {
			purchaseEntries++
		}
	}
	require.Equal(t, 1, purchaseEntries)
	out := &customerv1.OutreachExport{}
	section(t, doc, "outreach", out)
	require.Len(t, out.GetDeliveries(), 1)
	require.Equal(t, delivery.GetId(), out.GetDeliveries()[0].GetDelivery().GetId())
	require.Equal(t, "Order order-priv ships today.", out.GetDeliveries()[0].GetTextBody())

	// Erase, then the customer is gone and the export says so.
	erase := func(key string) *customerv1.EraseCustomerResponse {
		r := &customerv1.EraseCustomerResponse{}
		restOK(t, b, http.MethodPost, "/v1/customers/"+id+":erase", tok, key, []byte(`{}`), r)
		return r
	}
	first := erase(uuid.NewString())
	require.Equal(t, id, first.GetCustomerId())
	require.NotNil(t, first.GetEraseTime())
	gone := rest.get(t, tok, id)
	require.Equal(t, codes.NotFound, gone.code)
	require.Nil(t, gone.customer)
	r := b.call(t, http.MethodGet, "/v1/customers/"+id, tok, nil, "")
	require.Equal(t, http.StatusNotFound, r.status, r.body)

	after := exportDoc(t, b, tok, id)
	prof = &customerv1.ProfileExport{}
	section(t, after, "profile", prof)
	require.True(t, prof.GetErased())
	require.True(t, first.GetEraseTime().AsTime().Equal(prof.GetEraseTime().AsTime()))
	require.Empty(t, prof.GetCustomer().GetEmail())
	raw, err := json.Marshal(after)
	require.NoError(t, err)
	for _, pii := range []string{email, "Ada Lovelace", "+442071234567", "ships today"} {
		require.NotContains(t, string(raw), pii, "the erased export holds no personal data")
	}

	// A second erase changes nothing and answers with the first time.
	second := erase(uuid.NewString())
	require.True(t, first.GetEraseTime().AsTime().Equal(second.GetEraseTime().AsTime()))
	var erasedEvents int
	require.NoError(t, b.customerPool(t).QueryRow(context.Background(),
		`SELECT count(*) FROM outbox WHERE tenant_id = $1 AND subject = 'rapport.customer.customer.erased'`, tenant).Scan(&erasedEvents))
	require.Equal(t, 1, erasedEvents, "one customer.erased event")
}

// exportDocument is the export's JSON shape (privacy.Document).
type exportDocument struct {
	CustomerID string                     `json:"customerId"`
	ExportTime time.Time                  `json:"exportTime"`
	Sections   map[string]json.RawMessage `json:"sections"`
}

func exportDoc(t *testing.T, b *testBundle, tok, id string) exportDocument {
	t.Helper()
	r := b.call(t, http.MethodGet, "/v1/customers/"+id+":export", tok, nil, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	mt, _, err := mime.ParseMediaType(r.header.Get("Content-Type"))
	require.NoError(t, err)
	require.Equal(t, "application/json", mt)
	var doc exportDocument
	require.NoError(t, json.Unmarshal([]byte(r.body), &doc), r.body)
	require.False(t, doc.ExportTime.IsZero())
	return doc
}

func section(t *testing.T, doc exportDocument, name string, into proto.Message) {
	t.Helper()
	raw, ok := doc.Sections[name]
	require.True(t, ok, "section %s", name)
	require.NoError(t, protojson.Unmarshal(raw, into), "section %s: %s", name, raw)
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// ---- 5. merge over REST

func mergeFlow(t *testing.T, b *testBundle) {
	tok := b.token(t, uuid.NewString(), "merge-flow")
	rest := restAPI{base: b.httpBase, b: b}
	person := ada()
	person.Email = "grace@example.org"
	person.Phone = ""
	ra := rest.create(t, tok, person, "")
	require.Equal(t, codes.OK, ra.code)
	rb := rest.create(t, tok, person, "")
	require.Equal(t, codes.OK, rb.code)
	primary, source := ra.customer.GetId(), rb.customer.GetId()

	dups := &customerv1.FindDuplicateCustomersResponse{}
	restOK(t, b, http.MethodGet, "/v1/customers/"+primary+":findDuplicates", tok, "", nil, dups)
	require.Len(t, dups.GetDuplicates(), 1)
	require.Equal(t, source, dups.GetDuplicates()[0].GetCustomer().GetId())
	var byEmail bool
	for _, m := range dups.GetDuplicates()[0].GetMatches() {
		byEmail = byEmail || m.GetKey() == customerv1.DuplicateKey_DUPLICATE_KEY_EMAIL
	}
	require.True(t, byEmail, "matched by email: %v", dups.GetDuplicates()[0].GetMatches())

	bought := &customerv1.Purchase{}
	restOK(t, b, http.MethodPost, "/v1/customers/"+source+"/purchases", tok, "",
		protoBody(t, flowPurchase("order-merge", time.Now().Add(-time.Hour))), bought)

	merged := &customerv1.MergeCustomersResponse{}
	restOK(t, b, http.MethodPost, "/v1/customers/"+primary+":merge", tok, uuid.NewString(),
		[]byte(`{"sourceIds":["`+source+`"]}`), merged)
	require.False(t, merged.GetDryRun())
	require.Equal(t, primary, merged.GetCustomer().GetId())
	moved := map[string]int64{}
	for _, s := range merged.GetSections() {
		moved[s.GetSection()] = s.GetMoved()
	}
	require.Equal(t, int64(1), moved["purchases"], "sections: %v", merged.GetSections())

	list := &customerv1.ListPurchasesResponse{}
	restOK(t, b, http.MethodGet, "/v1/customers/"+primary+"/purchases", tok, "", nil, list)
	require.Len(t, list.GetPurchases(), 1)
	require.Equal(t, bought.GetId(), list.GetPurchases()[0].GetId())
	require.Equal(t, primary, list.GetPurchases()[0].GetCustomerId())

	// The source takes nothing new: FAILED_PRECONDITION (HTTP 400 through
	// grpc-gateway) with reason CUSTOMER_MERGED naming the primary.
	r := b.call(t, http.MethodPost, "/v1/customers/"+source+"/purchases", tok, nil,
		string(protoBody(t, flowPurchase("order-late", time.Now()))))
	require.Equal(t, http.StatusBadRequest, r.status, r.body)
	var e struct {
		Code    int `json:"code"`
		Details []struct {
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
	require.Equal(t, int(codes.FailedPrecondition), e.Code)
	var reason, into string
	for _, d := range e.Details {
		if d.Reason != "" {
			reason, into = d.Reason, d.Metadata["merged_into"]
		}
	}
	require.Equal(t, "CUSTOMER_MERGED", reason, r.body)
	require.Equal(t, primary, into)
	b.requireCleanError(t, r.body)

	restOK(t, b, http.MethodGet, "/v1/customers/"+primary+"/purchases", tok, "", nil, list)
	require.Len(t, list.GetPurchases(), 1, "the refused purchase was not recorded")
}

// ---- helpers

func flowPurchase(ref string, at time.Time) *customerv1.Purchase {
	return &customerv1.Purchase{OrderReference: ref,
		Items:       []*customerv1.PurchaseItem{{Sku: "tea-1", Name: "Tea", Quantity: 2, UnitPrice: eur(450), Category: "tea"}},
		TotalAmount: eur(900), Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
		PurchaseTime: timestamppb.New(at)}
}

// restOK makes a REST call through the gateway that must succeed and
// decodes its answer into into.
func restOK(t *testing.T, b *testBundle, method, path, token, idemKey string, body []byte, into proto.Message) {
	t.Helper()
	h := map[string]string{"Content-Type": "application/json"}
	if idemKey != "" {
		h["Idempotency-Key"] = idemKey
	}
	r := b.call(t, method, path, token, h, string(body))
	require.Equal(t, http.StatusOK, r.status, "%s %s: %s", method, path, r.body)
	require.NoError(t, protojson.Unmarshal([]byte(r.body), into), r.body)
}

func protoBody(t *testing.T, m proto.Message) []byte {
	t.Helper()
	body, err := protojson.Marshal(m)
	require.NoError(t, err)
	return body
}

// waitFor polls check until it reports done, failing after flowDeadline
// with what it last saw.
func waitFor[T any](t *testing.T, what string, check func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(flowDeadline)
	for {
		v, ok := check()
		if ok {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s; last saw %+v", flowDeadline, what, v)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// flowSMTP is a real SMTP server (emersion/go-smtp) on a loopback port
// that records what arrives on the wire.
type flowSMTP struct {
	addr string
	mu   sync.Mutex
	msgs []flowMail
}

type flowMail struct {
	from string
	rcpt []string
	data []byte
}

func startFlowSMTP(t *testing.T) *flowSMTP {
	t.Helper()
	s := &flowSMTP{}
	srv := smtp.NewServer(s)
	srv.Domain = "mx.test"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// to returns the messages whose envelope names rcpt.
func (s *flowSMTP) to(rcpt string) []flowMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []flowMail
	for _, m := range s.msgs {
		for _, r := range m.rcpt {
			if r == rcpt {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

func (s *flowSMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &flowSession{srv: s}, nil }

type flowSession struct {
	srv  *flowSMTP
	from string
	to   []string
}

func (s *flowSession) Reset()        { s.from, s.to = "", nil }
func (s *flowSession) Logout() error { return nil }

func (s *flowSession) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *flowSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *flowSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.msgs = append(s.srv.msgs, flowMail{from: s.from, rcpt: append([]string(nil), s.to...), data: data})
	return nil
}

type parsedFlowMail struct {
	header     mail.Header
	text, html string
}

func parseFlowMail(t *testing.T, data []byte) parsedFlowMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	out := parsedFlowMail{header: m.Header}
	var walk func(h mail.Header, body io.Reader)
	walk = func(h mail.Header, body io.Reader) {
		mt, params, err := mime.ParseMediaType(h.Get("Content-Type"))
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(mail.Header(p.Header), p)
			}
		}
		if strings.EqualFold(h.Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		switch mt {
		case "text/plain":
			out.text = strings.TrimRight(string(b), "\r\n")
		case "text/html":
			out.html = strings.TrimRight(string(b), "\r\n")
		}
	}
	walk(m.Header, m.Body)
	return out
}

func decodeFlowHeader(t *testing.T, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	require.NoError(t, err)
	return s
}
