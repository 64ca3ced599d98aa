// Package care owns the care calendar and care plans: CareService (tenant
// settings, the holiday calendar, the recorded occasions, plans of tasks for
// staff), the scheduler that finds due occasions and publishes
// rapport.customer.care.due, and the consumer of resolved tickets whose
// follow-ups it schedules.
//
// Guarantees, and where they come from:
//   - An occasion (a customer's birthday in a year, a holiday on a date,
//     the follow-up of one purchase or ticket, an anniversary in a year)
//     fires exactly once, however many replicas run the scheduler: it is a
//     row unique by (tenant, customer, kind, occasion key), inserted with ON
//     CONFLICT DO NOTHING, and its care.due event is written for the rows
//     the insert returned, in the same transaction. Rounds are also claimed
//     per tenant (FOR UPDATE SKIP LOCKED), so replicas share the work
//     instead of repeating it.
//   - Occasions are computed set-based: one INSERT ... SELECT per kind and
//     tenant (store.InsertDue), never a loop over customers. A holiday
//     reads every customer of the tenant, so the round that finds its date
//     over in every zone (after recording its occasions) records the date
//     as done (care_holiday_dates_done) and later rounds skip it: a holiday
//     costs a full scan per round only while it is still falling due
//     somewhere, not for the rest of the catch-up window.
//   - Dates are the customer's: an occasion is due at the tenant's due hour
//     of its date in the customer's zone (the tenant's default zone when
//     the customer's is empty or unknown, UTC when that is too). A Feb 29
//     birthday falls on Feb 28 in common years.
//   - A scheduler that was down catches up on what became due within
//     CatchUp (3 days by default), never on older occasions (last year's
//     birthday stays missed), and never on occasions dated before the
//     customer existed.
//   - Titles and outcome notes of plans are free text about a person: they
//     are sealed with the customer's data key (internal/pii), so erasing
//     the customer shreds them, and idempotent responses holding them are
//     stored sealed too. Each call that writes or returns them writes
//     exactly one audit row (privacy/audit, SEC-09) naming the customers
//     and the fields, never a value: a change in its transaction, a read
//     before it answers (a read that cannot be audited fails).
//
// It must not read another service's data (resolved tickets arrive as
// events), and it never builds SQL: the store package holds it.
package care

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// SubjectCareDue is the subject of CareDue, per DESIGN.md:
// rapport.<service>.<aggregate>.<event>.
const SubjectCareDue = "rapport.customer.care.due"

const aggregateOccasion = "care_occasion"

// ReasonTaskAlreadyCompleted is the ErrorInfo reason of completing a task
// that is done.
const ReasonTaskAlreadyCompleted = "CARE_TASK_ALREADY_COMPLETED"

// Defaults.
const (
	// DefaultCatchUp is how far back a round looks for occasions it has not
	// recorded: a scheduler down for less than this misses nothing.
	DefaultCatchUp = 72 * time.Hour
	// defaultRoundTimeout bounds one tenant's round.
	defaultRoundTimeout = 10 * time.Minute
	// eventBatch is how many care.due events go to one outbox.Write call.
	eventBatch = 500
)

// Sealed columns: free text about a person, bound into each ciphertext's
// associated data.
var (
	colPlanTitle   = pii.Column{Table: "care_plans", Name: "title"}
	colTaskTitle   = pii.Column{Table: "care_tasks", Name: "title"}
	colOutcomeNote = pii.Column{Table: "care_tasks", Name: "outcome_note"}
)

// Server serves CareService, runs the scheduler and consumes resolved
// tickets.
type Server struct {
	pool   *pgxpool.Pool
	sealer *pii.Sealer
	now    func() time.Time
	store  *store.Store

	// Logger receives the scheduler's failures; nil discards them. Set it
	// before Run.
	Logger *slog.Logger
	// CatchUp is how far back a round records occasions it missed; 0
	// means DefaultCatchUp.
	CatchUp time.Duration
	// RoundTimeout bounds one tenant's round; 0 means 10 minutes.
	RoundTimeout time.Duration

	zonesMu sync.Mutex
	zones   []string
	zoneSet map[string]bool
}

// NewServer returns a Server on the customer schema's pool, sealing with
// sealer; now defaults to time.Now.
func NewServer(pool *pgxpool.Pool, sealer *pii.Sealer, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{pool: pool, sealer: sealer, now: now, store: store.New()}
}

// Register adds CareService to srv.
func (s *Server) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterCareServiceServer(srv, &careAPI{s: s})
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) catchUp() time.Duration {
	if s.CatchUp <= 0 {
		return DefaultCatchUp
	}
	return s.CatchUp
}

func (s *Server) roundTimeout() time.Duration {
	if s.RoundTimeout <= 0 {
		return defaultRoundTimeout
	}
	return s.RoundTimeout
}

// timeZones returns the zone names the database knows, read once: the
// scheduler evaluates dates in PostgreSQL, so a zone counts as valid when
// PostgreSQL has it.
func (s *Server) timeZones(ctx context.Context) ([]string, map[string]bool, error) {
	s.zonesMu.Lock()
	defer s.zonesMu.Unlock()
	if s.zones != nil {
		return s.zones, s.zoneSet, nil
	}
	zones, err := s.store.TimeZones(ctx, s.pool)
	if err != nil {
		return nil, nil, err
	}
	set := make(map[string]bool, len(zones))
	for _, z := range zones {
		set[z] = true
	}
	s.zones, s.zoneSet = zones, set
	return zones, set, nil
}

// Domain errors; toStatus maps them once.
var (
	errCustomerNotFound = errors.New("customer not found")
	errHolidayNotFound  = errors.New("holiday not found")
	errPlanNotFound     = errors.New("care plan not found")
	errTaskNotFound     = errors.New("care task not found")
	errTaskDone         = errors.New("care task already completed")
)

// fieldError is a request field breaking a rule the request schema cannot
// express.
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
	case errors.Is(err, errHolidayNotFound):
		return grpcx.NotFound("holiday")
	case errors.Is(err, errPlanNotFound):
		return grpcx.NotFound("care plan")
	case errors.Is(err, errTaskNotFound):
		return grpcx.NotFound("care task")
	case errors.Is(err, errTaskDone):
		return grpcx.FailedPrecondition(ReasonTaskAlreadyCompleted, "the care task is already completed")
	}
	return err
}

// parseID parses a UUID request field (protovalidate has checked its form;
// this guards direct calls).
func parseID(field, v string) (uuid.UUID, error) {
	id, err := uuid.Parse(v)
	if err != nil {
		return uuid.Nil, toStatus(&fieldError{field: field, reason: "must be a UUID"})
	}
	return id, nil
}
