// Package profile owns customer profiles: what a profile holds, which fields
// a client may change, and how each change is recorded with its event in one
// transaction. It knows neither protobuf transport nor SQL rows, nor how
// personal fields are protected at rest (the store seals and opens them).
package profile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	_ "time/tzdata" // time zones must resolve on hosts and images without a zoneinfo database

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// Event subjects, per DESIGN.md: rapport.<service>.<aggregate>.<event>.
const (
	SubjectCreated = "rapport.customer.customer.created"
	SubjectUpdated = "rapport.customer.customer.updated"
	aggregateType  = "customer"
)

// ErrNotFound means no such customer in the tenant.
var ErrNotFound = errors.New("customer not found")

// Customer is a profile as the domain sees it, personal fields in clear.
type Customer struct {
	TenantID    uuid.UUID
	ID          uuid.UUID
	DisplayName string
	Email       string
	Phone       string
	Locale      string
	TimeZone    string
	Tags        []string
	// Birthday is nil when unknown.
	Birthday *Birthday
	// Address is nil when none is known.
	Address *Address
	// ExternalRefs are the customer's ids in other systems, by system.
	ExternalRefs map[string]string
	// Attributes are the tenant's custom attributes, by key.
	Attributes map[string]string
	Version    int64
	CreateTime time.Time
	UpdateTime time.Time
	// MergedInto is the customer this one was merged into (uuid.Nil: not
	// merged), at MergeTime. A merged customer is read-only and unlisted.
	MergedInto uuid.UUID
	MergeTime  time.Time
	// Erased means the customer's personal data was destroyed (the GDPR
	// erase): DisplayName, Email and Phone are empty and can never be read
	// again. An erased customer is forgotten: Get, Update and Lookup do not
	// find it, and lists leave it out.
	Erased bool
}

// FieldError is a rule the profile itself enforces (beyond the request
// schema): Field is the profile field's name, e.g. "time_zone".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Mutable lists the fields a client may set or change, in update-mask form.
// Each path replaces the whole field. Birthday and address also take their
// sub-paths (SubPaths: "address.locality" changes the locality only), which
// is also what the REST gateway derives from a PATCH body without a mask.
// The maps (external_refs, attributes) are replaced whole only: their keys
// may hold '.' and '-', which a field-mask path cannot carry unambiguously.
var Mutable = []string{"display_name", "email", "phone", "locale", "time_zone", "tags",
	"birthday", "address", "external_refs", "attributes"}

// SubPaths are the update-mask paths below a Mutable field.
var SubPaths = []string{"birthday.year", "birthday.month", "birthday.day",
	"address.lines", "address.locality", "address.region", "address.postal_code", "address.country_code"}

// validate checks the rules the request schema cannot express. now is the
// current time (a birthday must not be in the future).
func (c *Customer) validate(now time.Time) error {
	if strings.TrimSpace(c.DisplayName) == "" {
		return &FieldError{Field: "display_name", Reason: "is required"}
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil || c.TimeZone == "Local" {
			return &FieldError{Field: "time_zone", Reason: "must be an IANA time zone such as Europe/Berlin"}
		}
	}
	if c.Birthday != nil {
		if err := c.Birthday.validate(now); err != nil {
			return err
		}
	}
	if c.Address != nil {
		if err := c.Address.validate(); err != nil {
			return err
		}
	}
	if err := validateExternalRefs(c.ExternalRefs); err != nil {
		return err
	}
	return validateAttributes(c.Attributes)
}

// DB is what reads need: a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Repository stores profiles; the store package implements it.
type Repository interface {
	Insert(ctx context.Context, db DB, c Customer) (Customer, error)
	Get(ctx context.Context, db DB, tenantID, id uuid.UUID, forUpdate bool) (Customer, error)
	// Update writes c if its Version is still current and returns the row
	// with the next version; ErrNotFound otherwise.
	Update(ctx context.Context, db DB, c Customer) (Customer, error)
	// List returns a page in id order, erased customers included (marked),
	// so paging counts every row.
	List(ctx context.Context, db DB, q ListQuery) ([]Customer, error)
	// Lookup returns the live customers whose email, phone or external ref
	// equals q's, newest first, at most q.Limit; erased and merged ones
	// never.
	Lookup(ctx context.Context, db DB, q LookupQuery) ([]Customer, error)
	// LockForMerge locks the tenant's customers with these ids in id order
	// (for the rest of tx) and returns those that exist, in id order.
	LockForMerge(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, ids []uuid.UUID) ([]Customer, error)
	// MarkMerged points the sources (and whatever was merged into them) at
	// primary, and drops the sources' external refs (the primary holds them
	// now).
	MarkMerged(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID, now time.Time) error
	// Duplicates returns the tenant's other live customers sharing c's
	// email, phone or an external ref, newest first, at most limit.
	Duplicates(ctx context.Context, db DB, c Customer, limit int) ([]Duplicate, error)
}

// ListQuery selects one page of a tenant's customers, newest first.
type ListQuery struct {
	TenantID uuid.UUID
	BeforeID uuid.UUID // zero: from the newest
	Tag      string    // empty: any
	Limit    int
}

// LookupQuery finds a tenant's customers by one exact contact value. Emails
// match without regard to case or surrounding space, phones by their E.164
// digits.
type LookupQuery struct {
	TenantID uuid.UUID
	Email    string // exactly one of Email, Phone and External
	Phone    string
	External *ExternalRef
	Limit    int
}

// ExternalRef is an id in another system.
type ExternalRef struct {
	System string
	Ref    string
}

// Service runs profile use cases inside the caller's transaction.
type Service struct {
	repo    Repository
	now     func() time.Time
	mergers []lifecycle.Merger
}

// NewService returns a Service; now defaults to time.Now. mergers are the
// packages holding rows by customer id: Merge has each move the sources'
// rows to the primary, in this order, inside the merge's transaction.
func NewService(repo Repository, now func() time.Time, mergers ...lifecycle.Merger) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{repo: repo, now: now, mergers: mergers}
}

// Create stores a new profile and its customer.created event.
func (s *Service) Create(ctx context.Context, tx pgx.Tx, c Customer) (Customer, error) {
	c.MergedInto, c.MergeTime = uuid.Nil, time.Time{}
	c.normalise()
	if err := c.validate(s.now()); err != nil {
		return Customer{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Customer{}, fmt.Errorf("new customer id: %w", err)
	}
	c.ID = id
	c.CreateTime = s.now().UTC()
	created, err := s.repo.Insert(ctx, tx, c)
	if err != nil {
		return Customer{}, err
	}
	ev := &customerv1.CustomerCreated{
		TenantId: created.TenantID.String(), CustomerId: created.ID.String(),
		AggregateVersion: created.Version, OccurredAt: timestamppb.New(created.CreateTime),
		Locale: created.Locale, TimeZone: created.TimeZone, Tags: created.Tags,
		CountryCode: created.CountryCode(),
	}
	if err := s.publish(ctx, tx, created, SubjectCreated, ev); err != nil {
		return Customer{}, err
	}
	return created, nil
}

// Get returns one profile of the tenant; an erased one is not found.
func (s *Service) Get(ctx context.Context, db DB, tenantID, id uuid.UUID) (Customer, error) {
	c, err := s.repo.Get(ctx, db, tenantID, id, false)
	if err != nil {
		return Customer{}, err
	}
	if c.Erased {
		return Customer{}, ErrNotFound
	}
	return c, nil
}

// Lookup returns the tenant's customers with q's email or phone.
func (s *Service) Lookup(ctx context.Context, db DB, q LookupQuery) ([]Customer, error) {
	keys := 0
	for _, set := range []bool{q.Email != "", q.Phone != "", q.External != nil} {
		if set {
			keys++
		}
	}
	switch {
	case keys == 0:
		return nil, &FieldError{Field: "email", Reason: "an email, a phone or an external ref is required"}
	case keys > 1:
		return nil, &FieldError{Field: "phone", Reason: "give one of email, phone and external_ref"}
	case q.Limit <= 0:
		return nil, errors.New("lookup: limit must be positive")
	}
	return s.repo.Lookup(ctx, db, q)
}

// List returns a page of the tenant's profiles.
func (s *Service) List(ctx context.Context, db DB, q ListQuery) ([]Customer, error) {
	return s.repo.List(ctx, db, q)
}

// Update copies the fields named in paths from patch onto the stored profile
// and records a customer.updated event naming the fields that changed. A
// change that changes nothing writes nothing and returns the profile as is.
func (s *Service) Update(ctx context.Context, tx pgx.Tx, patch Customer, paths []string) (Customer, error) {
	cur, err := s.repo.Get(ctx, tx, patch.TenantID, patch.ID, true)
	if err != nil {
		return Customer{}, err
	}
	if cur.Erased {
		return Customer{}, ErrNotFound
	}
	if cur.MergedInto != uuid.Nil {
		return Customer{}, &MergedError{ID: cur.ID, Into: cur.MergedInto}
	}
	next := cur
	var changed []string
	for _, p := range paths {
		switch p {
		case "display_name":
			next.DisplayName = patch.DisplayName
		case "email":
			next.Email = patch.Email
		case "phone":
			next.Phone = patch.Phone
		case "locale":
			next.Locale = patch.Locale
		case "time_zone":
			next.TimeZone = patch.TimeZone
		case "tags":
			next.Tags = patch.Tags
		case "birthday":
			next.Birthday = patch.Birthday
		case "address":
			next.Address = patch.Address
		case "external_refs":
			next.ExternalRefs = patch.ExternalRefs
		case "attributes":
			next.Attributes = patch.Attributes
		case "birthday.year", "birthday.month", "birthday.day":
			b := Birthday{}
			if next.Birthday != nil {
				b = *next.Birthday
			}
			var from Birthday
			if patch.Birthday != nil {
				from = *patch.Birthday
			}
			switch p {
			case "birthday.year":
				b.Year = from.Year
			case "birthday.month":
				b.Month = from.Month
			default:
				b.Day = from.Day
			}
			next.Birthday = &b
		case "address.lines", "address.locality", "address.region", "address.postal_code", "address.country_code":
			a := Address{}
			if next.Address != nil {
				a = *next.Address
			}
			var from Address
			if patch.Address != nil {
				from = *patch.Address
			}
			switch p {
			case "address.lines":
				a.Lines = from.Lines
			case "address.locality":
				a.Locality = from.Locality
			case "address.region":
				a.Region = from.Region
			case "address.postal_code":
				a.PostalCode = from.PostalCode
			default:
				a.CountryCode = from.CountryCode
			}
			next.Address = &a
		default:
			return Customer{}, &FieldError{Field: p, Reason: "cannot be changed"}
		}
	}
	next.normalise()
	changed = changedFields(cur, next)
	if err := next.validate(s.now()); err != nil {
		return Customer{}, err
	}
	if len(changed) == 0 {
		return cur, nil
	}
	next.UpdateTime = s.now().UTC()
	updated, err := s.repo.Update(ctx, tx, next)
	if err != nil {
		return Customer{}, err
	}
	ev := &customerv1.CustomerUpdated{
		TenantId: updated.TenantID.String(), CustomerId: updated.ID.String(),
		AggregateVersion: updated.Version, OccurredAt: timestamppb.New(updated.UpdateTime),
		ChangedFields: changed, Locale: updated.Locale, TimeZone: updated.TimeZone, Tags: updated.Tags,
		CountryCode: updated.CountryCode(),
	}
	if err := s.publish(ctx, tx, updated, SubjectUpdated, ev); err != nil {
		return Customer{}, err
	}
	return updated, nil
}

func (s *Service) publish(ctx context.Context, tx pgx.Tx, c Customer, subject string, ev proto.Message) error {
	err := outbox.Write(ctx, tx, outbox.Event{
		TenantID:         c.TenantID.String(),
		Subject:          subject,
		AggregateType:    aggregateType,
		AggregateID:      c.ID.String(),
		AggregateVersion: c.Version,
		Payload:          ev,
		OccurredAt:       c.UpdateTime,
	})
	if err != nil {
		return fmt.Errorf("write %s event: %w", subject, err)
	}
	return nil
}

// normaliseTags sorts tags so equal sets compare and store equal.
func normaliseTags(tags []string) []string {
	out := slices.Clone(tags)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}
