package timeline_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	loyaltyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/loyalty/v1"
	surveyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/survey/v1"
	ticketv1 "github.com/rapporthq/rapport/pkg/gen/rapport/ticket/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer/internal/timeline"
)

// services whose streams the projection reads.
var services = []string{"customer", "ticket", "loyalty", "survey"}

// projection is a running Projector and the producers around it: each
// producing service's schema with its outbox and the real relay publishing
// it, so events reach JetStream with exactly the headers production sets.
type projection struct {
	t         *testing.T // the test that owns it; subtests restart it
	b         *testBundle
	js        jetstream.JetStream
	producers map[string]*pgxpool.Pool
	stop      func()
}

func (b *testBundle) startProjection(t *testing.T) *projection {
	t.Helper()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	p := &projection{t: t, b: b, js: js, producers: map[string]*pgxpool.Pool{"customer": b.pool}}
	for _, svc := range services[1:] {
		p.producers[svc] = pgdbtest.Pool(t, b.dbURL, svc)
	}
	p.run(t)
	// The projector creates the streams it reads; the relays publish once
	// they exist.
	for svc, pool := range p.producers {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		relay := outbox.NewRelay(pool, js, outbox.RelayConfig{Source: "rapport/" + svc, PollInterval: 10 * time.Millisecond})
		go func() { done <- relay.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			require.NoError(t, <-done)
		})
	}
	return p
}

// run starts a new Projector on the same durable consumers. It runs until
// stop, or until the owning test ends (not the subtest that started it).
func (p *projection) run(t *testing.T) {
	t.Helper()
	proj, err := timeline.NewProjector(p.b.pool, p.js, timeline.ProjectorConfig{
		Now: p.b.clock.Now, NakDelayFunc: func(uint64) time.Duration { return 10 * time.Millisecond },
		Logger: testLogger(p.t),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	stopped := false
	p.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				p.t.Errorf("projector: %v", err)
			}
		}
	}
	p.t.Cleanup(p.stop)
}

// testLogger logs to the test's output under -v, and nowhere otherwise.
func testLogger(t *testing.T) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// publish commits events in the producing service's outbox, as its API
// would, and waits until the relay has published them.
func (p *projection) publish(t *testing.T, events ...outbox.Event) {
	t.Helper()
	ctx := context.Background()
	for _, e := range events {
		svc := strings.Split(e.Subject, ".")[1]
		pool := p.producers[svc]
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, outbox.Write(ctx, tx, e))
		require.NoError(t, tx.Commit(ctx))
	}
	require.Eventually(t, func() bool {
		for _, pool := range p.producers {
			var pending int
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&pending); err != nil || pending > 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "relays published everything")
}

// settle waits until every consumer has settled every event of its stream.
func (p *projection) settle(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, svc := range services {
			c, err := p.js.Consumer(context.Background(), natsx.StreamName(svc), timeline.ConsumerPrefix+svc)
			if err != nil {
				return false
			}
			info, err := c.Info(context.Background())
			if err != nil || info.NumPending > 0 || info.NumAckPending > 0 {
				return false
			}
		}
		return true
	}, 20*time.Second, 10*time.Millisecond, "consumers caught up")
}

// rawPublish publishes a message the relay's way, by hand: for payloads no
// outbox would hold, and copies of an event under another Nats-Msg-Id.
func (p *projection) rawPublish(t *testing.T, subject string, tenant uuid.UUID, eventID, ceType string, data []byte) {
	t.Helper()
	h := nats.Header{}
	h.Set(natsx.HeaderSpecVersion, natsx.SpecVersion)
	h.Set(natsx.HeaderID, eventID)
	h.Set(natsx.HeaderType, ceType)
	h.Set(natsx.HeaderSource, "rapport/test")
	h.Set(natsx.HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	h.Set(natsx.HeaderContentType, natsx.ContentTypeProtobuf)
	h.Set(natsx.HeaderTenant, tenant.String())
	h.Set(natsx.HeaderMsgID, eventID)
	_, err := p.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Header: h, Data: data})
	require.NoError(t, err)
}

func (p *projection) deadLetters(t *testing.T) []string {
	t.Helper()
	rows, err := p.b.pool.Query(context.Background(), "SELECT event_id FROM dead_letters WHERE consumer LIKE $1 ORDER BY event_id",
		timeline.ConsumerPrefix+"%")
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

// event is an outbox event of subject about customer.
func event(tenant, customerID uuid.UUID, subject, aggregateID string, payload proto.Message) outbox.Event {
	parts := strings.Split(subject, ".")
	return outbox.Event{ID: uuid.Must(uuid.NewV7()), TenantID: tenant.String(), Subject: subject,
		AggregateType: parts[2], AggregateID: aggregateID, AggregateVersion: 1, Payload: payload}
}

// oneOfEach returns one event of every projected kind about customer, at
// hour offsets 1..9 before start, and the entries they must become.
func oneOfEach(tenant, customerID uuid.UUID) ([]outbox.Event, []*customerv1.Interaction) {
	ts := func(h int) *timestamppb.Timestamp { return timestamppb.New(start.Add(-time.Duration(h) * time.Hour)) }
	tn, cu := tenant.String(), customerID.String()
	eur := &typev1.Money{CurrencyCode: "EUR", AmountMinor: 12999}
	score := int32(9)
	ids := make([]string, 9)
	for i := range ids {
		ids[i] = uuid.NewString()
	}
	events := []outbox.Event{
		event(tenant, customerID, timeline.SubjectPurchaseRecorded, ids[0], &customerv1.PurchaseRecorded{TenantId: tn, PurchaseId: ids[0],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(0), PurchaseTime: ts(1), OrderReference: "order-1", TotalAmount: eur,
			Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE,
			Items:   []*customerv1.PurchaseRecorded_Item{{Sku: "boots", Quantity: 1, UnitPrice: eur}, {Sku: "laces", Quantity: 2}}}),
		event(tenant, customerID, timeline.SubjectOutreachSent, ids[1], &customerv1.OutreachSent{TenantId: tn, DeliveryId: ids[1],
			CustomerId: cu, AggregateVersion: 2, OccurredAt: ts(2), Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL,
			Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, TemplateId: uuid.NewString(), Attempts: 2, TemplateKey: "birthday-greeting"}),
		event(tenant, customerID, timeline.SubjectTicketOpened, ids[2], &ticketv1.TicketOpened{TenantId: tn, TicketId: ids[2],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(3), Channel: "phone", Category: "returns", Number: "T-10432"}),
		event(tenant, customerID, timeline.SubjectTicketResolved, ids[2], &ticketv1.TicketResolved{TenantId: tn, TicketId: ids[2],
			CustomerId: cu, AggregateVersion: 3, OccurredAt: ts(4), Category: "returns", Number: "T-10432", AgentId: "agent-3"}),
		event(tenant, customerID, timeline.SubjectPointsEarned, ids[4], &loyaltyv1.PointsEarned{TenantId: tn, EntryId: ids[4],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(5), Points: 130, Reason: "purchase"}),
		event(tenant, customerID, timeline.SubjectPointsSpent, ids[5], &loyaltyv1.PointsSpent{TenantId: tn, EntryId: ids[5],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(6), Points: 50, Reason: "reward"}),
		event(tenant, customerID, timeline.SubjectCouponIssued, ids[6], &loyaltyv1.CouponIssued{TenantId: tn, CouponId: ids[6],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(7), Title: "Birthday 10% off", Reason: "birthday"}),
		event(tenant, customerID, timeline.SubjectCouponRedeemed, ids[6], &loyaltyv1.CouponRedeemed{TenantId: tn, CouponId: ids[6],
			CustomerId: cu, AggregateVersion: 2, OccurredAt: ts(8), Title: "Birthday 10% off", OrderReference: "order-2"}),
		event(tenant, customerID, timeline.SubjectResponseSubmitted, ids[8], &surveyv1.ResponseSubmitted{TenantId: tn, ResponseId: ids[8],
			CustomerId: cu, AggregateVersion: 1, OccurredAt: ts(9), SurveyId: "nps-q1", Kind: "nps", Score: &score}),
	}
	k := func(v customerv1.InteractionKind) customerv1.InteractionKind { return v }
	want := []*customerv1.Interaction{
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_PURCHASE), OccurTime: ts(1), Details: &customerv1.Interaction_Purchase{Purchase: &customerv1.PurchaseInteraction{
			PurchaseId: ids[0], OrderReference: "order-1", TotalAmount: eur, Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE, ItemCount: 2}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_OUTREACH_SENT), OccurTime: ts(2), Details: &customerv1.Interaction_Outreach{Outreach: &customerv1.OutreachInteraction{
			DeliveryId: ids[1], Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE,
			TemplateKey: "birthday-greeting", Attempts: 2}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_TICKET_OPENED), OccurTime: ts(3), Details: &customerv1.Interaction_Ticket{Ticket: &customerv1.TicketInteraction{
			TicketId: ids[2], Number: "T-10432", Category: "returns", Channel: "phone"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_TICKET_RESOLVED), OccurTime: ts(4), AgentId: "agent-3", Details: &customerv1.Interaction_Ticket{Ticket: &customerv1.TicketInteraction{
			TicketId: ids[2], Number: "T-10432", Category: "returns"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_POINTS_EARNED), OccurTime: ts(5), Details: &customerv1.Interaction_Points{Points: &customerv1.PointsInteraction{
			EntryId: ids[4], Points: 130, Reason: "purchase"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_POINTS_SPENT), OccurTime: ts(6), Details: &customerv1.Interaction_Points{Points: &customerv1.PointsInteraction{
			EntryId: ids[5], Points: 50, Reason: "reward"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_COUPON_ISSUED), OccurTime: ts(7), Details: &customerv1.Interaction_Coupon{Coupon: &customerv1.CouponInteraction{
			CouponId: ids[6], Title: "Birthday 10% off", Reason: "birthday"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_COUPON_REDEEMED), OccurTime: ts(8), Details: &customerv1.Interaction_Coupon{Coupon: &customerv1.CouponInteraction{
			CouponId: ids[6], Title: "Birthday 10% off", OrderReference: "order-2"}}},
		{Kind: k(customerv1.InteractionKind_INTERACTION_KIND_SURVEY_ANSWERED), OccurTime: ts(9), Details: &customerv1.Interaction_Survey{Survey: &customerv1.SurveyInteraction{
			ResponseId: ids[8], SurveyId: "nps-q1", SurveyKind: "nps", Score: &score}}},
	}
	for i, w := range want {
		w.CustomerId = cu
		w.Source = &customerv1.InteractionSource{EventId: events[i].ID.String(), Subject: events[i].Subject}
		w.CreateTime = timestamppb.New(start)
	}
	return events, want
}

func (b *testBundle) timeline(t *testing.T, tenant, customerID uuid.UUID) []*customerv1.Interaction {
	t.Helper()
	resp, err := b.client.ListInteractions(agent(tenant), &customerv1.ListInteractionsRequest{CustomerId: customerID.String(), PageSize: 500})
	require.NoError(t, err)
	return resp.GetInteractions()
}

func diffIgnoringIDs(want, got []*customerv1.Interaction) string {
	return cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&customerv1.Interaction{}, "id"))
}

func TestProjection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	p := b.startProjection(t)
	ctx := context.Background()
	c := b.newCustomer(t, b.tenant)
	events, want := oneOfEach(b.tenant, c)
	p.publish(t, events...)
	p.settle(t)

	t.Run("EachKindOnceWithItsAttributes", func(t *testing.T) {
		require.Empty(t, diffIgnoringIDs(want, b.timeline(t, b.tenant, c)))
		resp, err := b.client.ListInteractions(agent(b.tenant), &customerv1.ListInteractionsRequest{CustomerId: c.String(),
			Kinds: []customerv1.InteractionKind{customerv1.InteractionKind_INTERACTION_KIND_TICKET_OPENED, customerv1.InteractionKind_INTERACTION_KIND_TICKET_RESOLVED}})
		require.NoError(t, err)
		require.Empty(t, diffIgnoringIDs(want[2:4], resp.GetInteractions()), "the kind filter covers projected kinds")
	})

	t.Run("AnEventDeliveredAgainIsNotProjectedAgain", func(t *testing.T) {
		// Every stored event published again under a new Nats-Msg-Id (as a
		// re-published outbox range after the duplicate window would be):
		// the stream stores the copy and the consumer receives the same
		// event id a second time.
		for _, svc := range services {
			s, err := p.js.Stream(ctx, natsx.StreamName(svc))
			require.NoError(t, err)
			info, err := s.Info(ctx)
			require.NoError(t, err)
			for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
				m, err := s.GetMsg(ctx, seq)
				require.NoError(t, err)
				h := nats.Header{}
				for k, v := range m.Header {
					h[k] = v
				}
				h.Set(natsx.HeaderMsgID, h.Get(natsx.HeaderID)+"-again")
				_, err = p.js.PublishMsg(ctx, &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data})
				require.NoError(t, err)
			}
			after, err := s.Info(ctx)
			require.NoError(t, err)
			require.Equal(t, 2*info.State.Msgs, after.State.Msgs, "the copies are stored")
		}
		p.settle(t)
		require.Empty(t, diffIgnoringIDs(want, b.timeline(t, b.tenant, c)))
		var inboxRows int
		require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM inbox WHERE consumer LIKE $1", timeline.ConsumerPrefix+"%").Scan(&inboxRows))
		require.Equal(t, len(events), inboxRows, "one inbox row per event")
		require.Empty(t, p.deadLetters(t))
	})

	t.Run("EventsAboutNoSuchCustomerStoreNothing", func(t *testing.T) {
		other := uuid.New()
		theirs := b.newCustomer(t, other)
		stranger := uuid.New()
		gone := b.newCustomer(t, b.tenant)
		b.erase(t, b.tenant, gone)
		for _, cust := range []uuid.UUID{stranger, theirs, gone} {
			p.publish(t, event(b.tenant, cust, timeline.SubjectPointsEarned, uuid.NewString(),
				&loyaltyv1.PointsEarned{TenantId: b.tenant.String(), EntryId: uuid.NewString(), CustomerId: cust.String(),
					AggregateVersion: 1, OccurredAt: timestamppb.New(start), Points: 5, Reason: "bonus"}))
		}
		p.settle(t)
		var n int
		require.NoError(t, b.pool.QueryRow(ctx, "SELECT count(*) FROM interactions WHERE customer_id = ANY($1)",
			[]uuid.UUID{stranger, theirs, gone}).Scan(&n))
		require.Zero(t, n, "another tenant's customer is no customer of this tenant")
		require.Empty(t, p.deadLetters(t), "acked, not parked")
	})

	t.Run("PoisonIsParkedAndTheRestFlows", func(t *testing.T) {
		garbage := uuid.NewString()
		p.rawPublish(t, timeline.SubjectTicketOpened, b.tenant, garbage, "rapport.ticket.v1.TicketOpened", []byte{0xff, 0xff, 0xff})
		badIDs := uuid.NewString()
		payload, err := proto.Marshal(&ticketv1.TicketOpened{TenantId: "not-a-uuid", TicketId: uuid.NewString(), CustomerId: c.String(),
			OccurredAt: timestamppb.New(start)})
		require.NoError(t, err)
		p.rawPublish(t, timeline.SubjectTicketOpened, b.tenant, badIDs, "rapport.ticket.v1.TicketOpened", payload)
		spoofed := uuid.NewString()
		payload, err = proto.Marshal(&ticketv1.TicketOpened{TenantId: uuid.NewString(), TicketId: uuid.NewString(), CustomerId: c.String(),
			OccurredAt: timestamppb.New(start)})
		require.NoError(t, err)
		p.rawPublish(t, timeline.SubjectTicketOpened, b.tenant, spoofed, "rapport.ticket.v1.TicketOpened", payload)
		good := event(b.tenant, c, timeline.SubjectTicketOpened, uuid.NewString(), &ticketv1.TicketOpened{TenantId: b.tenant.String(),
			TicketId: uuid.NewString(), CustomerId: c.String(), OccurredAt: timestamppb.New(start), Number: "T-2"})
		p.publish(t, good)
		p.settle(t)
		wantDead := []string{garbage, badIDs, spoofed}
		require.ElementsMatch(t, wantDead, p.deadLetters(t))
		require.Len(t, b.timeline(t, b.tenant, c), len(want)+1)
	})

	t.Run("OtherEventTypesAreIgnored", func(t *testing.T) {
		before := len(b.timeline(t, b.tenant, c))
		payload, err := proto.Marshal(&ticketv1.TicketOpened{TenantId: b.tenant.String(), TicketId: uuid.NewString(), CustomerId: c.String(),
			OccurredAt: timestamppb.New(start)})
		require.NoError(t, err)
		p.rawPublish(t, timeline.SubjectTicketOpened, b.tenant, uuid.NewString(), "rapport.ticket.v2.TicketOpened", payload)
		p.rawPublish(t, "rapport.ticket.ticket.assigned", b.tenant, uuid.NewString(), "rapport.ticket.v1.TicketAssigned", payload)
		p.rawPublish(t, "rapport.customer.segment.changed", b.tenant, uuid.NewString(), "rapport.customer.v1.SegmentChanged", payload)
		p.settle(t)
		require.Len(t, b.timeline(t, b.tenant, c), before)
		require.Len(t, p.deadLetters(t), 3, "nothing new parked")
	})

	t.Run("EventsOfAMergedCustomerGoToItsPrimary", func(t *testing.T) {
		primary, source := b.newCustomer(t, b.tenant), b.newCustomer(t, b.tenant)
		_, err := b.pool.Exec(ctx, "UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2",
			b.tenant, source, primary)
		require.NoError(t, err)
		p.publish(t, event(b.tenant, source, timeline.SubjectCouponIssued, uuid.NewString(), &loyaltyv1.CouponIssued{
			TenantId: b.tenant.String(), CouponId: uuid.NewString(), CustomerId: source.String(), OccurredAt: timestamppb.New(start), Title: "Welcome"}))
		p.settle(t)
		require.Equal(t, 1, b.count(t, b.tenant, primary))
		require.Zero(t, b.count(t, b.tenant, source))
	})

	t.Run("ARestartedConsumerProjectsOnlyNewEvents", func(t *testing.T) {
		before := len(b.timeline(t, b.tenant, c))
		p.stop()
		fresh := event(b.tenant, c, timeline.SubjectResponseSubmitted, uuid.NewString(), &surveyv1.ResponseSubmitted{
			TenantId: b.tenant.String(), ResponseId: uuid.NewString(), CustomerId: c.String(), OccurredAt: timestamppb.New(start), Kind: "csat"})
		p.publish(t, fresh) // published while no consumer runs
		p.run(t)
		p.settle(t)
		require.Len(t, b.timeline(t, b.tenant, c), before+1)
	})

	t.Run("AFailedDeliveryIsRetriedAndAppliedOnce", func(t *testing.T) {
		// The first two inserts fail (a sequence is not rolled back with
		// them): the event is nak'ed, redelivered twice, then applied once.
		_, err := b.pool.Exec(ctx, `CREATE SEQUENCE fail_twice;
			CREATE FUNCTION fail_twice() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN IF nextval('fail_twice') <= 2 THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW; END $$;
			CREATE TRIGGER fail_twice BEFORE INSERT ON interactions FOR EACH ROW EXECUTE FUNCTION fail_twice();`)
		require.NoError(t, err)
		defer func() {
			_, err := b.pool.Exec(ctx, "DROP TRIGGER fail_twice ON interactions; DROP FUNCTION fail_twice(); DROP SEQUENCE fail_twice")
			require.NoError(t, err)
		}()
		before := len(b.timeline(t, b.tenant, c))
		p.publish(t, event(b.tenant, c, timeline.SubjectPointsSpent, uuid.NewString(), &loyaltyv1.PointsSpent{
			TenantId: b.tenant.String(), EntryId: uuid.NewString(), CustomerId: c.String(), OccurredAt: timestamppb.New(start), Points: 1}))
		p.settle(t)
		require.Len(t, b.timeline(t, b.tenant, c), before+1)
		var calls int64
		require.NoError(t, b.pool.QueryRow(ctx, "SELECT last_value FROM fail_twice").Scan(&calls))
		require.Equal(t, int64(3), calls, "two failed deliveries, one applied")
		require.Len(t, p.deadLetters(t), 3, "nothing new parked")
	})

	t.Run("AConsumerRebuiltFromScratchAddsNothing", func(t *testing.T) {
		// The durable consumers and their inbox rows are gone (an operator
		// reset them): every event is delivered again from the stream's
		// start, and the entries' unique event ids keep them single.
		before := b.timeline(t, b.tenant, c)
		p.stop()
		for _, svc := range services {
			require.NoError(t, p.js.DeleteConsumer(ctx, natsx.StreamName(svc), timeline.ConsumerPrefix+svc))
		}
		_, err := b.pool.Exec(ctx, "DELETE FROM inbox WHERE consumer LIKE $1", timeline.ConsumerPrefix+"%")
		require.NoError(t, err)
		p.run(t)
		p.settle(t)
		require.Empty(t, cmp.Diff(before, b.timeline(t, b.tenant, c), protocmp.Transform()))
	})
}

func TestProjectorCreatesMissingStreams(t *testing.T) {
	t.Parallel()
	b := setup(t)
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	proj, err := timeline.NewProjector(b.pool, js, timeline.ProjectorConfig{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proj.Run(ctx) }()
	defer func() {
		cancel()
		require.NoError(t, <-done)
	}()
	for _, svc := range services {
		var stream jetstream.Stream
		require.Eventually(t, func() bool {
			var err error
			stream, err = js.Stream(ctx, natsx.StreamName(svc))
			return err == nil
		}, 10*time.Second, 10*time.Millisecond)
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		require.NoError(t, natsx.CheckStreamConfig(info.Config))
		want := natsx.StreamConfig(svc, 1)
		require.Equal(t, want.Subjects, info.Config.Subjects)
		require.Equal(t, want.Duplicates, info.Config.Duplicates)
		require.Equal(t, want.MaxAge, info.Config.MaxAge)
		require.Equal(t, want.Replicas, info.Config.Replicas)
		// The owning service starting later finds its stream as it wants it.
		_, err = natsx.EnsureStream(ctx, js, svc, 1)
		require.NoError(t, err)
		c, err := js.Consumer(ctx, natsx.StreamName(svc), timeline.ConsumerPrefix+svc)
		if err == nil {
			ci, err := c.Info(ctx)
			require.NoError(t, err)
			require.NoError(t, natsx.CheckConsumerConfig(ci.Config, time.Second))
		} else {
			require.True(t, errors.Is(err, jetstream.ErrConsumerNotFound), "%v", err)
		}
	}
}
