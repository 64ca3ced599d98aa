package care

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	ticketv1 "github.com/rapporthq/rapport/pkg/gen/rapport/ticket/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
)

// Ticket events this package consumes.
const (
	// SubjectTicketResolved is the ticket service's event.
	SubjectTicketResolved = "rapport.ticket.ticket.resolved"
	// TicketConsumerName is the durable consumer (and inbox consumer) name.
	TicketConsumerName = "customer-care-ticket-resolved"
)

// TicketConsumer returns the consumer of rapport.ticket.ticket.resolved,
// which records each resolved ticket so its follow-up falls due
// ticket_follow_up_days later. cfg's Consumer, Stream and FilterSubjects
// are set here; the rest (workers, logger, registerer) is the caller's.
// Each event counts once (pkg/inbox): the record and the inbox row commit
// together.
func (s *Server) TicketConsumer(js jetstream.JetStream, cfg inbox.Config) (*inbox.Consumer, error) {
	cfg.Consumer = TicketConsumerName
	cfg.Stream = natsx.StreamName("ticket")
	cfg.FilterSubjects = []string{SubjectTicketResolved}
	return inbox.New(s.pool, js, cfg, s.handleTicketResolved)
}

// handleTicketResolved records a resolved ticket of a customer of the
// tenant. An event that does not decode, or names no tenant, ticket or
// customer, can never apply: it is parked. A customer unknown here (not
// created yet, or of another tenant) is skipped: there is no one to follow
// up with. A customer merged into another is followed up as that one. So is a tenant that never stored care settings: its rounds,
// which prune old resolutions, do not run, and it has no follow-ups on.
func (s *Server) handleTicketResolved(ctx context.Context, tx pgx.Tx, m inbox.Message) error {
	ev := &ticketv1.TicketResolved{}
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		return inbox.Permanent(fmt.Errorf("decode TicketResolved: %w", err))
	}
	tenant, err := uuid.Parse(ev.GetTenantId())
	if err != nil {
		return inbox.Permanent(errors.New("TicketResolved: tenant_id is not a UUID"))
	}
	if m.TenantID != "" && m.TenantID != ev.GetTenantId() {
		return inbox.Permanent(errors.New("TicketResolved: tenant header and payload differ"))
	}
	ticket, err := uuid.Parse(ev.GetTicketId())
	if err != nil {
		return inbox.Permanent(errors.New("TicketResolved: ticket_id is not a UUID"))
	}
	customer, err := uuid.Parse(ev.GetCustomerId())
	if err != nil {
		return inbox.Permanent(errors.New("TicketResolved: customer_id is not a UUID"))
	}
	if ev.GetOccurredAt() == nil || ev.GetOccurredAt().CheckValid() != nil {
		return inbox.Permanent(errors.New("TicketResolved: occurred_at is missing"))
	}
	if _, err := s.store.Settings(ctx, tx, tenant, false); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	// Holding the customer's row, so a merge running now either finishes
	// first (and the resolution follows it here) or waits and moves it.
	ok, mergedInto, err := s.store.CustomerForWrite(ctx, tx, tenant, customer)
	if err != nil {
		return err
	}
	if !ok {
		return nil
	}
	if mergedInto != uuid.Nil {
		// The ticket service still knows the customer by the merged id; the
		// follow-up belongs to the person, now the customer merged into.
		customer = mergedInto
	}
	return s.store.RecordResolution(ctx, tx, tenant, ticket, customer, ev.GetOccurredAt().AsTime().UTC())
}
