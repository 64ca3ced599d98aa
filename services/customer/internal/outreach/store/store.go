// Package store keeps outreach templates and the delivery log in the
// customer schema. sqlc rows never leave it; every method returns the types
// below. It stores sealed content as the bytes it is given and never opens
// it: sealing is the caller's (internal/pii).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store/dbgen"
)

// Errors the store returns; every other database error keeps pgdb's
// classification.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a unique key (template key, request id) is taken.
	ErrConflict = errors.New("unique key taken")
)

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Store runs the outreach queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// Variant is a template in one locale.
type Variant struct {
	Locale   string `json:"locale"`
	Subject  string `json:"subject,omitempty"`
	TextBody string `json:"text_body"`
	HTMLBody string `json:"html_body,omitempty"`
}

// Template is a stored template.
type Template struct {
	TenantID      uuid.UUID
	ID            uuid.UUID
	Key           string
	Channel       string
	DefaultLocale string
	Variants      []Variant
	Version       int64
	CreateTime    time.Time
	UpdateTime    time.Time
}

func templateFromRow(r dbgen.OutreachTemplate) (Template, error) {
	t := Template{
		TenantID: r.TenantID, ID: r.ID, Key: r.Key, Channel: r.Channel, DefaultLocale: r.DefaultLocale,
		Version: r.Version, CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
	}
	if err := json.Unmarshal(r.Variants, &t.Variants); err != nil {
		return Template{}, fmt.Errorf("decode template variants: %w", err)
	}
	return t, nil
}

// InsertTemplate stores t at version 1; ErrConflict when its key is taken.
func (s *Store) InsertTemplate(ctx context.Context, db DB, t Template) (Template, error) {
	variants, err := json.Marshal(t.Variants)
	if err != nil {
		return Template{}, fmt.Errorf("encode template variants: %w", err)
	}
	r, err := s.q.OutreachTemplateInsert(ctx, db, dbgen.OutreachTemplateInsertParams{
		TenantID: t.TenantID, ID: t.ID, Key: t.Key, Channel: t.Channel, DefaultLocale: t.DefaultLocale,
		Variants: variants, Now: t.CreateTime,
	})
	if errors.Is(pgdb.Classify(err), pgdb.ErrNotFound) {
		return Template{}, ErrConflict
	}
	if err != nil {
		return Template{}, interpret("insert outreach template", err)
	}
	return templateFromRow(r)
}

// Template returns one template, locked FOR UPDATE if asked.
func (s *Store) Template(ctx context.Context, db DB, tenantID, id uuid.UUID, forUpdate bool) (Template, error) {
	var (
		r   dbgen.OutreachTemplate
		err error
	)
	if forUpdate {
		r, err = s.q.OutreachTemplateGetForUpdate(ctx, db, dbgen.OutreachTemplateGetForUpdateParams{TenantID: tenantID, ID: id})
	} else {
		r, err = s.q.OutreachTemplateGet(ctx, db, dbgen.OutreachTemplateGetParams{TenantID: tenantID, ID: id})
	}
	if err != nil {
		return Template{}, interpret("get outreach template", err)
	}
	return templateFromRow(r)
}

// TemplateByKey returns the tenant's template with key.
func (s *Store) TemplateByKey(ctx context.Context, db DB, tenantID uuid.UUID, key string) (Template, error) {
	r, err := s.q.OutreachTemplateGetByKey(ctx, db, dbgen.OutreachTemplateGetByKeyParams{TenantID: tenantID, Key: key})
	if err != nil {
		return Template{}, interpret("get outreach template", err)
	}
	return templateFromRow(r)
}

// UpdateTemplate writes t's key, default locale and variants, incrementing
// its version; ErrConflict when the new key is taken.
func (s *Store) UpdateTemplate(ctx context.Context, db DB, t Template) (Template, error) {
	variants, err := json.Marshal(t.Variants)
	if err != nil {
		return Template{}, fmt.Errorf("encode template variants: %w", err)
	}
	r, err := s.q.OutreachTemplateUpdate(ctx, db, dbgen.OutreachTemplateUpdateParams{
		TenantID: t.TenantID, ID: t.ID, Key: t.Key, DefaultLocale: t.DefaultLocale, Variants: variants, Now: t.UpdateTime,
	})
	if errors.Is(pgdb.Classify(err), pgdb.ErrAlreadyExists) {
		return Template{}, ErrConflict
	}
	if err != nil {
		return Template{}, interpret("update outreach template", err)
	}
	return templateFromRow(r)
}

// DeleteTemplate removes a template; ErrNotFound when there is none.
func (s *Store) DeleteTemplate(ctx context.Context, db DB, tenantID, id uuid.UUID) error {
	n, err := s.q.OutreachTemplateDelete(ctx, db, dbgen.OutreachTemplateDeleteParams{TenantID: tenantID, ID: id})
	if err != nil {
		return interpret("delete outreach template", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Templates returns up to limit templates with a key after afterKey, by key.
func (s *Store) Templates(ctx context.Context, db DB, tenantID uuid.UUID, afterKey string, limit int) ([]Template, error) {
	rows, err := s.q.OutreachTemplateList(ctx, db, dbgen.OutreachTemplateListParams{
		TenantID: tenantID, AfterKey: afterKey, RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list outreach templates", err)
	}
	out := make([]Template, len(rows))
	for i, r := range rows {
		if out[i], err = templateFromRow(r); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Delivery statuses, as stored.
const (
	StatusQueued = "queued"
	// StatusDeferred: refused for now (quiet hours, a cap that frees soon);
	// the governor is asked again at NextAttemptTime.
	StatusDeferred = "deferred"
	StatusSent     = "sent"
	StatusFailed   = "failed"
	StatusRefused  = "refused"
)

// Delivery is a delivery log entry.
type Delivery struct {
	TenantID   uuid.UUID
	ID         uuid.UUID
	CustomerID uuid.UUID
	// SealedCustomerID is the customer whose key sealed Content.
	SealedCustomerID uuid.UUID
	// TemplateID is uuid.Nil, and Channel empty, only in a FAILED delivery
	// with reason no_template: a care occasion whose configured template
	// key names no template.
	TemplateID        uuid.UUID
	TemplateKey       string
	Channel           string
	Purpose           string
	Locale            string
	Status            string
	Content           []byte // sealed; nil when none is kept
	Attempts          int
	NextAttemptTime   time.Time // zero unless queued
	LastErrorCode     string
	FailureReason     string
	RefusalReason     string
	NextAllowedTime   time.Time
	ProviderMessageID string
	RequestID         uuid.UUID // uuid.Nil: none
	Version           int64
	CreateTime        time.Time
	UpdateTime        time.Time
	SendTime          time.Time
}

func deliveryFromRow(r dbgen.OutreachDelivery) Delivery {
	return Delivery{
		TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, SealedCustomerID: r.SealedCustomerID,
		TemplateID: r.TemplateID.UUID, TemplateKey: r.TemplateKey, Channel: r.Channel, Purpose: r.Purpose,
		Locale: r.Locale, Status: r.Status, Content: r.ContentSealed, Attempts: int(r.Attempts),
		NextAttemptTime: tsTime(r.NextAttemptTime), LastErrorCode: r.LastErrorCode, FailureReason: r.FailureReason,
		RefusalReason: r.RefusalReason, NextAllowedTime: tsTime(r.NextAllowedTime),
		ProviderMessageID: r.ProviderMessageID, RequestID: r.RequestID.UUID, Version: r.Version,
		CreateTime: r.CreateTime.UTC(), UpdateTime: r.UpdateTime.UTC(), SendTime: tsTime(r.SendTime),
	}
}

func deliveriesFromRows(rows []dbgen.OutreachDelivery) []Delivery {
	out := make([]Delivery, len(rows))
	for i, r := range rows {
		out[i] = deliveryFromRow(r)
	}
	return out
}

// InsertDelivery stores a new delivery (version 1) created at d.CreateTime;
// ErrConflict when d.RequestID is taken in the tenant.
func (s *Store) InsertDelivery(ctx context.Context, db DB, d Delivery) (Delivery, error) {
	r, err := s.q.OutreachDeliveryInsert(ctx, db, dbgen.OutreachDeliveryInsertParams{
		TenantID: d.TenantID, ID: d.ID, CustomerID: d.CustomerID,
		TemplateID:  uuid.NullUUID{UUID: d.TemplateID, Valid: d.TemplateID != uuid.Nil},
		TemplateKey: d.TemplateKey, Channel: d.Channel, Purpose: d.Purpose, Locale: d.Locale, Status: d.Status,
		ContentSealed: d.Content, NextAttemptTime: ts(d.NextAttemptTime), FailureReason: d.FailureReason,
		RefusalReason: d.RefusalReason, NextAllowedTime: ts(d.NextAllowedTime),
		RequestID: uuid.NullUUID{UUID: d.RequestID, Valid: d.RequestID != uuid.Nil}, Now: d.CreateTime,
	})
	if errors.Is(pgdb.Classify(err), pgdb.ErrNotFound) {
		return Delivery{}, ErrConflict
	}
	if err != nil {
		return Delivery{}, interpret("insert outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// Delivery returns one delivery of a customer.
func (s *Store) Delivery(ctx context.Context, db DB, tenantID, customerID, id uuid.UUID) (Delivery, error) {
	r, err := s.q.OutreachDeliveryGet(ctx, db, dbgen.OutreachDeliveryGetParams{TenantID: tenantID, CustomerID: customerID, ID: id})
	if err != nil {
		return Delivery{}, interpret("get outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// DeliveryByRequestID returns the delivery a request id made.
func (s *Store) DeliveryByRequestID(ctx context.Context, db DB, tenantID, requestID uuid.UUID) (Delivery, error) {
	r, err := s.q.OutreachDeliveryGetByRequestID(ctx, db, dbgen.OutreachDeliveryGetByRequestIDParams{
		TenantID: tenantID, RequestID: uuid.NullUUID{UUID: requestID, Valid: true},
	})
	if err != nil {
		return Delivery{}, interpret("get outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// Deliveries returns up to limit deliveries of the customer with an id
// below beforeID (uuid.Nil: from the newest) and a status in statuses
// (empty: any), newest first.
func (s *Store) Deliveries(ctx context.Context, db DB, tenantID, customerID, beforeID uuid.UUID, statuses []string, limit int) ([]Delivery, error) {
	if statuses == nil {
		statuses = []string{}
	}
	rows, err := s.q.OutreachDeliveryList(ctx, db, dbgen.OutreachDeliveryListParams{
		TenantID: tenantID, CustomerID: customerID, BeforeID: uuid.NullUUID{UUID: beforeID, Valid: beforeID != uuid.Nil},
		Statuses: statuses, RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list outreach deliveries", err)
	}
	return deliveriesFromRows(rows), nil
}

// AllDeliveries returns every delivery of the customer, oldest first.
func (s *Store) AllDeliveries(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Delivery, error) {
	rows, err := s.q.OutreachDeliveryListAll(ctx, db, dbgen.OutreachDeliveryListAllParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list outreach deliveries", err)
	}
	return deliveriesFromRows(rows), nil
}

// Claim claims up to limit deliveries due at now, fairly across tenants
// (every tenant's oldest due delivery before any tenant's second; see the
// query): their attempt is counted and they are leased until leaseUntil.
func (s *Store) Claim(ctx context.Context, db DB, now, leaseUntil time.Time, limit int) ([]Delivery, error) {
	rows, err := s.q.OutreachDeliveryClaim(ctx, db, dbgen.OutreachDeliveryClaimParams{
		LeaseUntil: ts(leaseUntil), Now: now, RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("claim outreach deliveries", err)
	}
	return deliveriesFromRows(rows), nil
}

// Backlog is one channel's queued deliveries due and not leased.
type Backlog struct {
	Channel string
	Count   int64
	Oldest  time.Time // the oldest due time
}

// DueBacklog returns, per channel with any, the queued deliveries due at
// now that no worker holds.
func (s *Store) DueBacklog(ctx context.Context, db DB, now time.Time) ([]Backlog, error) {
	rows, err := s.q.OutreachDeliveryDueBacklog(ctx, db, ts(now))
	if err != nil {
		return nil, interpret("count due outreach deliveries", err)
	}
	out := make([]Backlog, len(rows))
	for i, r := range rows {
		out[i] = Backlog{Channel: r.Channel, Count: r.Due, Oldest: r.Oldest.UTC()}
	}
	return out, nil
}

// MarkSent records d (claimed with d.Attempts) as sent at now; ErrNotFound
// when the claim is no longer the latest.
func (s *Store) MarkSent(ctx context.Context, db DB, d Delivery, providerMessageID string, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryMarkSent(ctx, db, dbgen.OutreachDeliveryMarkSentParams{
		TenantID: d.TenantID, ID: d.ID, Attempts: int32(d.Attempts), //nolint:gosec // small
		ProviderMessageID: providerMessageID, Now: ts(now),
	})
	if err != nil {
		return Delivery{}, interpret("mark outreach delivery sent", err)
	}
	return deliveryFromRow(r), nil
}

// MarkRetry schedules d's next attempt; ErrNotFound when the claim is no
// longer the latest.
func (s *Store) MarkRetry(ctx context.Context, db DB, d Delivery, errorCode string, next, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryMarkRetry(ctx, db, dbgen.OutreachDeliveryMarkRetryParams{
		TenantID: d.TenantID, ID: d.ID, Attempts: int32(d.Attempts), //nolint:gosec // small
		LastErrorCode: errorCode, NextAttemptTime: ts(next), Now: now,
	})
	if err != nil {
		return Delivery{}, interpret("mark outreach delivery for retry", err)
	}
	return deliveryFromRow(r), nil
}

// MarkFailed fails d for good; ErrNotFound when the claim is no longer the
// latest.
func (s *Store) MarkFailed(ctx context.Context, db DB, d Delivery, errorCode, reason string, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryMarkFailed(ctx, db, dbgen.OutreachDeliveryMarkFailedParams{
		TenantID: d.TenantID, ID: d.ID, Attempts: int32(d.Attempts), //nolint:gosec // small
		LastErrorCode: errorCode, FailureReason: reason, Now: now,
	})
	if err != nil {
		return Delivery{}, interpret("mark outreach delivery failed", err)
	}
	return deliveryFromRow(r), nil
}

// LockDueDeferred locks the oldest deferred delivery due for its re-check
// at now in tx; ErrNotFound when none is (or all are locked by others).
func (s *Store) LockDueDeferred(ctx context.Context, tx DB, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryLockDueDeferred(ctx, tx, ts(now))
	if err != nil {
		return Delivery{}, interpret("lock deferred outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// ReleaseDeferred queues the deferred delivery d, due at now.
func (s *Store) ReleaseDeferred(ctx context.Context, db DB, d Delivery, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryReleaseDeferred(ctx, db, dbgen.OutreachDeliveryReleaseDeferredParams{
		TenantID: d.TenantID, ID: d.ID, Now: ts(now),
	})
	if err != nil {
		return Delivery{}, interpret("queue deferred outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// DeferAgain keeps d deferred, until next, for reason.
func (s *Store) DeferAgain(ctx context.Context, db DB, d Delivery, reason string, next, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryDeferAgain(ctx, db, dbgen.OutreachDeliveryDeferAgainParams{
		TenantID: d.TenantID, ID: d.ID, NextAllowedTime: ts(next), RefusalReason: reason, Now: now,
	})
	if err != nil {
		return Delivery{}, interpret("defer outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// RefuseDeferred refuses the deferred delivery d for good.
func (s *Store) RefuseDeferred(ctx context.Context, db DB, d Delivery, failureReason, refusalReason string, nextAllowed, now time.Time) (Delivery, error) {
	r, err := s.q.OutreachDeliveryRefuseDeferred(ctx, db, dbgen.OutreachDeliveryRefuseDeferredParams{
		TenantID: d.TenantID, ID: d.ID, FailureReason: failureReason, RefusalReason: refusalReason,
		NextAllowedTime: ts(nextAllowed), Now: now,
	})
	if err != nil {
		return Delivery{}, interpret("refuse deferred outreach delivery", err)
	}
	return deliveryFromRow(r), nil
}

// Repoint moves the sources' deliveries to primary and returns how many.
func (s *Store) Repoint(ctx context.Context, db DB, tenantID, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	n, err := s.q.OutreachDeliveryRepoint(ctx, db, dbgen.OutreachDeliveryRepointParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources,
	})
	if err != nil {
		return 0, interpret("repoint outreach deliveries", err)
	}
	return n, nil
}

// FailPending fails the customer's queued deliveries with reason "erased"
// and returns them.
func (s *Store) FailPending(ctx context.Context, db DB, tenantID, customerID uuid.UUID, now time.Time) ([]Delivery, error) {
	rows, err := s.q.OutreachDeliveryFailPending(ctx, db, dbgen.OutreachDeliveryFailPendingParams{
		TenantID: tenantID, CustomerID: customerID, Now: now,
	})
	if err != nil {
		return nil, interpret("fail pending outreach deliveries", err)
	}
	return deliveriesFromRows(rows), nil
}

// ForgetContent deletes the content of every delivery to or sealed for the
// customer.
func (s *Store) ForgetContent(ctx context.Context, db DB, tenantID, customerID uuid.UUID) error {
	if _, err := s.q.OutreachDeliveryForgetContent(ctx, db, dbgen.OutreachDeliveryForgetContentParams{
		TenantID: tenantID, CustomerID: customerID,
	}); err != nil {
		return interpret("forget outreach content", err)
	}
	return nil
}

// Contact is what sending needs from a profile: the locale and the sealed
// email and phone (nil when empty).
type Contact struct {
	Locale      string
	EmailSealed []byte
	PhoneSealed []byte
	// DisplayNameSealed is the sealed display name (empty once erased).
	DisplayNameSealed []byte
	// MergedInto is the customer this one was merged into; uuid.Nil if none.
	MergedInto uuid.UUID
}

// CustomerContact reads a customer's locale and sealed addresses;
// ErrNotFound when the tenant has no such customer.
func (s *Store) CustomerContact(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (Contact, error) {
	r, err := s.q.OutreachCustomerContact(ctx, db, dbgen.OutreachCustomerContactParams{TenantID: tenantID, ID: customerID})
	if err != nil {
		return Contact{}, interpret("read customer contact", err)
	}
	return Contact{Locale: r.Locale, EmailSealed: r.EmailSealed, PhoneSealed: r.PhoneSealed,
		DisplayNameSealed: r.DisplayNameSealed, MergedInto: r.MergedInto.UUID}, nil
}

func ts(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t, Valid: !t.IsZero()}
}

func tsTime(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// interpret classifies a database error once; a missing row is ErrNotFound,
// every other kind keeps pgdb's classification for the edge to map.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
