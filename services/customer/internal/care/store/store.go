// Package store keeps the care calendar and care plans in the customer
// schema. It owns their SQL (queries/*.sql, compiled by sqlc into dbgen) and
// the plain record types its methods take and return: dbgen rows never leave
// it, nothing here knows protobuf, and sealed fields stay ciphertext here
// (the care package seals and opens them).
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
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/care/store/dbgen"
)

// ErrNotFound means no such row in the tenant.
var ErrNotFound = errors.New("not found")

// DB is a pool, a connection or a transaction.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Occasion kinds as stored.
const (
	KindBirthday         = "birthday"
	KindHoliday          = "holiday"
	KindPurchaseFollowUp = "purchase_follow_up"
	KindTicketFollowUp   = "ticket_follow_up"
	KindAnniversary      = "anniversary"
)

// Task states as stored.
const (
	StatusOpen = "open"
	StatusDone = "done"
)

// Settings are a tenant's care settings (see the care package for their
// meaning and defaults).
type Settings struct {
	BirthdayEnabled      bool
	AnniversaryEnabled   bool
	PurchaseFollowUpDays int32
	TicketFollowUpDays   int32
	DefaultTimeZone      string
	DueHour              int32
	// TemplateKeys are the outreach template keys per occasion kind
	// ("" means no automatic message).
	TemplateKeys TemplateKeys
	Version      int64 // 0: never stored, the defaults
	UpdateTime   time.Time
}

// TemplateKeys are a tenant's outreach template keys, per occasion kind.
type TemplateKeys struct {
	Birthday, Holiday, Anniversary, PurchaseFollowUp, TicketFollowUp string
}

// Occasion is one recorded occasion of a customer.
type Occasion struct {
	TenantID    uuid.UUID
	ID          uuid.UUID
	CustomerID  uuid.UUID
	Kind        string
	Key         string
	Date        time.Time // a date: midnight UTC
	DueTime     time.Time
	TimeZone    string
	ReferenceID uuid.UUID // uuid.Nil for birthdays and anniversaries
	CreateTime  time.Time
}

// Holiday is a day of a tenant's calendar: Date set, or Month and Day.
type Holiday struct {
	ID         uuid.UUID
	Name       string
	Date       time.Time // zero for a recurring holiday
	Month      int32     // 0 for a dated holiday
	Day        int32
	OccursOn   time.Time // HolidaysInYear only
	CreateTime time.Time
}

// Plan is a care plan with its tasks; titles are sealed.
type Plan struct {
	TenantID    uuid.UUID
	ID          uuid.UUID
	CustomerID  uuid.UUID
	TitleSealed []byte
	CreatedBy   string
	CreateTime  time.Time
	Tasks       []Task
}

// Task is one task of a plan; title and note are sealed.
type Task struct {
	ID                uuid.UUID
	PlanID            uuid.UUID
	CustomerID        uuid.UUID
	Position          int32
	TitleSealed       []byte
	Assignee          string
	DueTime           time.Time
	Status            string
	CompleteTime      time.Time // zero while open
	CompletedBy       string
	OutcomeNoteSealed []byte // nil: no note
}

// Cursor is a keyset position in a list ordered by (Time, ID); the zero
// Cursor is the start.
type Cursor struct {
	Time time.Time
	ID   uuid.UUID
}

// Store runs the queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// interpret classifies a database error once; a missing row is ErrNotFound.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}

// Far ends of keyset lists (timestamptz 'infinity' would need a pgtype
// value; these are as good).
var (
	farFuture = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	farPast   = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ---- settings and schedule

// Settings returns the tenant's stored settings; ErrNotFound if it never
// stored any.
func (s *Store) Settings(ctx context.Context, db DB, tenantID uuid.UUID, forUpdate bool) (Settings, error) {
	var (
		row dbgen.CareSetting
		err error
	)
	if forUpdate {
		row, err = s.q.CareSettingsLock(ctx, db, tenantID)
	} else {
		row, err = s.q.CareSettingsGet(ctx, db, tenantID)
	}
	if err != nil {
		return Settings{}, interpret("get care settings", err)
	}
	return settingsFromRow(row), nil
}

// PutSettings stores the tenant's settings as their next version.
func (s *Store) PutSettings(ctx context.Context, db DB, tenantID uuid.UUID, st Settings, now time.Time) (Settings, error) {
	row, err := s.q.CareSettingsUpsert(ctx, db, dbgen.CareSettingsUpsertParams{
		TenantID: tenantID, BirthdayEnabled: st.BirthdayEnabled, AnniversaryEnabled: st.AnniversaryEnabled,
		PurchaseFollowupDays: st.PurchaseFollowUpDays, TicketFollowupDays: st.TicketFollowUpDays,
		DefaultTimeZone: st.DefaultTimeZone, DueHour: int16(st.DueHour), //nolint:gosec // 0..23, checked
		BirthdayTemplateKey: st.TemplateKeys.Birthday, HolidayTemplateKey: st.TemplateKeys.Holiday,
		AnniversaryTemplateKey: st.TemplateKeys.Anniversary, PurchaseFollowupTemplateKey: st.TemplateKeys.PurchaseFollowUp,
		TicketFollowupTemplateKey: st.TemplateKeys.TicketFollowUp,
		Now:                       now,
	})
	if err != nil {
		return Settings{}, interpret("store care settings", err)
	}
	return settingsFromRow(row), nil
}

func settingsFromRow(r dbgen.CareSetting) Settings {
	return Settings{
		BirthdayEnabled: r.BirthdayEnabled, AnniversaryEnabled: r.AnniversaryEnabled,
		PurchaseFollowUpDays: r.PurchaseFollowupDays, TicketFollowUpDays: r.TicketFollowupDays,
		DefaultTimeZone: r.DefaultTimeZone, DueHour: int32(r.DueHour), Version: r.Version,
		TemplateKeys: TemplateKeys{Birthday: r.BirthdayTemplateKey, Holiday: r.HolidayTemplateKey,
			Anniversary: r.AnniversaryTemplateKey, PurchaseFollowUp: r.PurchaseFollowupTemplateKey,
			TicketFollowUp: r.TicketFollowupTemplateKey},
		UpdateTime: r.UpdateTime.UTC(),
	}
}

// HolidayName returns the name of one of the tenant's holidays;
// ErrNotFound if it has none with that id (any more).
func (s *Store) HolidayName(ctx context.Context, db DB, tenantID, id uuid.UUID) (string, error) {
	name, err := s.q.CareHolidayName(ctx, db, dbgen.CareHolidayNameParams{TenantID: tenantID, ID: id})
	if err != nil {
		return "", interpret("get care holiday name", err)
	}
	return name, nil
}

// TimeZones returns the zone names the database knows.
func (s *Store) TimeZones(ctx context.Context, db DB) ([]string, error) {
	zones, err := s.q.CareTimeZones(ctx, db)
	if err != nil {
		return nil, interpret("list time zones", err)
	}
	return zones, nil
}

// BringForward puts the tenant on the schedule, due now, or makes its next
// round due now.
func (s *Store) BringForward(ctx context.Context, db DB, tenantID uuid.UUID, now time.Time) error {
	if err := s.q.CareScheduleBringForward(ctx, db, dbgen.CareScheduleBringForwardParams{TenantID: tenantID, Now: now}); err != nil {
		return interpret("bring care round forward", err)
	}
	return nil
}

// ClaimDue claims one tenant whose round is due for the rest of tx,
// skipping tenants other transactions hold; false if none is due. The
// transaction's statement timeout becomes timeout.
func (s *Store) ClaimDue(ctx context.Context, tx pgx.Tx, now time.Time, timeout time.Duration) (uuid.UUID, bool, error) {
	row, err := s.q.CareScheduleClaim(ctx, tx, dbgen.CareScheduleClaimParams{
		Now: now, StatementTimeout: fmt.Sprint(timeout.Milliseconds()),
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return uuid.Nil, false, nil
	}
	if err != nil {
		return uuid.Nil, false, interpret("claim due care round", err)
	}
	return row.TenantID, true, nil
}

// FinishRound records the tenant's round and when the next is due.
func (s *Store) FinishRound(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, now, next time.Time) error {
	if err := s.q.CareScheduleDone(ctx, tx, dbgen.CareScheduleDoneParams{TenantID: tenantID, Now: now, NextRunTime: next}); err != nil {
		return interpret("finish care round", err)
	}
	return nil
}

// Postpone makes the tenant's next round due no earlier than next.
func (s *Store) Postpone(ctx context.Context, db DB, tenantID uuid.UUID, next time.Time) error {
	if err := s.q.CareSchedulePostpone(ctx, db, dbgen.CareSchedulePostponeParams{TenantID: tenantID, NextRunTime: next}); err != nil {
		return interpret("postpone care round", err)
	}
	return nil
}

// NextDue returns the earliest due round; false if the schedule is empty.
func (s *Store) NextDue(ctx context.Context, db DB) (time.Time, bool, error) {
	t, err := s.q.CareScheduleNextDue(ctx, db)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, interpret("next due care round", err)
	}
	return t.UTC(), true, nil
}

// ---- occasions

// DueParams select the occasions InsertDue records (see
// queries/occasions.sql).
type DueParams struct {
	TenantID     uuid.UUID
	Now          time.Time
	WindowStart  time.Time
	FirstDay     time.Time
	LastDay      time.Time
	Zones        []string
	DefaultZone  string
	DueHour      int32
	FollowUpDays int32 // follow-up kinds only
	// SourceAfter and SourceBefore bound the purchase or resolution times
	// whose follow-up can be due in the window (follow-up kinds only).
	SourceAfter  time.Time
	SourceBefore time.Time
	// Months and Days are the (month, day) pairs birthdays and
	// anniversaries are looked up by (MonthDays).
	Months []int16
	Days   []int16
}

// MonthDays returns the (month, day) pairs of the dates from first to last:
// the birthdays (or joining days) that can fall on them. The last day of a
// month also stands for the days that month lacks (Feb 28 of a common year
// for Feb 29, Apr 30 for an impossible Apr 31), which fall on it.
func MonthDays(first, last time.Time) (months, days []int16) {
	for d := first; !d.After(last); d = d.AddDate(0, 0, 1) {
		end := d.Day()
		if d.AddDate(0, 0, 1).Month() != d.Month() {
			end = 31
		}
		for day := d.Day(); day <= end; day++ {
			months = append(months, int16(d.Month())) //nolint:gosec // 1..12
			days = append(days, int16(day))           //nolint:gosec // 1..31
		}
	}
	return months, days
}

// InsertDue records the due occasions of one kind for the tenant and
// returns those this call inserted (not those recorded before or by a
// racing transaction), in customer order.
func (s *Store) InsertDue(ctx context.Context, tx pgx.Tx, kind string, p DueParams) ([]Occasion, error) {
	var (
		rows []dbgen.CareOccasion
		err  error
	)
	switch kind {
	case KindBirthday:
		rows, err = s.q.CareOccasionsInsertBirthdays(ctx, tx, dbgen.CareOccasionsInsertBirthdaysParams{
			TenantID: p.TenantID, Now: p.Now, WindowStart: p.WindowStart, Months: p.Months, Days: p.Days,
			DefaultZone: p.DefaultZone, DueHour: p.DueHour, Zones: p.Zones,
		})
	case KindAnniversary:
		rows, err = s.q.CareOccasionsInsertAnniversaries(ctx, tx, dbgen.CareOccasionsInsertAnniversariesParams{
			TenantID: p.TenantID, Now: p.Now, WindowStart: p.WindowStart, Months: p.Months, Days: p.Days,
			DefaultZone: p.DefaultZone, DueHour: p.DueHour, Zones: p.Zones,
		})
	case KindHoliday:
		rows, err = s.q.CareOccasionsInsertHolidays(ctx, tx, dbgen.CareOccasionsInsertHolidaysParams{
			TenantID: p.TenantID, Now: p.Now, WindowStart: p.WindowStart, FirstDay: p.FirstDay, LastDay: p.LastDay,
			DefaultZone: p.DefaultZone, DueHour: p.DueHour, Zones: p.Zones,
		})
		if err == nil {
			// After the holiday statement, so a date is marked done only
			// once a round has recorded its occasions.
			err = s.q.CareHolidayDatesMarkDone(ctx, tx, dbgen.CareHolidayDatesMarkDoneParams{
				TenantID: p.TenantID, Now: p.Now, FirstDay: p.FirstDay, LastDay: p.LastDay, Zones: p.Zones,
			})
		}
	case KindPurchaseFollowUp:
		rows, err = s.q.CareOccasionsInsertPurchaseFollowUps(ctx, tx, dbgen.CareOccasionsInsertPurchaseFollowUpsParams{
			TenantID: p.TenantID, Now: p.Now, WindowStart: p.WindowStart, FirstDay: p.FirstDay, LastDay: p.LastDay,
			DefaultZone: p.DefaultZone, DueHour: p.DueHour, Zones: p.Zones, FollowUpDays: p.FollowUpDays,
			SourceAfter: p.SourceAfter, SourceBefore: p.SourceBefore,
		})
	case KindTicketFollowUp:
		rows, err = s.q.CareOccasionsInsertTicketFollowUps(ctx, tx, dbgen.CareOccasionsInsertTicketFollowUpsParams{
			TenantID: p.TenantID, Now: p.Now, WindowStart: p.WindowStart, FirstDay: p.FirstDay, LastDay: p.LastDay,
			DefaultZone: p.DefaultZone, DueHour: p.DueHour, Zones: p.Zones, FollowUpDays: p.FollowUpDays,
			SourceAfter: p.SourceAfter, SourceBefore: p.SourceBefore,
		})
	default:
		return nil, fmt.Errorf("insert due occasions: unknown kind %q", kind)
	}
	if err != nil {
		return nil, interpret("insert due "+kind+" occasions", err)
	}
	return occasionsFromRows(rows), nil
}

func occasionsFromRows(rows []dbgen.CareOccasion) []Occasion {
	out := make([]Occasion, len(rows))
	for i, r := range rows {
		out[i] = Occasion{
			TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, Kind: r.Kind, Key: r.OccasionKey,
			Date: dateUTC(r.OccasionDate), DueTime: r.DueTime.UTC(), TimeZone: r.TimeZone,
			ReferenceID: r.ReferenceID.UUID, CreateTime: r.CreateTime.UTC(),
		}
	}
	return out
}

func dateUTC(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// PruneResolutions forgets the tenant's resolved tickets older than before.
func (s *Store) PruneResolutions(ctx context.Context, db DB, tenantID uuid.UUID, before time.Time) error {
	if err := s.q.CareTicketResolutionsPrune(ctx, db, dbgen.CareTicketResolutionsPruneParams{TenantID: tenantID, Before: before}); err != nil {
		return interpret("prune ticket resolutions", err)
	}
	return nil
}

// RecordResolution records a resolved ticket (the latest resolution wins).
func (s *Store) RecordResolution(ctx context.Context, db DB, tenantID, ticketID, customerID uuid.UUID, at time.Time) error {
	err := s.q.CareTicketResolutionUpsert(ctx, db, dbgen.CareTicketResolutionUpsertParams{
		TenantID: tenantID, TicketID: ticketID, CustomerID: customerID, ResolveTime: at,
	})
	if err != nil {
		return interpret("record ticket resolution", err)
	}
	return nil
}

// OccasionsOf returns up to limit occasions of a customer before the
// cursor (Time is the date), newest date first; kind "" means all.
func (s *Store) OccasionsOf(ctx context.Context, db DB, tenantID, customerID uuid.UUID, kind string, before Cursor, limit int) ([]Occasion, error) {
	if before.Time.IsZero() {
		before = Cursor{Time: farFuture, ID: uuid.Max}
	}
	rows, err := s.q.CareOccasionsByCustomer(ctx, db, dbgen.CareOccasionsByCustomerParams{
		TenantID: tenantID, CustomerID: customerID, Kind: kind, BeforeDate: before.Time, BeforeID: before.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list occasions of customer", err)
	}
	return occasionsFromRows(rows), nil
}

// OccasionsBetween returns up to limit of the tenant's occasions dated from
// start to end (inclusive) after the cursor, by date.
func (s *Store) OccasionsBetween(ctx context.Context, db DB, tenantID uuid.UUID, start, end time.Time, kind string, after Cursor, limit int) ([]Occasion, error) {
	if after.Time.IsZero() {
		after = Cursor{Time: farPast, ID: uuid.Nil}
	}
	rows, err := s.q.CareOccasionsByDate(ctx, db, dbgen.CareOccasionsByDateParams{
		TenantID: tenantID, StartDate: start, EndDate: end, Kind: kind, AfterDate: after.Time, AfterID: after.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list occasions by date", err)
	}
	return occasionsFromRows(rows), nil
}

// CustomerExists reports whether the customer exists in the tenant.
func (s *Store) CustomerExists(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (bool, error) {
	ok, err := s.q.CareCustomerExists(ctx, db, dbgen.CareCustomerExistsParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return false, interpret("look up customer", err)
	}
	return ok, nil
}

// CustomerForWrite reports, holding the customer's row until tx ends,
// whether the customer exists in the tenant and the customer it was merged
// into (uuid.Nil if none).
func (s *Store) CustomerForWrite(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (exists bool, mergedInto uuid.UUID, err error) {
	into, err := s.q.CareCustomerForWrite(ctx, db, dbgen.CareCustomerForWriteParams{TenantID: tenantID, CustomerID: customerID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, uuid.Nil, nil
	}
	if err != nil {
		return false, uuid.Nil, interpret("look up customer", err)
	}
	return true, into.UUID, nil
}

// ---- holidays

// InsertHoliday stores a holiday.
func (s *Store) InsertHoliday(ctx context.Context, db DB, tenantID uuid.UUID, h Holiday) (Holiday, error) {
	arg := dbgen.CareHolidayInsertParams{TenantID: tenantID, ID: h.ID, Name: h.Name, CreateTime: h.CreateTime}
	if h.Month != 0 {
		arg.Month = pgtype.Int2{Int16: int16(h.Month), Valid: true} //nolint:gosec // 1..12
		arg.Day = pgtype.Int2{Int16: int16(h.Day), Valid: true}     //nolint:gosec // 1..31
	} else {
		arg.HolidayDate = pgtype.Date{Time: h.Date, Valid: true}
	}
	row, err := s.q.CareHolidayInsert(ctx, db, arg)
	if err != nil {
		return Holiday{}, interpret("insert holiday", err)
	}
	return holidayFromRow(row.ID, row.Name, row.HolidayDate, row.Month, row.Day, row.CreateTime), nil
}

// HolidaysInYear returns the tenant's holidays falling in year, by date.
func (s *Store) HolidaysInYear(ctx context.Context, db DB, tenantID uuid.UUID, year int32) ([]Holiday, error) {
	rows, err := s.q.CareHolidaysInYear(ctx, db, dbgen.CareHolidaysInYearParams{TenantID: tenantID, Year: year})
	if err != nil {
		return nil, interpret("list holidays", err)
	}
	out := make([]Holiday, len(rows))
	for i, r := range rows {
		out[i] = holidayFromRow(r.ID, r.Name, r.HolidayDate, r.Month, r.Day, r.CreateTime)
		out[i].OccursOn = dateUTC(r.OccursOn)
	}
	return out, nil
}

func holidayFromRow(id uuid.UUID, name string, date pgtype.Date, month, day pgtype.Int2, created time.Time) Holiday {
	h := Holiday{ID: id, Name: name, CreateTime: created.UTC()}
	if date.Valid {
		h.Date = dateUTC(date.Time)
	}
	if month.Valid {
		h.Month, h.Day = int32(month.Int16), int32(day.Int16)
	}
	return h
}

// DeleteHoliday deletes a holiday; ErrNotFound if the tenant has no such.
func (s *Store) DeleteHoliday(ctx context.Context, db DB, tenantID, id uuid.UUID) error {
	n, err := s.q.CareHolidayDelete(ctx, db, dbgen.CareHolidayDeleteParams{TenantID: tenantID, ID: id})
	if err != nil {
		return interpret("delete holiday", err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// ---- plans and tasks

// InsertPlan stores a plan and its tasks.
func (s *Store) InsertPlan(ctx context.Context, tx pgx.Tx, p Plan) error {
	err := s.q.CarePlanInsert(ctx, tx, dbgen.CarePlanInsertParams{
		TenantID: p.TenantID, ID: p.ID, CustomerID: p.CustomerID, TitleSealed: p.TitleSealed,
		CreatedBy: p.CreatedBy, CreateTime: p.CreateTime,
	})
	if err != nil {
		return interpret("insert care plan", err)
	}
	n := len(p.Tasks)
	arg := dbgen.CareTasksInsertParams{
		TenantID: p.TenantID, PlanID: p.ID, CustomerID: p.CustomerID, Ids: make([]uuid.UUID, n),
		Positions: make([]int32, n), TitlesSealed: make([][]byte, n), Assignees: make([]string, n), DueTimes: make([]time.Time, n),
	}
	for i, t := range p.Tasks {
		arg.Ids[i], arg.Positions[i], arg.TitlesSealed[i] = t.ID, t.Position, t.TitleSealed
		arg.Assignees[i], arg.DueTimes[i] = t.Assignee, t.DueTime
	}
	if err := s.q.CareTasksInsert(ctx, tx, arg); err != nil {
		return interpret("insert care tasks", err)
	}
	return nil
}

// Plan returns one plan of a customer with its tasks.
func (s *Store) Plan(ctx context.Context, db DB, tenantID, customerID, id uuid.UUID) (Plan, error) {
	row, err := s.q.CarePlanGet(ctx, db, dbgen.CarePlanGetParams{TenantID: tenantID, CustomerID: customerID, ID: id})
	if err != nil {
		return Plan{}, interpret("get care plan", err)
	}
	plans, err := s.withTasks(ctx, db, tenantID, []dbgen.CarePlan{row})
	if err != nil {
		return Plan{}, err
	}
	return plans[0], nil
}

// Plans returns up to limit plans of a customer before the cursor, newest
// first, with their tasks.
func (s *Store) Plans(ctx context.Context, db DB, tenantID, customerID uuid.UUID, before Cursor, limit int) ([]Plan, error) {
	if before.Time.IsZero() {
		before = Cursor{Time: farFuture, ID: uuid.Max}
	}
	rows, err := s.q.CarePlansByCustomer(ctx, db, dbgen.CarePlansByCustomerParams{
		TenantID: tenantID, CustomerID: customerID, BeforeTime: before.Time, BeforeID: before.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list care plans", err)
	}
	return s.withTasks(ctx, db, tenantID, rows)
}

// PlansOf returns every plan of a customer, oldest first, with tasks.
func (s *Store) PlansOf(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Plan, error) {
	rows, err := s.q.CarePlansOfCustomer(ctx, db, dbgen.CarePlansOfCustomerParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list care plans of customer", err)
	}
	return s.withTasks(ctx, db, tenantID, rows)
}

func (s *Store) withTasks(ctx context.Context, db DB, tenantID uuid.UUID, rows []dbgen.CarePlan) ([]Plan, error) {
	out := make([]Plan, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, len(rows))
	at := make(map[uuid.UUID]int, len(rows))
	for i, r := range rows {
		out[i] = Plan{TenantID: r.TenantID, ID: r.ID, CustomerID: r.CustomerID, TitleSealed: r.TitleSealed,
			CreatedBy: r.CreatedBy, CreateTime: r.CreateTime.UTC()}
		ids[i] = r.ID
		at[r.ID] = i
	}
	tasks, err := s.q.CareTasksOfPlans(ctx, db, dbgen.CareTasksOfPlansParams{TenantID: tenantID, PlanIds: ids})
	if err != nil {
		return nil, interpret("list care tasks of plans", err)
	}
	for _, t := range tasks {
		p := &out[at[t.PlanID]]
		p.Tasks = append(p.Tasks, taskFromRow(t))
	}
	return out, nil
}

func taskFromRow(r dbgen.CareTask) Task {
	t := Task{
		ID: r.ID, PlanID: r.PlanID, CustomerID: r.CustomerID, Position: r.Position, TitleSealed: r.TitleSealed,
		Assignee: r.Assignee, DueTime: r.DueTime.UTC(), Status: r.Status, OutcomeNoteSealed: r.OutcomeNoteSealed,
	}
	if r.CompleteTime.Valid {
		t.CompleteTime = r.CompleteTime.Time.UTC()
	}
	if r.CompletedBy.Valid {
		t.CompletedBy = r.CompletedBy.String
	}
	return t
}

// LockTask reads a task and holds it for the rest of tx.
func (s *Store) LockTask(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID) (Task, error) {
	row, err := s.q.CareTaskLock(ctx, tx, dbgen.CareTaskLockParams{TenantID: tenantID, ID: id})
	if err != nil {
		return Task{}, interpret("lock care task", err)
	}
	return taskFromRow(row), nil
}

// CompleteTask marks an open task done; ErrNotFound if it is not open.
func (s *Store) CompleteTask(ctx context.Context, tx pgx.Tx, tenantID, id uuid.UUID, by string, at time.Time, noteSealed []byte) (Task, error) {
	row, err := s.q.CareTaskComplete(ctx, tx, dbgen.CareTaskCompleteParams{
		TenantID: tenantID, ID: id, CompletedBy: pgtype.Text{String: by, Valid: true},
		CompleteTime: pgtype.Timestamptz{Time: at, Valid: true}, OutcomeNoteSealed: noteSealed,
	})
	if err != nil {
		return Task{}, interpret("complete care task", err)
	}
	return taskFromRow(row), nil
}

// TaskFilter selects the worklist.
type TaskFilter struct {
	Assignee  string    // "": everyone
	Status    string    // "": both
	DueBefore time.Time // zero: any time
}

// Tasks returns up to limit of the tenant's tasks matching f after the
// cursor, soonest due first.
func (s *Store) Tasks(ctx context.Context, db DB, tenantID uuid.UUID, f TaskFilter, after Cursor, limit int) ([]Task, error) {
	if after.Time.IsZero() {
		after = Cursor{Time: farPast, ID: uuid.Nil}
	}
	before := f.DueBefore
	if before.IsZero() {
		before = farFuture
	}
	rows, err := s.q.CareTasksList(ctx, db, dbgen.CareTasksListParams{
		TenantID: tenantID, Assignee: f.Assignee, Status: f.Status, DueBefore: before,
		AfterTime: after.Time, AfterID: after.ID,
		RowLimit: int32(limit), //nolint:gosec // bounded by the caller
	})
	if err != nil {
		return nil, interpret("list care tasks", err)
	}
	out := make([]Task, len(rows))
	for i, r := range rows {
		out[i] = taskFromRow(r)
	}
	return out, nil
}

// ---- lifecycle

// OccasionsOfCustomer returns every occasion of a customer, by date.
func (s *Store) OccasionsOfCustomer(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Occasion, error) {
	rows, err := s.q.CareOccasionsOfCustomer(ctx, db, dbgen.CareOccasionsOfCustomerParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list occasions of customer", err)
	}
	return occasionsFromRows(rows), nil
}

// MergeOccasions moves the sources' occasions to the primary, keeping the
// primary's where both have one occasion key, and deletes the sources'
// remaining ones. It returns how many it moved.
func (s *Store) MergeOccasions(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	moved, err := s.q.CareOccasionsMerge(ctx, tx, dbgen.CareOccasionsMergeParams{TenantID: tenantID, PrimaryID: primary, SourceIds: sources})
	if err != nil {
		return 0, interpret("merge occasions", err)
	}
	if _, err := s.q.CareOccasionsDeleteOfCustomers(ctx, tx, dbgen.CareOccasionsDeleteOfCustomersParams{TenantID: tenantID, CustomerIds: sources}); err != nil {
		return 0, interpret("delete merged occasions", err)
	}
	return moved, nil
}

// MergeResolutions moves the sources' resolved tickets to the primary.
func (s *Store) MergeResolutions(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	n, err := s.q.CareTicketResolutionsMerge(ctx, tx, dbgen.CareTicketResolutionsMergeParams{TenantID: tenantID, PrimaryID: primary, SourceIds: sources})
	if err != nil {
		return 0, interpret("merge ticket resolutions", err)
	}
	return n, nil
}

// MovePlans gives plans and their tasks to the primary customer, their
// texts already resealed for it (the sealed fields of plans), in two
// statements.
func (s *Store) MovePlans(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, plans []Plan) error {
	if len(plans) == 0 {
		return nil
	}
	pa := dbgen.CarePlansResealMoveParams{TenantID: tenantID, PrimaryID: primary,
		Ids: make([]uuid.UUID, len(plans)), TitlesSealed: make([][]byte, len(plans))}
	ta := dbgen.CareTasksResealMoveParams{TenantID: tenantID, PrimaryID: primary}
	for i, p := range plans {
		pa.Ids[i], pa.TitlesSealed[i] = p.ID, p.TitleSealed
		for _, t := range p.Tasks {
			ta.Ids = append(ta.Ids, t.ID)
			ta.TitlesSealed = append(ta.TitlesSealed, t.TitleSealed)
			ta.OutcomeNotesSealed = append(ta.OutcomeNotesSealed, t.OutcomeNoteSealed)
		}
	}
	if err := s.q.CarePlansResealMove(ctx, tx, pa); err != nil {
		return interpret("move care plans", err)
	}
	if len(ta.Ids) == 0 {
		return nil
	}
	if err := s.q.CareTasksResealMove(ctx, tx, ta); err != nil {
		return interpret("move care tasks", err)
	}
	return nil
}

// LockTasksOf locks the customers' tasks until tx ends (see
// CareTasksLockOfCustomers).
func (s *Store) LockTasksOf(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID, customers []uuid.UUID) error {
	if err := s.q.CareTasksLockOfCustomers(ctx, tx, dbgen.CareTasksLockOfCustomersParams{
		TenantID: tenantID, CustomerIds: customers}); err != nil {
		return interpret("lock tasks", err)
	}
	return nil
}

// EraseCustomer deletes a customer's occasions, resolved tickets and plans
// (tasks go with their plans).
func (s *Store) EraseCustomer(ctx context.Context, tx pgx.Tx, tenantID, customerID uuid.UUID) error {
	if _, err := s.q.CareOccasionsDeleteOfCustomers(ctx, tx, dbgen.CareOccasionsDeleteOfCustomersParams{
		TenantID: tenantID, CustomerIds: []uuid.UUID{customerID}}); err != nil {
		return interpret("erase occasions", err)
	}
	if err := s.q.CareTicketResolutionsDeleteOfCustomer(ctx, tx, dbgen.CareTicketResolutionsDeleteOfCustomerParams{
		TenantID: tenantID, CustomerID: customerID}); err != nil {
		return interpret("erase ticket resolutions", err)
	}
	if _, err := s.q.CarePlansDeleteOfCustomer(ctx, tx, dbgen.CarePlansDeleteOfCustomerParams{
		TenantID: tenantID, CustomerID: customerID}); err != nil {
		return interpret("erase care plans", err)
	}
	return nil
}
