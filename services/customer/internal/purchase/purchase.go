// Package purchase owns what customers bought and the value segments that
// follow from it: PurchaseService (record, get, list purchases) and
// SegmentService (RFM segments, the tenant's thresholds, recomputes), and the
// scheduled recompute every replica may run.
//
// Guarantees, and where they come from:
//   - A purchase is recorded once per (tenant, order reference), for ever:
//     the unique key in purchases, not the request id, which expires. A
//     replay returns the first purchase if it is the same purchase and
//     ALREADY_EXISTS if it is not (request_hash tells them apart).
//   - A purchase, its purchase.recorded event, the customer's new segment
//     and its segment.changed event commit in one transaction.
//   - Segments are computed set-based, by one SQL statement per recompute
//     (store.Recompute), for one customer on a purchase and for a whole
//     tenant on a schedule or on request. segment.changed is written once per
//     change of a stored segment, never for a recompute that changes nothing.
//   - Scheduled rounds are claimed per tenant with FOR UPDATE SKIP LOCKED in
//     the transaction that recomputes, so any number of replicas run each
//     tenant once per round.
//
// It must not read another service's data, and it never builds SQL: the
// store package holds it.
package purchase

import (
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store"
)

// Event subjects, per DESIGN.md: rapport.<service>.<aggregate>.<event>.
const (
	SubjectPurchaseRecorded = "rapport.customer.purchase.recorded"
	SubjectSegmentChanged   = "rapport.customer.segment.changed"

	aggregatePurchase = "purchase"
	aggregateSegment  = "customer_segment"
)

// ReasonOrderReferenceUsed is the ErrorInfo reason of an order reference
// replayed with a different purchase.
const ReasonOrderReferenceUsed = "ORDER_REFERENCE_ALREADY_USED"

// defaultRecomputeTimeout bounds one tenant's recompute statement.
const defaultRecomputeTimeout = 10 * time.Minute

// Server serves PurchaseService and SegmentService and runs the scheduled
// recompute.
type Server struct {
	pool  *pgxpool.Pool
	now   func() time.Time
	store *store.Store

	// Logger receives the scheduled recompute's failures; nil discards
	// them. Set it before RunRecompute.
	Logger *slog.Logger
	// RecomputeTimeout bounds one tenant's recompute (a single statement
	// that may run long for a large tenant; the pool's statement timeout is
	// meant for API calls); 0 means 10 minutes.
	RecomputeTimeout time.Duration
}

// NewServer returns a Server on the customer schema's pool; now defaults to
// time.Now.
func NewServer(pool *pgxpool.Pool, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{pool: pool, now: now, store: store.New()}
}

// Register adds PurchaseService and SegmentService to srv.
func (s *Server) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterPurchaseServiceServer(srv, &purchaseAPI{s: s})
	customerv1.RegisterSegmentServiceServer(srv, &segmentAPI{s: s})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) recomputeTimeout() time.Duration {
	if s.RecomputeTimeout <= 0 {
		return defaultRecomputeTimeout
	}
	return s.RecomputeTimeout
}

// Domain errors; toStatus maps them once.
var (
	errCustomerNotFound   = errors.New("customer not found")
	errPurchaseNotFound   = errors.New("purchase not found")
	errOrderReferenceUsed = errors.New("order reference already used by another purchase")
)

// customerMergedError refuses a purchase for a customer merged into another.
type customerMergedError struct{ id, into uuid.UUID }

func (e *customerMergedError) Error() string { return "customer merged into another" }

// fieldError is a request field breaking a rule the request schema cannot
// express; field is its path in the request, e.g. "purchase.items[0].unit_price".
type fieldError struct {
	field  string
	reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

// toStatus maps domain errors to statuses; others pass on to grpcx's
// mapping (INTERNAL with the cause logged).
func toStatus(err error) error {
	var (
		fe *fieldError
		me *customerMergedError
	)
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fe.field, Description: fe.reason})
	case errors.As(err, &me):
		return lifecycle.MergedError(me.id, me.into)
	case errors.Is(err, errCustomerNotFound):
		return grpcx.NotFound("customer")
	case errors.Is(err, errPurchaseNotFound):
		return grpcx.NotFound("purchase")
	case errors.Is(err, errOrderReferenceUsed):
		st := status.New(codes.AlreadyExists,
			"purchase.order_reference: already used by another purchase; a replay must repeat the first purchase exactly")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{
			Reason: ReasonOrderReferenceUsed, Domain: grpcx.ErrorDomain,
			Metadata: map[string]string{"field": "purchase.order_reference"},
		}); derr == nil {
			st = d
		}
		return st.Err()
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
