package care_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	ticketv1 "github.com/rapporthq/rapport/pkg/gen/rapport/ticket/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/care"
)

// publishResolved publishes a TicketResolved as the ticket service's outbox
// relay would: CloudEvents headers, the tenant, and Nats-Msg-Id = ce-id.
// msgID overrides Nats-Msg-Id (to get a redelivered copy past the stream's
// duplicate window, as a relay restored from backup would).
func publishResolved(tb testing.TB, js jetstream.JetStream, eventID, msgID string, ev *ticketv1.TicketResolved) {
	tb.Helper()
	data, err := proto.Marshal(ev)
	require.NoError(tb, err)
	h := nats.Header{}
	h.Set(natsx.HeaderSpecVersion, natsx.SpecVersion)
	h.Set(natsx.HeaderID, eventID)
	h.Set(natsx.HeaderType, string(proto.MessageName(ev)))
	h.Set(natsx.HeaderSource, "rapport/ticket")
	h.Set(natsx.HeaderTime, ev.GetOccurredAt().AsTime().Format(time.RFC3339Nano))
	h.Set(natsx.HeaderSubject, ev.GetTicketId())
	h.Set(natsx.HeaderContentType, natsx.ContentTypeProtobuf)
	h.Set(natsx.HeaderTenant, ev.GetTenantId())
	h.Set(outbox.HeaderAggregateType, "ticket")
	h.Set(outbox.HeaderAggregateID, ev.GetTicketId())
	h.Set(outbox.HeaderAggregateVersion, "3")
	_, err = js.PublishMsg(context.Background(), &nats.Msg{Subject: care.SubjectTicketResolved, Header: h, Data: data},
		jetstream.WithMsgID(msgID))
	require.NoError(tb, err)
}

func TestTicketFollowUps(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{TicketFollowUpDays: 2, DueHour: 9}, "ticket_follow_up_days", "due_hour")
	c := b.newCustomer(t, customerOpts{zone: "Europe/London"})

	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	_, err := natsx.EnsureStream(context.Background(), js, "ticket", 1)
	require.NoError(t, err)

	resolved := utc("2026-06-01T15:00:00Z")
	ticket := uuid.New()
	ev := &ticketv1.TicketResolved{TenantId: b.tenant.String(), TicketId: ticket.String(), CustomerId: c.String(),
		AggregateVersion: 3, OccurredAt: timestamppb.New(resolved), Category: "repair", Number: "T-1", AgentId: "agent-7"}
	eventID := uuid.NewString()
	publishResolved(t, js, eventID, eventID, ev)
	publishResolved(t, js, eventID, uuid.NewString(), ev) // the same event again
	// A ticket of a tenant without care settings, one of a customer unknown
	// here, and a poison message.
	elsewhere := uuid.New()
	publishResolved(t, js, uuid.NewString(), uuid.NewString(), &ticketv1.TicketResolved{TenantId: elsewhere.String(),
		TicketId: uuid.NewString(), CustomerId: b.newCustomer(t, customerOpts{tenant: elsewhere}).String(),
		AggregateVersion: 1, OccurredAt: timestamppb.New(resolved)})
	publishResolved(t, js, uuid.NewString(), uuid.NewString(), &ticketv1.TicketResolved{TenantId: b.tenant.String(),
		TicketId: uuid.NewString(), CustomerId: uuid.NewString(), AggregateVersion: 1, OccurredAt: timestamppb.New(resolved)})
	_, err = js.PublishMsg(context.Background(), &nats.Msg{Subject: care.SubjectTicketResolved, Data: []byte("not a protobuf"),
		Header: nats.Header{natsx.HeaderID: []string{uuid.NewString()}}})
	require.NoError(t, err)

	cons, err := b.server.TicketConsumer(js, inbox.Config{NakDelayFunc: func(uint64) time.Duration { return 10 * time.Millisecond }})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM inbox WHERE consumer = $1`, care.TicketConsumerName) == 3 &&
			b.count(t, `SELECT count(*) FROM dead_letters WHERE consumer = $1`, care.TicketConsumerName) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool {
		c, err := js.Consumer(context.Background(), natsx.StreamName("ticket"), care.TicketConsumerName)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.Delivered.Stream == 5 && info.NumAckPending == 0 && info.NumPending == 0
	}, 10*time.Second, 20*time.Millisecond, "all five messages settled")
	// The copy of the event found its inbox row (three events applied, the
	// copy acked without effect); the other tenant and the unknown customer
	// were skipped.
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM care_ticket_resolutions`))

	// Resolved Jun 1 (London): the follow-up is Jun 3, 09:00 BST = 08:00 UTC.
	b.at(t, utc("2026-06-03T07:59:00Z"))
	require.Empty(t, b.dueEvents(t, b.tenant))
	b.at(t, utc("2026-06-03T08:00:00Z"))
	b.at(t, utc("2026-06-03T12:00:00Z"))
	evs := b.dueEvents(t, b.tenant)
	require.Len(t, evs, 1)
	require.Equal(t, customerv1.CareOccasionKind_CARE_OCCASION_KIND_TICKET_FOLLOW_UP, evs[0].GetKind())
	require.Equal(t, ticket.String(), evs[0].GetReferenceId())
	require.Equal(t, "2026-06-03", evs[0].GetOccasionDate())
}

// TestTicketFollowUpOfAMergedCustomer: the ticket service still names the
// merged customer; the follow-up falls due for the customer it was merged
// into.
func TestTicketFollowUpOfAMergedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{TicketFollowUpDays: 1, DueHour: 9}, "ticket_follow_up_days", "due_hour")
	primary, source := b.newCustomer(t, customerOpts{zone: "UTC"}), b.newCustomer(t, customerOpts{zone: "UTC"})
	_, err := b.pool.Exec(context.Background(), `UPDATE customers SET merged_into = $2, merge_time = now()
		WHERE tenant_id = $1 AND id = $3`, b.tenant, primary, source)
	require.NoError(t, err)

	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	_, err = natsx.EnsureStream(context.Background(), js, "ticket", 1)
	require.NoError(t, err)
	ticket, eventID := uuid.New(), uuid.NewString()
	publishResolved(t, js, eventID, eventID, &ticketv1.TicketResolved{TenantId: b.tenant.String(), TicketId: ticket.String(),
		CustomerId: source.String(), AggregateVersion: 3, OccurredAt: timestamppb.New(utc("2026-06-01T15:00:00Z"))})
	cons, err := b.server.TicketConsumer(js, inbox.Config{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM inbox WHERE consumer = $1`, care.TicketConsumerName) == 1
	}, 10*time.Second, 20*time.Millisecond)

	b.at(t, utc("2026-06-02T09:00:00Z"))
	evs := b.dueEvents(t, b.tenant)
	require.Len(t, evs, 1)
	require.Equal(t, primary.String(), evs[0].GetCustomerId())
	require.Equal(t, ticket.String(), evs[0].GetReferenceId())
}
