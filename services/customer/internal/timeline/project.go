package timeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	loyaltyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/loyalty/v1"
	surveyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/survey/v1"
	ticketv1 "github.com/rapporthq/rapport/pkg/gen/rapport/ticket/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// The subjects the timeline projects, per DESIGN.md's event contracts.
const (
	SubjectPurchaseRecorded  = "rapport.customer.purchase.recorded"
	SubjectOutreachSent      = "rapport.customer.outreach.sent"
	SubjectTicketOpened      = "rapport.ticket.ticket.opened"
	SubjectTicketResolved    = "rapport.ticket.ticket.resolved"
	SubjectPointsEarned      = "rapport.loyalty.points.earned"
	SubjectPointsSpent       = "rapport.loyalty.points.spent"
	SubjectCouponIssued      = "rapport.loyalty.coupon.issued"
	SubjectCouponRedeemed    = "rapport.loyalty.coupon.redeemed"
	SubjectResponseSubmitted = "rapport.survey.response.submitted"
)

// ConsumerPrefix starts the durable consumer names (and inbox consumer
// column) of the projection: one per stream, "customer-timeline-<service>".
const ConsumerPrefix = "customer-timeline-"

// maxTextLen bounds a projected display string (a category, a coupon title):
// longer ones are cut, so one odd event cannot bloat a timeline page.
// maxIDLen bounds an id; a longer one is an invalid event.
const (
	maxTextLen = 200
	maxIDLen   = 200
)

// sources are the streams the projection reads and, on each, the subjects
// it projects. The consumers filter on exactly these subjects, so the
// customer stream's busy segment and profile events never reach them.
var sources = []struct {
	service  string
	subjects []string
}{
	{"customer", []string{SubjectPurchaseRecorded, SubjectOutreachSent}},
	{"ticket", []string{SubjectTicketOpened, SubjectTicketResolved}},
	{"loyalty", []string{SubjectPointsEarned, SubjectPointsSpent, SubjectCouponIssued, SubjectCouponRedeemed}},
	{"survey", []string{SubjectResponseSubmitted}},
}

// ProjectorConfig tunes the Projector; zero values are defaults.
type ProjectorConfig struct {
	// Logger defaults to discarding. Log lines carry event ids, subjects,
	// tenant and customer ids, never payloads.
	Logger *slog.Logger
	// Registerer receives the inbox consumers' metrics; nil registers none.
	Registerer prometheus.Registerer
	// Now stamps create_time; nil means time.Now.
	Now func() time.Time
	// StreamReplicas is the replica count of a stream the projector has to
	// create because its owning service has not started yet (RAPPORT_NATS_
	// REPLICAS: 1 on a single node, 3 in a cluster). Below 1 means 1.
	StreamReplicas int
	// MaxDeliver, AckWait, Workers and NakDelayFunc tune each stream's
	// inbox consumer (see inbox.Config); zero means inbox's defaults.
	MaxDeliver   int
	AckWait      time.Duration
	Workers      int
	NakDelayFunc func(numDelivered uint64) time.Duration
}

// Projector turns other services' events into timeline entries: one inbox
// consumer per source stream, each event applied once.
type Projector struct {
	js        jetstream.JetStream
	cfg       ProjectorConfig
	log       *slog.Logger
	store     *store.Store
	consumers []*inbox.Consumer
}

// NewProjector returns a Projector on the customer schema's pool. It does
// not touch NATS; Run does.
func NewProjector(pool *pgxpool.Pool, js jetstream.JetStream, cfg ProjectorConfig) (*Projector, error) {
	if pool == nil || js == nil {
		return nil, errors.New("timeline.NewProjector: pool and jetstream are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	p := &Projector{js: js, cfg: cfg, store: store.New(),
		log: cfg.Logger.With("component", "timeline-projection")}
	for _, src := range sources {
		c, err := inbox.New(pool, js, inbox.Config{
			Consumer: ConsumerPrefix + src.service, Stream: natsx.StreamName(src.service),
			FilterSubjects: src.subjects, MaxDeliver: cfg.MaxDeliver, AckWait: cfg.AckWait,
			Workers: cfg.Workers, NakDelayFunc: cfg.NakDelayFunc,
			Logger: p.log, Registerer: cfg.Registerer,
		}, p.handle)
		if err != nil {
			return nil, fmt.Errorf("timeline.NewProjector: %w", err)
		}
		p.consumers = append(p.consumers, c)
	}
	return p, nil
}

// Run consumes every source stream until ctx ends, then returns nil once
// the deliveries in flight are settled. A stream that does not exist yet
// (its service never started) is created with natsx's configuration, the
// same its owner ensures, so events published later are kept for the
// timeline. It returns an error when a stream or consumer cannot be set up.
func (p *Projector) Run(ctx context.Context) error {
	for _, src := range sources {
		if err := natsx.EnsureStreamExists(ctx, p.js, src.service, p.cfg.StreamReplicas); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("timeline projection: %w", err)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, c := range p.consumers {
		g.Go(func() error { return c.Run(gctx) })
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("timeline projection: %w", err)
	}
	return nil
}

// projected is what an event contributes to the timeline, before its
// customer is resolved.
type projected struct {
	tenantID   string
	customerID string
	kind       string
	occurTime  *timestamppb.Timestamp
	reference  string
	agentID    string
	details    proto.Message
}

// decoder turns one subject's payload into a projected entry.
type decoder struct {
	// message is the payload's type; ce-type must name it when present.
	message protoreflect.FullName
	decode  func(data []byte) (projected, error)
}

var decoders = map[string]decoder{
	SubjectPurchaseRecorded: decodeWith(func(ev *customerv1.PurchaseRecorded) projected {
		at := ev.GetPurchaseTime()
		if at == nil {
			at = ev.GetOccurredAt()
		}
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindPurchase,
			occurTime: at, reference: ev.GetPurchaseId(), details: &customerv1.PurchaseInteraction{
				PurchaseId: ev.GetPurchaseId(), OrderReference: text(ev.GetOrderReference()),
				TotalAmount: ev.GetTotalAmount(), Channel: ev.GetChannel(),
				ItemCount: int32(min(len(ev.GetItems()), 1<<30)), //nolint:gosec // bounded just here
			}}
	}),
	SubjectOutreachSent: decodeWith(func(ev *customerv1.OutreachSent) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindOutreachSent,
			occurTime: ev.GetOccurredAt(), reference: ev.GetDeliveryId(), details: &customerv1.OutreachInteraction{
				DeliveryId: ev.GetDeliveryId(), Channel: ev.GetChannel(), Purpose: ev.GetPurpose(),
				TemplateKey: text(ev.GetTemplateKey()), Attempts: ev.GetAttempts(),
			}}
	}),
	SubjectTicketOpened: decodeWith(func(ev *ticketv1.TicketOpened) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindTicketOpened,
			occurTime: ev.GetOccurredAt(), reference: ev.GetTicketId(), details: &customerv1.TicketInteraction{
				TicketId: ev.GetTicketId(), Number: text(ev.GetNumber()), Category: text(ev.GetCategory()),
				Channel: text(ev.GetChannel()),
			}}
	}),
	SubjectTicketResolved: decodeWith(func(ev *ticketv1.TicketResolved) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindTicketResolved,
			occurTime: ev.GetOccurredAt(), reference: ev.GetTicketId(), agentID: ev.GetAgentId(),
			details: &customerv1.TicketInteraction{
				TicketId: ev.GetTicketId(), Number: text(ev.GetNumber()), Category: text(ev.GetCategory()),
			}}
	}),
	SubjectPointsEarned: decodeWith(func(ev *loyaltyv1.PointsEarned) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindPointsEarned,
			occurTime: ev.GetOccurredAt(), reference: ev.GetEntryId(), details: &customerv1.PointsInteraction{
				EntryId: ev.GetEntryId(), Points: ev.GetPoints(), Reason: text(ev.GetReason()),
			}}
	}),
	SubjectPointsSpent: decodeWith(func(ev *loyaltyv1.PointsSpent) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindPointsSpent,
			occurTime: ev.GetOccurredAt(), reference: ev.GetEntryId(), details: &customerv1.PointsInteraction{
				EntryId: ev.GetEntryId(), Points: ev.GetPoints(), Reason: text(ev.GetReason()),
			}}
	}),
	SubjectCouponIssued: decodeWith(func(ev *loyaltyv1.CouponIssued) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindCouponIssued,
			occurTime: ev.GetOccurredAt(), reference: ev.GetCouponId(), details: &customerv1.CouponInteraction{
				CouponId: ev.GetCouponId(), Title: text(ev.GetTitle()), Reason: text(ev.GetReason()),
			}}
	}),
	SubjectCouponRedeemed: decodeWith(func(ev *loyaltyv1.CouponRedeemed) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindCouponRedeemed,
			occurTime: ev.GetOccurredAt(), reference: ev.GetCouponId(), details: &customerv1.CouponInteraction{
				CouponId: ev.GetCouponId(), Title: text(ev.GetTitle()), OrderReference: text(ev.GetOrderReference()),
			}}
	}),
	SubjectResponseSubmitted: decodeWith(func(ev *surveyv1.ResponseSubmitted) projected {
		return projected{tenantID: ev.GetTenantId(), customerID: ev.GetCustomerId(), kind: kindSurveyAnswered,
			occurTime: ev.GetOccurredAt(), reference: ev.GetResponseId(), details: &customerv1.SurveyInteraction{
				ResponseId: ev.GetResponseId(), SurveyId: ev.GetSurveyId(), SurveyKind: text(ev.GetKind()),
				Score: ev.Score,
			}}
	}),
}

// decodeWith makes a decoder of the payload type M.
func decodeWith[M any, PM interface {
	*M
	proto.Message
}](f func(PM) projected) decoder {
	var zero PM = new(M)
	return decoder{
		message: zero.ProtoReflect().Descriptor().FullName(),
		decode: func(data []byte) (projected, error) {
			ev := PM(new(M))
			if err := proto.Unmarshal(data, ev); err != nil {
				return projected{}, fmt.Errorf("decode %s: %w", zero.ProtoReflect().Descriptor().FullName(), err)
			}
			return f(ev), nil
		},
	}
}

// handle applies one event inside the inbox's transaction. Events it does
// not project are acked and ignored; events that can never be projected
// (undecodable, missing or malformed ids) are parked as permanent failures;
// events about a customer the tenant does not have (never had, or erased)
// are acked with nothing stored: such a customer cannot appear later under
// that id, since ids are minted by the customer service.
func (p *Projector) handle(ctx context.Context, tx pgx.Tx, m inbox.Message) error {
	dec, ok := decoders[m.Subject]
	log := p.log.With("event_id", m.ID, "subject", m.Subject)
	if !ok {
		log.Debug("timeline: subject not projected; ignored")
		return nil
	}
	if m.Type != "" && m.Type != string(dec.message) {
		log.Warn("timeline: unexpected event type; ignored", "type", m.Type, "want", dec.message)
		return nil
	}
	ev, err := dec.decode(m.Data)
	if err != nil {
		return inbox.Permanent(err)
	}
	tenant, err := uuid.Parse(ev.tenantID)
	if err != nil {
		return inbox.Permanent(errors.New("tenant_id is not a UUID"))
	}
	if m.TenantID != "" {
		if h, err := uuid.Parse(m.TenantID); err != nil || h != tenant {
			return inbox.Permanent(errors.New("tenant_id differs from the rapport-tenant header"))
		}
	}
	customer, err := uuid.Parse(ev.customerID)
	if err != nil {
		return inbox.Permanent(errors.New("customer_id is not a UUID"))
	}
	if ev.reference == "" || len(ev.reference) > maxIDLen || !utf8.ValidString(ev.reference) {
		return inbox.Permanent(errors.New("the aggregate id is empty, too long or not UTF-8"))
	}
	if err := ev.occurTime.CheckValid(); err != nil {
		return inbox.Permanent(fmt.Errorf("occurred_at: %w", err))
	}
	if len(m.ID) > maxIDLen {
		return inbox.Permanent(errors.New("event id too long"))
	}
	log = log.With("tenant_id", tenant, "customer_id", customer)

	target, ok, err := p.store.ResolveCustomer(ctx, tx, tenant, customer)
	if err != nil {
		return err
	}
	if !ok {
		log.Info("timeline: no such customer in the tenant (never created, or erased); nothing projected")
		return nil
	}
	details, err := detailsJSON(ev.details)
	if err != nil {
		return inbox.Permanent(err)
	}
	agent := ev.agentID
	if len(agent) > maxAgentIDLen || !utf8.ValidString(agent) {
		agent = "" // shown without an agent rather than not at all
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("new interaction id: %w", err)
	}
	added, err := p.store.Project(ctx, tx, store.Entry{
		TenantID: tenant, ID: id, CustomerID: target, Kind: ev.kind,
		OccurTime: ev.occurTime.AsTime().UTC(), CreateTime: p.cfg.Now().UTC(), AgentID: agent,
		SourceEventID: m.ID, SourceSubject: m.Subject, ReferenceID: ev.reference, Details: details,
	})
	if err != nil {
		return err
	}
	if !added {
		log.Info("timeline: event already projected (replayed past the inbox); nothing added")
	} else if target != customer {
		log.Debug("timeline: event projected onto the customer it was merged into", "merged_into", target)
	}
	return nil
}

// text bounds a display string: valid UTF-8, at most maxTextLen runes.
func text(s string) string {
	if !utf8.ValidString(s) {
		s = string([]rune(s)) // invalid bytes become U+FFFD
	}
	if utf8.RuneCountInString(s) <= maxTextLen {
		return s
	}
	return string([]rune(s)[:maxTextLen])
}
