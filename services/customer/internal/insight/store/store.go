// Package store holds the insight package's SQL: the stored co-occurrence
// counts and their refresh schedule, and the read-only analytics over
// purchases and segments (queries/*.sql, compiled by sqlc into dbgen). dbgen
// rows never leave it and nothing here knows protobuf.
//
// Every method takes the database handle to run on (the pool or the
// caller's transaction), so the caller decides what commits together.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/insight/store/dbgen"
)

// ErrNotFound means no such row in the tenant.
var ErrNotFound = errors.New("not found")

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Store runs the queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// Kind says where a recommendation comes from.
type Kind int

// Kinds, in the order a list shows them.
const (
	KindTogether   Kind = 1 // co-occurrence with an item the customer bought
	KindBestSeller Kind = 2 // filler: the tenant's best sellers
)

// Recommendation is one recommended item.
type Recommendation struct {
	Kind      Kind
	SKU       string
	Category  string
	Buyers    int64
	AnchorSKU string  // KindTogether only
	CoBuyers  int64   // KindTogether only
	Score     float64 // KindTogether only
}

// RefreshParams selects what a refresh counts.
type RefreshParams struct {
	TenantID    uuid.UUID
	WindowStart time.Time
	MinCoBuyers int64
	Neighbours  int32
}

// Refreshed is what a refresh stored.
type Refreshed struct{ Items, Pairs int64 }

// Refresh replaces the tenant's stored counts with ones computed from its
// purchases now, in tx (RecommendationRefresh).
func (s *Store) Refresh(ctx context.Context, tx pgx.Tx, p RefreshParams) (Refreshed, error) {
	if err := s.q.RecommendationClearPairs(ctx, tx, p.TenantID); err != nil {
		return Refreshed{}, interpret("clear recommendation pairs", err)
	}
	if err := s.q.RecommendationClearItems(ctx, tx, p.TenantID); err != nil {
		return Refreshed{}, interpret("clear recommendation items", err)
	}
	row, err := s.q.RecommendationRefresh(ctx, tx, dbgen.RecommendationRefreshParams{
		TenantID: p.TenantID, WindowStart: p.WindowStart, MinCoBuyers: p.MinCoBuyers, Neighbours: p.Neighbours,
	})
	if err != nil {
		return Refreshed{}, interpret("refresh recommendations", err)
	}
	return Refreshed{Items: row.Items, Pairs: row.Pairs}, nil
}

// Recommendations returns up to limit recommendations for the customer, best
// first, and when the counts were computed (zero if never). No rows means the
// customer is not the tenant's, or the tenant has no stored counts
// (CustomerExists tells which).
func (s *Store) Recommendations(ctx context.Context, db DB, tenantID, customerID uuid.UUID, limit int) ([]Recommendation, time.Time, error) {
	rows, err := s.q.RecommendationList(ctx, db, dbgen.RecommendationListParams{
		TenantID: tenantID, CustomerID: customerID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, time.Time{}, interpret("list recommendations", err)
	}
	var refreshed time.Time
	out := make([]Recommendation, len(rows))
	for i, r := range rows {
		out[i] = Recommendation{Kind: Kind(r.Kind), SKU: r.Sku, Category: r.Category, Buyers: r.Buyers,
			AnchorSKU: r.AnchorSku, CoBuyers: r.CoBuyers, Score: r.Score}
		refreshed = timeOrZero(r.RefreshTime)
	}
	return out, refreshed, nil
}

// CustomerExists reports whether the customer is the tenant's, the
// customer it was merged into (uuid.Nil if none), and when the tenant's
// counts were computed (zero if never).
func (s *Store) CustomerExists(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (exists bool, mergedInto uuid.UUID, refreshed time.Time, err error) {
	row, err := s.q.RecommendationCustomerExists(ctx, db, dbgen.RecommendationCustomerExistsParams{
		TenantID: tenantID, CustomerID: customerID,
	})
	if err != nil {
		return false, uuid.Nil, time.Time{}, interpret("look up customer", err)
	}
	return row.CustomerExists, row.MergedInto.UUID, timeOrZero(row.RefreshTime), nil
}

func timeOrZero(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// Schedule is a tenant's refresh schedule.
type Schedule struct {
	NextRunTime time.Time
	LastRunTime time.Time // zero before the first refresh
	Rounds      int64
	Refreshed
}

// Schedule returns the tenant's schedule row; ErrNotFound if it has none.
func (s *Store) Schedule(ctx context.Context, db DB, tenantID uuid.UUID) (Schedule, error) {
	row, err := s.q.RecommendationScheduleGet(ctx, db, tenantID)
	if err != nil {
		return Schedule{}, interpret("get recommendation schedule", err)
	}
	out := Schedule{NextRunTime: row.NextRunTime.UTC(), Rounds: row.Rounds, Refreshed: Refreshed{Items: row.Items, Pairs: row.Pairs}}
	out.LastRunTime = timeOrZero(row.LastRunTime)
	return out, nil
}

// Enrol puts every tenant with a purchase on the schedule, due now, unless
// it is there already, and returns how many it added.
func (s *Store) Enrol(ctx context.Context, db DB, now time.Time) (int64, error) {
	n, err := s.q.RecommendationScheduleEnrol(ctx, db, now)
	if err != nil {
		return 0, interpret("enrol tenants for recommendation refresh", err)
	}
	return n, nil
}

// ClaimDue claims one tenant whose refresh is due, for the rest of tx,
// skipping tenants other transactions hold; false if none is due. The
// transaction's statement timeout becomes timeout.
func (s *Store) ClaimDue(ctx context.Context, tx pgx.Tx, now time.Time, timeout time.Duration) (uuid.UUID, bool, error) {
	row, err := s.q.RecommendationScheduleClaim(ctx, tx, dbgen.RecommendationScheduleClaimParams{
		Now: now, StatementTimeout: fmt.Sprint(timeout.Milliseconds()),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, interpret("claim due recommendation refresh", err)
	}
	return row.TenantID, true, nil
}

// LockSchedule adds the tenant to the schedule if it is not there and takes
// its row for the rest of tx, waiting for a round in progress; the
// transaction's statement timeout becomes timeout.
func (s *Store) LockSchedule(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now time.Time, timeout time.Duration) error {
	if err := s.q.RecommendationScheduleAdd(ctx, tx, dbgen.RecommendationScheduleAddParams{TenantID: tenantID, Now: now}); err != nil {
		return interpret("schedule recommendation refresh", err)
	}
	if _, err := s.q.RecommendationScheduleLock(ctx, tx, dbgen.RecommendationScheduleLockParams{
		TenantID: tenantID, StatementTimeout: fmt.Sprint(timeout.Milliseconds()),
	}); err != nil {
		return interpret("lock recommendation schedule", err)
	}
	return nil
}

// FinishRound records a refresh; next zero keeps the due time (an
// unscheduled refresh), otherwise the next round is due then.
func (s *Store) FinishRound(ctx context.Context, db DB, tenantID uuid.UUID, now, next time.Time, r Refreshed) error {
	arg := dbgen.RecommendationScheduleDoneParams{TenantID: tenantID, Now: now, Items: r.Items, Pairs: r.Pairs}
	if !next.IsZero() {
		arg.NextRunTime = pgtype.Timestamptz{Time: next, Valid: true}
	}
	if err := s.q.RecommendationScheduleDone(ctx, db, arg); err != nil {
		return interpret("finish recommendation refresh", err)
	}
	return nil
}

// Postpone makes the tenant's next refresh due no earlier than next.
func (s *Store) Postpone(ctx context.Context, db DB, tenantID uuid.UUID, next time.Time) error {
	if err := s.q.RecommendationSchedulePostpone(ctx, db, dbgen.RecommendationSchedulePostponeParams{
		TenantID: tenantID, NextRunTime: next,
	}); err != nil {
		return interpret("postpone recommendation refresh", err)
	}
	return nil
}

// NextDue returns the earliest due refresh; false if no tenant is scheduled.
func (s *Store) NextDue(ctx context.Context, db DB) (time.Time, bool, error) {
	t, err := s.q.RecommendationScheduleNextDue(ctx, db)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, interpret("next due recommendation refresh", err)
	}
	return t.UTC(), true, nil
}

// CohortParams select a cohort table. Months are numbered year*12 + month-1.
type CohortParams struct {
	TenantID    uuid.UUID
	FirstMonth  int32
	LastMonth   int32
	MonthsAfter int32
	NowMonth    int32
	Segment     string // "" for everyone
}

// CohortCell is one cohort month and offset.
type CohortCell struct {
	Cohort        int32
	Offset        int32
	Begun         bool // the month has started
	Complete      bool // the month has ended
	Size          int64
	Retained      int64
	RetentionRate float64
	ChurnRate     float64
}

// Cohorts returns every cohort month and offset, in order (RetentionCohorts).
func (s *Store) Cohorts(ctx context.Context, db DB, p CohortParams) ([]CohortCell, error) {
	rows, err := s.q.RetentionCohorts(ctx, db, dbgen.RetentionCohortsParams{
		TenantID: p.TenantID, FirstMonth: p.FirstMonth, LastMonth: p.LastMonth, MonthsAfter: p.MonthsAfter,
		NowMonth: p.NowMonth, Segment: p.Segment, Horizon: MonthStart(p.LastMonth + p.MonthsAfter + 1),
	})
	if err != nil {
		return nil, interpret("retention cohorts", err)
	}
	out := make([]CohortCell, len(rows))
	for i, r := range rows {
		out[i] = CohortCell{Cohort: r.Cohort, Offset: r.K, Begun: r.Begun, Complete: r.Complete, Size: r.Size,
			Retained: r.Retained, RetentionRate: r.RetentionRate, ChurnRate: r.ChurnRate}
	}
	return out, nil
}

// MonthStart is the first instant (UTC) of month number m.
func MonthStart(m int32) time.Time {
	return time.Date(int(m/12), time.Month(m%12+1), 1, 0, 0, 0, 0, time.UTC)
}

// MetricsParams select the customer metrics of [Start, End), with churn
// against [PreviousStart, Start).
type MetricsParams struct {
	TenantID      uuid.UUID
	PreviousStart time.Time
	Start         time.Time
	End           time.Time
	Segment       string // "" for everyone
}

// Metrics are one group's figures.
type Metrics struct {
	Total          bool   // the row over every group
	Segment        string // "" for customers without a segment
	Active         int64
	Purchases      int64
	Repeaters      int64
	PreviousActive int64
	Churned        int64
	RepeatRate     float64
	Frequency      float64
	ChurnRate      float64
}

// Metrics returns the total row first, then one per segment by name.
func (s *Store) Metrics(ctx context.Context, db DB, p MetricsParams) ([]Metrics, error) {
	rows, err := s.q.CustomerMetrics(ctx, db, dbgen.CustomerMetricsParams{
		TenantID: p.TenantID, PreviousStart: p.PreviousStart, StartTime: p.Start, EndTime: p.End, Segment: p.Segment,
	})
	if err != nil {
		return nil, interpret("customer metrics", err)
	}
	out := make([]Metrics, len(rows))
	for i, r := range rows {
		out[i] = Metrics{Total: r.IsTotal, Segment: r.Segment, Active: r.Active, Purchases: r.Purchases,
			Repeaters: r.Repeaters, PreviousActive: r.PreviousActive, Churned: r.Churned,
			RepeatRate: r.RepeatRate, Frequency: r.Frequency, ChurnRate: r.ChurnRate}
	}
	return out, nil
}

// interpret classifies a database error once; a missing row is ErrNotFound.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
