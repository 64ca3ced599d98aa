// Package store keeps the interaction timeline in the customer schema. It
// owns the interactions table's SQL (queries/*.sql, compiled by sqlc into
// dbgen) and the plain record type its methods take and return: dbgen rows
// never leave it, and nothing here knows protobuf or encryption (sealed
// text goes in and out as bytes).
//
// Every method takes the database handle to run on (the pool, or the
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
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store/dbgen"
)

// ErrNotFound means no such row in the tenant.
var ErrNotFound = errors.New("not found")

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Entry is one row of a customer's timeline.
type Entry struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	CustomerID uuid.UUID
	Kind       string // note, call, …, ticket_opened, … (the CHECK in 00006 lists them)
	OccurTime  time.Time
	CreateTime time.Time
	AgentID    string
	Direction  string // "", inbound, outbound
	// Sealed text of a manual entry; nil when empty or erased.
	SummarySealed []byte
	BodySealed    []byte
	// Projected entries: the event's id and subject ("" for manual ones),
	// the projected aggregate's id, and the kind's attributes as protobuf
	// JSON (an object).
	SourceEventID string
	SourceSubject string
	ReferenceID   string
	Details       []byte
}

// Cursor is a keyset position in a timeline ordered by (Time, ID)
// descending; the zero Cursor is the start.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Sealed is the sealed text of one entry, for a merge's re-sealing.
type Sealed struct {
	ID         uuid.UUID
	CustomerID uuid.UUID
	Summary    []byte
	Body       []byte
}

// Store runs the queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// CustomerLive reports whether the customer exists in the tenant and has not
// been erased.
func (s *Store) CustomerLive(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (bool, error) {
	ok, err := s.q.InteractionCustomerLive(ctx, db, dbgen.InteractionCustomerLiveParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return false, interpret("look up customer", err)
	}
	return ok, nil
}

// CustomerForWrite reports, holding the customer's row until tx ends,
// whether the customer exists in the tenant and has not been erased, and the
// customer it was merged into (uuid.Nil if none).
func (s *Store) CustomerForWrite(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (live bool, mergedInto uuid.UUID, err error) {
	row, err := s.q.InteractionCustomerForWrite(ctx, db, dbgen.InteractionCustomerForWriteParams{TenantID: tenantID, CustomerID: customerID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, uuid.Nil, nil
	}
	if err != nil {
		return false, uuid.Nil, interpret("look up customer", err)
	}
	return row.Live, row.MergedInto.UUID, nil
}

// ResolveCustomer returns the live customer an event about customerID
// belongs to (itself, or the customer it was merged into); false if there is
// none in the tenant.
func (s *Store) ResolveCustomer(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (uuid.UUID, bool, error) {
	id, err := s.q.InteractionResolveCustomer(ctx, db, dbgen.InteractionResolveCustomerParams{TenantID: tenantID, CustomerID: customerID})
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, interpret("resolve customer", err)
	}
	return id, true, nil
}

// Insert stores a manual entry.
func (s *Store) Insert(ctx context.Context, db DB, e Entry) (Entry, error) {
	row, err := s.q.InteractionInsert(ctx, db, dbgen.InteractionInsertParams{
		TenantID: e.TenantID, ID: e.ID, CustomerID: e.CustomerID, Kind: e.Kind,
		OccurTime: e.OccurTime, CreateTime: e.CreateTime, AgentID: e.AgentID, Direction: e.Direction,
		SummarySealed: e.SummarySealed, BodySealed: e.BodySealed,
	})
	if err != nil {
		return Entry{}, interpret("insert interaction", err)
	}
	return fromRow(row), nil
}

// Project stores an entry projected from an event and reports whether it
// was new: false means the tenant already has the entry of that event.
func (s *Store) Project(ctx context.Context, db DB, e Entry) (bool, error) {
	details := e.Details
	if len(details) == 0 {
		details = []byte("{}")
	}
	n, err := s.q.InteractionProject(ctx, db, dbgen.InteractionProjectParams{
		TenantID: e.TenantID, ID: e.ID, CustomerID: e.CustomerID, Kind: e.Kind,
		OccurTime: e.OccurTime, CreateTime: e.CreateTime, AgentID: e.AgentID,
		SourceEventID: pgtype.Text{String: e.SourceEventID, Valid: true},
		SourceSubject: pgtype.Text{String: e.SourceSubject, Valid: true},
		ReferenceID:   e.ReferenceID, Details: details,
	})
	if err != nil {
		return false, interpret("project interaction", err)
	}
	return n == 1, nil
}

// Get returns one entry of a customer.
func (s *Store) Get(ctx context.Context, db DB, tenantID, customerID, id uuid.UUID) (Entry, error) {
	row, err := s.q.InteractionGet(ctx, db, dbgen.InteractionGetParams{TenantID: tenantID, CustomerID: customerID, ID: id})
	if err != nil {
		return Entry{}, interpret("get interaction", err)
	}
	return fromRow(row), nil
}

// List returns up to limit entries of a customer after the cursor, newest
// first, of the given kinds (all if none).
func (s *Store) List(ctx context.Context, db DB, tenantID, customerID uuid.UUID, kinds []string, after Cursor, limit int) ([]Entry, error) {
	if after.Time.IsZero() {
		after = Cursor{Time: infinity, ID: uuid.Max}
	}
	if kinds == nil {
		kinds = []string{}
	}
	rows, err := s.q.InteractionList(ctx, db, dbgen.InteractionListParams{
		TenantID: tenantID, CustomerID: customerID, BeforeTime: after.Time, BeforeID: after.ID,
		Kinds: kinds, RowLimit: int32(min(limit, 1<<30)), //nolint:gosec // bounded just above
	})
	if err != nil {
		return nil, interpret("list interactions", err)
	}
	return fromRows(rows), nil
}

// All returns a customer's whole timeline, newest first.
func (s *Store) All(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Entry, error) {
	rows, err := s.q.InteractionsOfCustomer(ctx, db, dbgen.InteractionsOfCustomerParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list customer's interactions", err)
	}
	return fromRows(rows), nil
}

// SealedOf returns, locked for the rest of tx, the entries of the customers
// that hold sealed text.
func (s *Store) SealedOf(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, customerIDs []uuid.UUID) ([]Sealed, error) {
	rows, err := s.q.InteractionsSealedOf(ctx, tx, dbgen.InteractionsSealedOfParams{TenantID: tenantID, CustomerIds: customerIDs})
	if err != nil {
		return nil, interpret("read sealed interactions", err)
	}
	out := make([]Sealed, len(rows))
	for i, r := range rows {
		out[i] = Sealed{ID: r.ID, CustomerID: r.CustomerID, Summary: r.SummarySealed, Body: r.BodySealed}
	}
	return out, nil
}

// Reseal replaces the sealed text of the given entries, in one statement.
func (s *Store) Reseal(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, entries []Sealed) error {
	if len(entries) == 0 {
		return nil
	}
	p := dbgen.InteractionsResealParams{TenantID: tenantID, Ids: make([]uuid.UUID, len(entries)),
		SummariesSealed: make([][]byte, len(entries)), BodiesSealed: make([][]byte, len(entries))}
	for i, e := range entries {
		p.Ids[i], p.SummariesSealed[i], p.BodiesSealed[i] = e.ID, e.Summary, e.Body
	}
	if err := s.q.InteractionsReseal(ctx, tx, p); err != nil {
		return interpret("reseal interactions", err)
	}
	return nil
}

// Move re-points the sources' entries to the primary and returns how many.
func (s *Store) Move(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	n, err := s.q.InteractionsMove(ctx, tx, dbgen.InteractionsMoveParams{TenantID: tenantID, PrimaryID: primary, SourceIds: sources})
	if err != nil {
		return 0, interpret("move interactions", err)
	}
	return n, nil
}

// Forget drops the sealed text of a customer's entries and returns how many
// entries had some.
func (s *Store) Forget(ctx context.Context, tx pgx.Tx, tenantID, customerID uuid.UUID) (int64, error) {
	n, err := s.q.InteractionsForget(ctx, tx, dbgen.InteractionsForgetParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return 0, interpret("forget interactions", err)
	}
	return n, nil
}

func fromRows(rows []dbgen.Interaction) []Entry {
	out := make([]Entry, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out
}

func fromRow(r dbgen.Interaction) Entry {
	return Entry{
		TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, Kind: r.Kind,
		OccurTime: r.OccurTime.UTC(), CreateTime: r.CreateTime.UTC(), AgentID: r.AgentID, Direction: r.Direction,
		SummarySealed: r.SummarySealed, BodySealed: r.BodySealed,
		SourceEventID: r.SourceEventID.String, SourceSubject: r.SourceSubject.String,
		ReferenceID: r.ReferenceID, Details: r.Details,
	}
}

// infinity sorts after every stored time (a keyset start).
var infinity = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// interpret classifies a database error once; a missing row is ErrNotFound.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
