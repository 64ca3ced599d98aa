// Package timeline owns the customer interaction timeline: TimelineService
// (log a manual interaction, read one, page through a customer's history)
// and the Projector, which turns the other services' events into timeline
// entries.
//
// Guarantees, and where they come from:
//   - A manual entry's summary and body are sealed with the customer's data
//     key (internal/pii) before they reach the database, and the
//     idempotency record of CreateInteraction holds only a keyed fingerprint
//     of the request and the new entry's id: no plaintext is stored anywhere.
//   - Each call that writes or returns that text writes exactly one audit
//     row (privacy/audit, SEC-09) naming the fields, never a value: a create
//     in its transaction, a read before it answers (a read that cannot be
//     audited fails). Entries without text read nothing personal.
//   - Each event becomes at most one entry, however often it is delivered:
//     the inbox row (pkg/inbox) and the entry commit in one transaction, and
//     the event id is also unique per tenant in interactions, so a consumer
//     rebuilt from scratch replays into no duplicates either.
//   - Events carry no personal data, and neither do projected entries.
//
// It must not read another service's data (what it shows of a ticket or a
// coupon is what the event said), and it never builds SQL: the store
// package holds it.
package timeline

import (
	"errors"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// ServiceName is the gRPC service Register adds, for health and readiness.
const ServiceName = "rapport.customer.v1.TimelineService"

// The sealed columns; each is part of its ciphertexts' associated data.
var (
	summaryColumn = pii.Column{Table: "interactions", Name: "summary_sealed"}
	bodyColumn    = pii.Column{Table: "interactions", Name: "body_sealed"}
)

// maxClockSkew is how far ahead of the server's clock an occur_time may be:
// a desk's clock may run a little fast, never hours.
const maxClockSkew = 5 * time.Minute

// maxAgentIDLen is the longest agent id stored (the column's CHECK).
const maxAgentIDLen = 200

// Server serves TimelineService.
type Server struct {
	pool   *pgxpool.Pool
	sealer *pii.Sealer
	now    func() time.Time
	store  *store.Store
}

// NewServer returns a Server on the customer schema's pool; now defaults to
// time.Now.
func NewServer(pool *pgxpool.Pool, sealer *pii.Sealer, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{pool: pool, sealer: sealer, now: now, store: store.New()}
}

// Register adds TimelineService to srv.
func (s *Server) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterTimelineServiceServer(srv, &api{s: s})
}

// Domain errors; toStatus maps them once.
var (
	errCustomerNotFound    = errors.New("customer not found")
	errInteractionNotFound = errors.New("interaction not found")
)

// fieldError is a request field breaking a rule the request schema cannot
// express; field is its path in the request, e.g. "interaction.direction".
type fieldError struct {
	field  string
	reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

// toStatus maps domain errors to statuses; others pass on to grpcx's
// mapping (INTERNAL with the cause logged).
func toStatus(err error) error {
	var fe *fieldError
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fe.field, Description: fe.reason})
	case errors.Is(err, errCustomerNotFound):
		return grpcx.NotFound("customer")
	case errors.Is(err, errInteractionNotFound):
		return grpcx.NotFound("interaction")
	}
	return err
}

// parseID parses a UUID request field (protovalidate has checked its form;
// this guards direct calls).
func parseID(field, v string) (uuid.UUID, error) {
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: field, Description: "must be a UUID"})
	}
	return id, nil
}

// Kinds are stored by their lower-case names: INTERACTION_KIND_TICKET_OPENED
// is "ticket_opened".
const kindPrefix = "INTERACTION_KIND_"

// Stored kind names.
const (
	kindNote           = "note"
	kindCall           = "call"
	kindVisit          = "visit"
	kindEmail          = "email"
	kindChat           = "chat"
	kindTicketOpened   = "ticket_opened"
	kindTicketResolved = "ticket_resolved"
	kindPurchase       = "purchase"
	kindPointsEarned   = "points_earned"
	kindPointsSpent    = "points_spent"
	kindCouponIssued   = "coupon_issued"
	kindCouponRedeemed = "coupon_redeemed"
	kindSurveyAnswered = "survey_answered"
	kindOutreachSent   = "outreach_sent"
)

// manualKinds are the kinds CreateInteraction takes.
var manualKinds = map[string]bool{kindNote: true, kindCall: true, kindVisit: true, kindEmail: true, kindChat: true}

func kindName(k customerv1.InteractionKind) string {
	if k == customerv1.InteractionKind_INTERACTION_KIND_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.InteractionKind_name[int32(k)]; !ok {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), kindPrefix))
}

func kindValue(name string) customerv1.InteractionKind {
	return customerv1.InteractionKind(customerv1.InteractionKind_value[kindPrefix+strings.ToUpper(name)])
}

// Directions are stored as "inbound", "outbound" or "".
const directionPrefix = "INTERACTION_DIRECTION_"

func directionName(d customerv1.InteractionDirection) string {
	if d == customerv1.InteractionDirection_INTERACTION_DIRECTION_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.InteractionDirection_name[int32(d)]; !ok {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(d.String(), directionPrefix))
}

func directionValue(name string) customerv1.InteractionDirection {
	if name == "" {
		return customerv1.InteractionDirection_INTERACTION_DIRECTION_UNSPECIFIED
	}
	return customerv1.InteractionDirection(customerv1.InteractionDirection_value[directionPrefix+strings.ToUpper(name)])
}
