// Package store keeps purchases and RFM segments in the customer schema. It
// owns their SQL (queries/*.sql, compiled by sqlc into dbgen) and the plain
// record types its methods take and return: dbgen rows never leave it, and
// nothing here knows protobuf.
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

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store/dbgen"
)

// ErrNotFound means no such row in the tenant.
var ErrNotFound = errors.New("not found")

// DB is a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Purchase is a recorded purchase with its lines.
type Purchase struct {
	TenantID         uuid.UUID
	ID               uuid.UUID
	CustomerID       uuid.UUID
	OrderReference   string
	Channel          string // online, store, phone, marketplace, other
	CurrencyCode     string
	TotalAmountMinor int64
	PurchaseTime     time.Time
	// RequestHash fingerprints what the client sent; a replay of the order
	// reference with another hash is another order.
	RequestHash []byte
	CreateTime  time.Time
	Items       []Item
}

// Item is one line of a purchase; its currency is the purchase's.
type Item struct {
	SKU            string
	Name           string
	Category       string
	Quantity       int32
	UnitPriceMinor int64
}

// Settings are a tenant's RFM thresholds (see the purchase package for their
// meaning and defaults).
type Settings struct {
	BaseCurrency     string
	WindowDays       int32
	RecencyMaxDays   [4]int32
	FrequencyMin     [4]int64
	MonetaryMinMinor [4]int64
	Version          int64 // 0: never stored, the defaults
	UpdateTime       time.Time
}

// Membership is a customer's stored segment and the values behind it.
type Membership struct {
	CustomerID        uuid.UUID
	Segment           string // important, ordinary, potential, at_risk, lost
	PreviousSegment   string // "" if none
	RecencyScore      int32
	FrequencyScore    int32
	MonetaryScore     int32
	LastPurchaseTime  time.Time
	Frequency         int64
	MonetaryMinor     int64
	MonetaryCurrency  string
	SegmentVersion    int64
	SegmentChangeTime time.Time
	UpdateTime        time.Time
}

// Cursor is a keyset position in a list ordered by (Time, ID) descending;
// the zero Cursor is the start.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Store runs the queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// LockCustomer takes the customer's purchase lock for the rest of tx and
// reports whether the customer exists in the tenant (an erased one does
// not) and, if it was merged, into whom. key is the advisory lock key
// (pgdb.LockKey of a name for the customer).
func (s *Store) LockCustomer(ctx context.Context, tx pgx.Tx, key int64, tenantID, customerID uuid.UUID) (exists bool, mergedInto uuid.NullUUID, err error) {
	if err := s.q.PurchaseLockCustomer(ctx, tx, key); err != nil {
		return false, uuid.NullUUID{}, interpret("lock customer", err)
	}
	row, err := s.q.PurchaseCustomerState(ctx, tx, dbgen.PurchaseCustomerStateParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return false, uuid.NullUUID{}, interpret("read customer", err)
	}
	return row.CustomerExists, row.MergedInto, nil
}

// InsertPurchase stores p and its items. If the tenant already has a
// purchase with p's order reference it stores nothing and returns false.
func (s *Store) InsertPurchase(ctx context.Context, tx pgx.Tx, p Purchase) (Purchase, bool, error) {
	row, err := s.q.PurchaseInsert(ctx, tx, dbgen.PurchaseInsertParams{
		TenantID: p.TenantID, ID: p.ID, CustomerID: p.CustomerID, OrderReference: p.OrderReference,
		Channel: p.Channel, CurrencyCode: p.CurrencyCode, TotalAmountMinor: p.TotalAmountMinor,
		PurchaseTime: p.PurchaseTime, RequestHash: p.RequestHash, CreateTime: p.CreateTime,
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return Purchase{}, false, nil
	}
	if err != nil {
		return Purchase{}, false, interpret("insert purchase", err)
	}
	n := len(p.Items)
	ip := dbgen.PurchaseItemsInsertParams{
		TenantID: p.TenantID, PurchaseID: p.ID,
		Lines: make([]int32, n), Skus: make([]string, n), Names: make([]string, n),
		Categories: make([]string, n), Quantities: make([]int32, n),
		CurrencyCodes: make([]string, n), UnitPricesMinor: make([]int64, n),
	}
	for i, it := range p.Items {
		ip.Lines[i] = int32(i + 1) //nolint:gosec // at most 500 lines
		ip.Skus[i], ip.Names[i], ip.Categories[i] = it.SKU, it.Name, it.Category
		ip.Quantities[i], ip.CurrencyCodes[i], ip.UnitPricesMinor[i] = it.Quantity, p.CurrencyCode, it.UnitPriceMinor
	}
	if err := s.q.PurchaseItemsInsert(ctx, tx, ip); err != nil {
		return Purchase{}, false, interpret("insert purchase items", err)
	}
	out := purchaseFromRow(row)
	out.Items = p.Items
	return out, true, nil
}

// PurchaseByOrderReference returns the tenant's purchase with that order
// reference, with its items.
func (s *Store) PurchaseByOrderReference(ctx context.Context, db DB, tenantID uuid.UUID, ref string) (Purchase, error) {
	row, err := s.q.PurchaseGetByOrderReference(ctx, db, dbgen.PurchaseGetByOrderReferenceParams{
		TenantID: tenantID, OrderReference: ref,
	})
	if err != nil {
		return Purchase{}, interpret("get purchase by order reference", err)
	}
	ps, err := s.withItems(ctx, db, tenantID, []dbgen.Purchase{row})
	if err != nil {
		return Purchase{}, err
	}
	return ps[0], nil
}

// Purchase returns one purchase of a customer, with its items.
func (s *Store) Purchase(ctx context.Context, db DB, tenantID, customerID, id uuid.UUID) (Purchase, error) {
	row, err := s.q.PurchaseGet(ctx, db, dbgen.PurchaseGetParams{TenantID: tenantID, CustomerID: customerID, ID: id})
	if err != nil {
		return Purchase{}, interpret("get purchase", err)
	}
	ps, err := s.withItems(ctx, db, tenantID, []dbgen.Purchase{row})
	if err != nil {
		return Purchase{}, err
	}
	return ps[0], nil
}

// Purchases returns up to limit purchases of a customer after the cursor,
// newest purchase_time first, with their items.
func (s *Store) Purchases(ctx context.Context, db DB, tenantID, customerID uuid.UUID, after Cursor, limit int) ([]Purchase, error) {
	before := after.orStart()
	rows, err := s.q.PurchaseList(ctx, db, dbgen.PurchaseListParams{
		TenantID: tenantID, CustomerID: customerID, BeforeTime: before.Time, BeforeID: before.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list purchases", err)
	}
	return s.withItems(ctx, db, tenantID, rows)
}

func (s *Store) withItems(ctx context.Context, db DB, tenantID uuid.UUID, rows []dbgen.Purchase) ([]Purchase, error) {
	out := make([]Purchase, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, len(rows))
	at := make(map[uuid.UUID]int, len(rows))
	for i, r := range rows {
		out[i] = purchaseFromRow(r)
		ids[i] = r.ID
		at[r.ID] = i
	}
	items, err := s.q.PurchaseItemsList(ctx, db, dbgen.PurchaseItemsListParams{TenantID: tenantID, PurchaseIds: ids})
	if err != nil {
		return nil, interpret("list purchase items", err)
	}
	for _, it := range items {
		p := &out[at[it.PurchaseID]]
		p.Items = append(p.Items, Item{
			SKU: it.Sku, Name: it.Name, Category: it.Category, Quantity: it.Quantity, UnitPriceMinor: it.UnitPriceMinor,
		})
	}
	return out, nil
}

func purchaseFromRow(r dbgen.Purchase) Purchase {
	return Purchase{
		TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, OrderReference: r.OrderReference,
		Channel: r.Channel, CurrencyCode: r.CurrencyCode, TotalAmountMinor: r.TotalAmountMinor,
		PurchaseTime: r.PurchaseTime.UTC(), RequestHash: r.RequestHash, CreateTime: r.CreateTime.UTC(),
	}
}

// Settings returns the tenant's stored settings; ErrNotFound if it never
// stored any.
func (s *Store) Settings(ctx context.Context, db DB, tenantID uuid.UUID, forUpdate bool) (Settings, error) {
	var (
		row dbgen.SegmentSetting
		err error
	)
	if forUpdate {
		row, err = s.q.SegmentSettingsLock(ctx, db, tenantID)
	} else {
		row, err = s.q.SegmentSettingsGet(ctx, db, tenantID)
	}
	if err != nil {
		return Settings{}, interpret("get segment settings", err)
	}
	return settingsFromRow(row)
}

// PutSettings stores the tenant's settings and returns them with their new
// version.
func (s *Store) PutSettings(ctx context.Context, db DB, tenantID uuid.UUID, st Settings, now time.Time) (Settings, error) {
	row, err := s.q.SegmentSettingsUpsert(ctx, db, dbgen.SegmentSettingsUpsertParams{
		TenantID: tenantID, BaseCurrency: st.BaseCurrency, WindowDays: st.WindowDays,
		RecencyMaxDays: st.RecencyMaxDays[:], FrequencyMin: st.FrequencyMin[:],
		MonetaryMinMinor: st.MonetaryMinMinor[:], Now: now,
	})
	if err != nil {
		return Settings{}, interpret("store segment settings", err)
	}
	return settingsFromRow(row)
}

func settingsFromRow(r dbgen.SegmentSetting) (Settings, error) {
	if len(r.RecencyMaxDays) != 4 || len(r.FrequencyMin) != 4 || len(r.MonetaryMinMinor) != 4 {
		return Settings{}, errors.New("segment settings: stored thresholds are not four values each")
	}
	return Settings{
		BaseCurrency: r.BaseCurrency, WindowDays: r.WindowDays,
		RecencyMaxDays: [4]int32(r.RecencyMaxDays), FrequencyMin: [4]int64(r.FrequencyMin),
		MonetaryMinMinor: [4]int64(r.MonetaryMinMinor), Version: r.Version, UpdateTime: r.UpdateTime.UTC(),
	}, nil
}

// RecomputeParams selects what SegmentRecompute computes.
type RecomputeParams struct {
	TenantID   uuid.UUID
	CustomerID uuid.UUID // uuid.Nil: every customer of the tenant
	Settings   Settings
	Now        time.Time
}

// Recompute runs the set-based RFM recompute (queries/segments.sql) and
// returns the customers whose segment changed, in customer id order.
func (s *Store) Recompute(ctx context.Context, tx pgx.Tx, p RecomputeParams) ([]Membership, error) {
	arg := dbgen.SegmentRecomputeParams{
		TenantID:         p.TenantID,
		Now:              p.Now,
		WindowStart:      p.Now.AddDate(0, 0, -int(p.Settings.WindowDays)),
		BaseCurrency:     p.Settings.BaseCurrency,
		RecencyMaxDays:   p.Settings.RecencyMaxDays[:],
		FrequencyMin:     p.Settings.FrequencyMin[:],
		MonetaryMinMinor: p.Settings.MonetaryMinMinor[:],
	}
	if p.CustomerID != uuid.Nil {
		arg.CustomerID = uuid.NullUUID{UUID: p.CustomerID, Valid: true}
	}
	rows, err := s.q.SegmentRecompute(ctx, tx, arg)
	if err != nil {
		return nil, interpret("recompute segments", err)
	}
	out := make([]Membership, len(rows))
	for i, r := range rows {
		out[i] = Membership{
			CustomerID: r.CustomerID, Segment: r.Segment, PreviousSegment: r.PreviousSegment,
			RecencyScore: int32(r.RecencyScore), FrequencyScore: int32(r.FrequencyScore),
			MonetaryScore: int32(r.MonetaryScore), LastPurchaseTime: r.LastPurchaseTime.UTC(),
			Frequency: r.Frequency, MonetaryMinor: r.MonetaryMinor, MonetaryCurrency: r.MonetaryCurrency,
			SegmentVersion: r.SegmentVersion, SegmentChangeTime: r.SegmentChangeTime.UTC(),
			UpdateTime: p.Now.UTC(),
		}
	}
	return out, nil
}

// Membership returns a customer's stored segment; ErrNotFound if the
// customer has none (no purchase yet).
func (s *Store) Membership(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (Membership, error) {
	row, err := s.q.SegmentGet(ctx, db, dbgen.SegmentGetParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return Membership{}, interpret("get customer segment", err)
	}
	return membershipFromRow(row), nil
}

// Members returns up to limit customers of a segment after the cursor, who
// entered it most recently first.
func (s *Store) Members(ctx context.Context, db DB, tenantID uuid.UUID, segment string, after Cursor, limit int) ([]Membership, error) {
	before := after.orStart()
	rows, err := s.q.SegmentList(ctx, db, dbgen.SegmentListParams{
		TenantID: tenantID, Segment: segment, BeforeTime: before.Time, BeforeID: before.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list customers by segment", err)
	}
	out := make([]Membership, len(rows))
	for i, r := range rows {
		out[i] = membershipFromRow(r)
	}
	return out, nil
}

// SegmentCounts returns how many customers each segment holds; segments
// without customers are absent.
func (s *Store) SegmentCounts(ctx context.Context, db DB, tenantID uuid.UUID) (map[string]int64, error) {
	rows, err := s.q.SegmentCounts(ctx, db, tenantID)
	if err != nil {
		return nil, interpret("count segments", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Segment] = r.Customers
	}
	return out, nil
}

func membershipFromRow(r dbgen.CustomerSegment) Membership {
	return Membership{
		CustomerID: r.CustomerID, Segment: r.Segment, PreviousSegment: r.PreviousSegment,
		RecencyScore: int32(r.RecencyScore), FrequencyScore: int32(r.FrequencyScore),
		MonetaryScore: int32(r.MonetaryScore), LastPurchaseTime: r.LastPurchaseTime.UTC(),
		Frequency: r.Frequency, MonetaryMinor: r.MonetaryMinor, MonetaryCurrency: r.MonetaryCurrency,
		SegmentVersion: r.SegmentVersion, SegmentChangeTime: r.SegmentChangeTime.UTC(), UpdateTime: r.UpdateTime.UTC(),
	}
}

// AddToSchedule puts the tenant on the recompute schedule, due now, unless
// it is there already.
func (s *Store) AddToSchedule(ctx context.Context, db DB, tenantID uuid.UUID, now time.Time) error {
	if err := s.q.SegmentScheduleAdd(ctx, db, dbgen.SegmentScheduleAddParams{TenantID: tenantID, Now: now}); err != nil {
		return interpret("schedule segment recompute", err)
	}
	return nil
}

// BringForward makes the tenant's next scheduled recompute due now.
func (s *Store) BringForward(ctx context.Context, db DB, tenantID uuid.UUID, now time.Time) error {
	if err := s.q.SegmentScheduleBringForward(ctx, db, dbgen.SegmentScheduleBringForwardParams{TenantID: tenantID, Now: now}); err != nil {
		return interpret("bring segment recompute forward", err)
	}
	return nil
}

// ClaimDue claims one tenant whose scheduled recompute is due, for the rest
// of tx, skipping tenants other transactions hold; false if none is due.
// The transaction's statement timeout becomes timeout.
func (s *Store) ClaimDue(ctx context.Context, tx pgx.Tx, now time.Time, timeout time.Duration) (uuid.UUID, bool, error) {
	row, err := s.q.SegmentScheduleClaim(ctx, tx, dbgen.SegmentScheduleClaimParams{
		Now: now, StatementTimeout: fmt.Sprint(timeout.Milliseconds()),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, interpret("claim due segment recompute", err)
	}
	return row.TenantID, true, nil
}

// LockSchedule takes the tenant's schedule row for the rest of tx, waiting
// for a scheduled round in progress; the transaction's statement timeout
// becomes timeout.
func (s *Store) LockSchedule(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now time.Time, timeout time.Duration) error {
	if err := s.AddToSchedule(ctx, tx, tenantID, now); err != nil {
		return err
	}
	_, err := s.q.SegmentScheduleLock(ctx, tx, dbgen.SegmentScheduleLockParams{
		TenantID: tenantID, StatementTimeout: fmt.Sprint(timeout.Milliseconds()),
	})
	if err != nil {
		return interpret("lock segment schedule", err)
	}
	return nil
}

// FinishRound records a scheduled round of the tenant and its next due time.
func (s *Store) FinishRound(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now, next time.Time, changed int64) error {
	err := s.q.SegmentScheduleDone(ctx, tx, dbgen.SegmentScheduleDoneParams{
		TenantID: tenantID, Now: now, NextRunTime: next, Changed: changed,
	})
	if err != nil {
		return interpret("finish segment round", err)
	}
	return nil
}

// RecordRun records an unscheduled recompute of the tenant.
func (s *Store) RecordRun(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now time.Time, changed int64) error {
	if err := s.q.SegmentScheduleRan(ctx, tx, dbgen.SegmentScheduleRanParams{TenantID: tenantID, Now: now, Changed: changed}); err != nil {
		return interpret("record segment recompute", err)
	}
	return nil
}

// NextDue returns the earliest due time on the schedule; false if the
// schedule is empty.
func (s *Store) NextDue(ctx context.Context, db DB) (time.Time, bool, error) {
	t, err := s.q.SegmentScheduleNextDue(ctx, db)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, interpret("next due segment recompute", err)
	}
	return t.UTC(), true, nil
}

// orStart turns the zero cursor into one before every row.
func (c Cursor) orStart() Cursor {
	if c.Time.IsZero() {
		return Cursor{Time: infinity, ID: uuid.Max}
	}
	return c
}

// infinity sorts after every stored time (timestamptz 'infinity' would need a
// pgtype value; year 9999 is as good for a keyset start).
var infinity = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// interpret classifies a database error once; a missing row is ErrNotFound.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// CustomerExists reports whether the customer exists in the tenant.
func (s *Store) CustomerExists(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (bool, error) {
	ok, err := s.q.PurchaseCustomerExists(ctx, db, dbgen.PurchaseCustomerExistsParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return false, interpret("look up customer", err)
	}
	return ok, nil
}

// CustomerMergedInto reports whether the customer exists in the tenant and
// the customer it was merged into (uuid.Nil if none).
func (s *Store) CustomerMergedInto(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (exists bool, mergedInto uuid.UUID, err error) {
	into, err := s.q.SegmentCustomerMergedInto(ctx, db, dbgen.SegmentCustomerMergedIntoParams{TenantID: tenantID, CustomerID: customerID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, uuid.Nil, nil
	}
	if err != nil {
		return false, uuid.Nil, interpret("look up customer", err)
	}
	return true, into.UUID, nil
}

// Postpone makes the tenant's next scheduled recompute due no earlier than
// next.
func (s *Store) Postpone(ctx context.Context, db DB, tenantID uuid.UUID, next time.Time) error {
	if err := s.q.SegmentSchedulePostpone(ctx, db, dbgen.SegmentSchedulePostponeParams{TenantID: tenantID, NextRunTime: next}); err != nil {
		return interpret("postpone segment recompute", err)
	}
	return nil
}
