// Package store keeps the privacy tables (the audit log, the suppression
// list) and the erasure's statements on the customer row in the customer
// schema. sqlc rows never leave it; every method runs on the DB it is given,
// so the caller decides the transaction.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store/dbgen"
)

// ErrNotFound is a missing customer.
var ErrNotFound = errors.New("not found")

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Store runs the privacy queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// AuditEntry is one audit row.
type AuditEntry struct {
	TenantID       uuid.UUID
	ID             uuid.UUID
	OccurTime      time.Time // set by the database on insert
	ActorSubject   string
	ActorRoles     []string
	Action         string
	Method         string
	CustomerIDs    []uuid.UUID
	Fields         []string
	RequestID      string
	IdempotencyKey uuid.UUID // uuid.Nil: none
}

// InsertAudit appends e to the audit log.
func (s *Store) InsertAudit(ctx context.Context, db DB, e AuditEntry) error {
	roles, ids, fields := e.ActorRoles, e.CustomerIDs, e.Fields
	if roles == nil {
		roles = []string{}
	}
	if ids == nil {
		ids = []uuid.UUID{}
	}
	if fields == nil {
		fields = []string{}
	}
	err := s.q.AuditInsert(ctx, db, dbgen.AuditInsertParams{
		TenantID: e.TenantID, ID: e.ID, ActorSubject: e.ActorSubject, ActorRoles: roles, Action: e.Action,
		Method: e.Method, CustomerIds: ids, Fields: fields, RequestID: e.RequestID,
		IdempotencyKey: uuid.NullUUID{UUID: e.IdempotencyKey, Valid: e.IdempotencyKey != uuid.Nil},
	})
	if err != nil {
		return fmt.Errorf("write audit row: %w", pgdb.Classify(err))
	}
	return nil
}

// ListAudit returns up to limit rows of the tenant older than before
// (uuid.Nil: from the newest), newest first; customer narrows them to one
// customer's (uuid.Nil: all).
func (s *Store) ListAudit(ctx context.Context, db DB, tenantID, customer, before uuid.UUID, limit int) ([]AuditEntry, error) {
	rows, err := s.q.AuditList(ctx, db, dbgen.AuditListParams{
		TenantID:   tenantID,
		CustomerID: uuid.NullUUID{UUID: customer, Valid: customer != uuid.Nil},
		BeforeID:   uuid.NullUUID{UUID: before, Valid: before != uuid.Nil},
		RowLimit:   int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, fmt.Errorf("list audit rows: %w", pgdb.Classify(err))
	}
	out := make([]AuditEntry, len(rows))
	for i, r := range rows {
		out[i] = AuditEntry{
			TenantID: r.TenantID, ID: r.ID, OccurTime: r.OccurTime.UTC(), ActorSubject: r.ActorSubject,
			ActorRoles: r.ActorRoles, Action: r.Action, Method: r.Method, CustomerIDs: r.CustomerIds,
			Fields: r.Fields, RequestID: r.RequestID, IdempotencyKey: r.IdempotencyKey.UUID,
		}
	}
	return out, nil
}

// EraseState is where a customer stands with erasure.
type EraseState struct {
	Version   int64
	EraseTime time.Time // zero: not erased
	// MergedInto is the customer this one was merged into; uuid.Nil if
	// none. Set by LockForErase only.
	MergedInto uuid.UUID
}

// LockForErase locks the customer row; ErrNotFound when the tenant has no
// such customer.
func (s *Store) LockForErase(ctx context.Context, db DB, tenantID, id uuid.UUID) (EraseState, error) {
	r, err := s.q.CustomerLockForErase(ctx, db, dbgen.CustomerLockForEraseParams{TenantID: tenantID, ID: id})
	if err != nil {
		return EraseState{}, interpret("lock customer", err)
	}
	st := EraseState{Version: r.Version, MergedInto: r.MergedInto.UUID}
	if r.EraseTime.Valid {
		st.EraseTime = r.EraseTime.Time.UTC()
	}
	return st, nil
}

// State reads the customer's erasure state without locking.
func (s *Store) State(ctx context.Context, db DB, tenantID, id uuid.UUID) (EraseState, error) {
	r, err := s.q.CustomerEraseState(ctx, db, dbgen.CustomerEraseStateParams{TenantID: tenantID, ID: id})
	if err != nil {
		return EraseState{}, interpret("read customer", err)
	}
	st := EraseState{Version: r.Version}
	if r.EraseTime.Valid {
		st.EraseTime = r.EraseTime.Time.UTC()
	}
	return st, nil
}

// MergedInto locks and returns the customers merged into id that are not
// erased, in id order.
func (s *Store) MergedInto(ctx context.Context, db DB, tenantID, id uuid.UUID) ([]uuid.UUID, error) {
	ids, err := s.q.CustomersMergedInto(ctx, db, dbgen.CustomersMergedIntoParams{TenantID: tenantID, ID: id})
	if err != nil {
		return nil, interpret("lock merged customers", err)
	}
	return ids, nil
}

// EraseProfile shreds the customer: deletes the data key, clears every
// personal column and deletes the external refs. It returns the new state.
// Under the customer's row lock, for a customer not erased yet.
func (s *Store) EraseProfile(ctx context.Context, db DB, tenantID, id uuid.UUID, now time.Time) (EraseState, error) {
	if _, err := s.q.CustomerKeyDelete(ctx, db, dbgen.CustomerKeyDeleteParams{TenantID: tenantID, CustomerID: id}); err != nil {
		return EraseState{}, interpret("delete customer key", err)
	}
	r, err := s.q.CustomerErase(ctx, db, dbgen.CustomerEraseParams{TenantID: tenantID, ID: id, Now: now})
	if err != nil {
		return EraseState{}, interpret("clear customer", err)
	}
	if _, err := s.q.CustomerExternalRefsDelete(ctx, db, dbgen.CustomerExternalRefsDeleteParams{TenantID: tenantID, CustomerID: id}); err != nil {
		return EraseState{}, interpret("delete external refs", err)
	}
	return EraseState{Version: r.Version, EraseTime: r.EraseTime.Time.UTC()}, nil
}

// Suppress adds a contact fingerprint to the suppression list (once).
func (s *Store) Suppress(ctx context.Context, db DB, tenantID uuid.UUID, kind string, fingerprint []byte, now time.Time) error {
	err := s.q.SuppressionInsert(ctx, db, dbgen.SuppressionInsertParams{
		TenantID: tenantID, Kind: kind, Fingerprint: fingerprint, Now: now})
	if err != nil {
		return interpret("suppress contact", err)
	}
	return nil
}

// Suppressed reports whether a contact fingerprint is on the list.
func (s *Store) Suppressed(ctx context.Context, db DB, tenantID uuid.UUID, kind string, fingerprint []byte) (bool, error) {
	ok, err := s.q.SuppressionExists(ctx, db, dbgen.SuppressionExistsParams{
		TenantID: tenantID, Kind: kind, Fingerprint: fingerprint})
	if err != nil {
		return false, interpret("read suppression list", err)
	}
	return ok, nil
}

func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
