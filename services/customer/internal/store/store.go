// Package store keeps customer profiles in the customer schema. sqlc rows
// never leave it: every method returns domain types.
package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/store/dbgen"
)

// Store implements profile.Repository.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

var _ profile.Repository = (*Store)(nil)

// Insert stores a new profile.
func (s *Store) Insert(ctx context.Context, db profile.DB, c profile.Customer) (profile.Customer, error) {
	row, err := s.q.CustomerInsert(ctx, db, dbgen.CustomerInsertParams{
		TenantID: c.TenantID, ID: c.ID, DisplayName: c.DisplayName, Email: c.Email, Phone: c.Phone,
		Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Now: c.CreateTime,
	})
	if err != nil {
		return profile.Customer{}, interpret("insert customer", err)
	}
	return fromRow(row), nil
}

// Get returns one profile, locked for update if asked.
func (s *Store) Get(ctx context.Context, db profile.DB, tenantID, id uuid.UUID, forUpdate bool) (profile.Customer, error) {
	var (
		row dbgen.Customer
		err error
	)
	if forUpdate {
		row, err = s.q.CustomerGetForUpdate(ctx, db, dbgen.CustomerGetForUpdateParams{TenantID: tenantID, ID: id})
	} else {
		row, err = s.q.CustomerGet(ctx, db, dbgen.CustomerGetParams{TenantID: tenantID, ID: id})
	}
	if err != nil {
		return profile.Customer{}, interpret("get customer", err)
	}
	return fromRow(row), nil
}

// Update writes c if c.Version is current.
func (s *Store) Update(ctx context.Context, db profile.DB, c profile.Customer) (profile.Customer, error) {
	row, err := s.q.CustomerUpdate(ctx, db, dbgen.CustomerUpdateParams{
		TenantID: c.TenantID, ID: c.ID, Version: c.Version, DisplayName: c.DisplayName, Email: c.Email,
		Phone: c.Phone, Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Now: c.UpdateTime,
	})
	if err != nil {
		return profile.Customer{}, interpret("update customer", err)
	}
	return fromRow(row), nil
}

// List returns one page.
func (s *Store) List(ctx context.Context, db profile.DB, q profile.ListQuery) ([]profile.Customer, error) {
	p := dbgen.CustomerListParams{TenantID: q.TenantID, RowLimit: int32(q.Limit)} //nolint:gosec // bounded by the caller
	if q.BeforeID != uuid.Nil {
		p.BeforeID = uuid.NullUUID{UUID: q.BeforeID, Valid: true}
	}
	if q.Tag != "" {
		p.Tag = pgtype.Text{String: q.Tag, Valid: true}
	}
	rows, err := s.q.CustomerList(ctx, db, p)
	if err != nil {
		return nil, interpret("list customers", err)
	}
	out := make([]profile.Customer, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out, nil
}

func fromRow(r dbgen.Customer) profile.Customer {
	tags := r.Tags
	if tags == nil {
		tags = []string{}
	}
	return profile.Customer{
		TenantID: r.TenantID, ID: r.ID, DisplayName: r.DisplayName, Email: r.Email, Phone: r.Phone,
		Locale: r.Locale, TimeZone: r.TimeZone, Tags: tags, Version: r.Version,
		CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
	}
}

// interpret classifies a database error once; a missing row is the domain's
// not-found.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return profile.ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
