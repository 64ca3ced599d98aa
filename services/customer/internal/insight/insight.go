// Package insight owns what Rapport learns from purchases without changing
// them: product recommendations for a customer and retention analytics
// (InsightService), and the scheduled refresh of the co-occurrence counts
// recommendations are served from.
//
// Guarantees, and where they come from:
//   - Recommendations are served by one statement over stored tenant
//     aggregates (store.Recommendations): a few primary-key ranges per
//     request, whatever the tenant's size. The counts are per tenant: every
//     query is bounded by the caller's tenant, so another tenant's purchases
//     never move a recommendation.
//   - The counts are rebuilt set-based, one statement per tenant
//     (store.Refresh), on a schedule claimed per tenant with FOR UPDATE SKIP
//     LOCKED in the transaction that refreshes, so any number of replicas
//     refresh each tenant once per round; RefreshRecommendations takes turns
//     with them.
//   - Each report is one statement (queries/retention.sql) with exact
//     integer counts; rates are rounded in SQL from those counts.
//
// It stores no per-customer rows (the counts are numbers of customers per
// item and per pair of items, with pairs of fewer than two customers left
// out), so it has nothing to export, merge or erase. It must not read
// another service's data, and it never builds SQL: the store package holds
// it.
package insight

import (
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/insight/store"
)

// ServiceName is the gRPC service Register adds.
const ServiceName = "rapport.customer.v1.InsightService"

// Defaults of the Server's settings.
const (
	// DefaultWindow is how far back purchases count for co-occurrence.
	DefaultWindow = 365 * 24 * time.Hour
	// defaultRefreshTimeout bounds one tenant's refresh statement.
	defaultRefreshTimeout = 10 * time.Minute
	// minCoBuyers is the fewest customers a stored pair was bought by: a
	// pair bought by one customer is noise, and that customer's basket
	// (migration 00010 checks it).
	minCoBuyers = 2
	// neighbours is how many neighbours each item keeps: a request reads at
	// most page_size + |owned| of them per owned item, so lists are exact
	// while that stays within it and the best 100 otherwise.
	neighbours = 100
	// defaultPageSize and maxPageSize bound ListRecommendations.
	defaultPageSize = 10
	maxPageSize     = 50
)

// Server serves InsightService and runs the scheduled refresh.
type Server struct {
	pool  *pgxpool.Pool
	now   func() time.Time
	store *store.Store

	// Logger receives the scheduled refresh's failures; nil discards them.
	// Set it before RunRefresh.
	Logger *slog.Logger
	// Window is how far back purchases count for co-occurrence and best
	// sellers; 0 means DefaultWindow (365 days). Items a customer bought
	// earlier still count as owned.
	Window time.Duration
	// RefreshTimeout bounds one tenant's refresh statement (the pool's
	// statement timeout is meant for API calls); 0 means 10 minutes.
	RefreshTimeout time.Duration
}

// NewServer returns a Server on the customer schema's pool; now defaults to
// time.Now.
func NewServer(pool *pgxpool.Pool, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{pool: pool, now: now, store: store.New()}
}

// Register adds InsightService to srv.
func (s *Server) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterInsightServiceServer(srv, &insightAPI{s: s})
}

// insightAPI implements customerv1.InsightServiceServer.
type insightAPI struct {
	customerv1.UnimplementedInsightServiceServer
	s *Server
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) window() time.Duration {
	if s.Window <= 0 {
		return DefaultWindow
	}
	return s.Window
}

func (s *Server) refreshTimeout() time.Duration {
	if s.RefreshTimeout <= 0 {
		return defaultRefreshTimeout
	}
	return s.RefreshTimeout
}

// errCustomerNotFound is mapped once by toStatus.
var errCustomerNotFound = errors.New("customer not found")

// fieldError is a request field breaking a rule the request schema cannot
// express (an order between two fields, a range's length).
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
