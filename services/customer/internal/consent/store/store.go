// Package store keeps consent, contact preferences, touches and contact
// policies in the customer schema. sqlc rows never leave it: methods take and
// return this package's plain records, which package consent converts to its
// domain types. (It cannot return those types itself: package consent holds
// the server that builds this store, and imports it.)
//
// Every method runs on the DB it is given, so the caller decides the
// transaction; methods that must run under the customer's lock say so.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/consent/store/dbgen"
)

// ErrNotFound is a missing row: no such customer, consent, token or policy.
var ErrNotFound = errors.New("not found")

// DB is what queries run on: a pool, a connection or a transaction.
type DB = dbgen.DBTX

// Store runs the consent queries.
type Store struct{ q *dbgen.Queries }

// New returns a Store.
func New() *Store { return &Store{q: dbgen.New()} }

// Settings is a customer's contact settings with the customer's time zone.
type Settings struct {
	CustomerID     uuid.UUID
	TimeZone       string
	ConsentVersion int64
	// HasQuietHours tells whether QuietStart and QuietEnd (minutes after
	// local midnight) are set.
	HasQuietHours         bool
	QuietStart, QuietEnd  int
	PreferredChannels     []string
	PreferencesUpdateTime time.Time // zero: never changed
	// Erased is true once the customer was erased (package privacy).
	Erased bool
	// MergedInto is set once the customer was merged into another.
	MergedInto uuid.NullUUID
}

// LockSettings locks the customer's settings row FOR UPDATE, creating it on
// first use, and returns it; ErrNotFound when the tenant has no such
// customer. It is the per-customer lock: take it before any write about
// the customer, so writers of one customer queue here and each sees what
// the previous one committed (every later statement under READ COMMITTED
// takes a fresh snapshot).
func (s *Store) LockSettings(ctx context.Context, db DB, tenantID, customerID uuid.UUID, now time.Time) (Settings, error) {
	p := dbgen.ContactSettingsLockParams{TenantID: tenantID, CustomerID: customerID}
	row, err := s.q.ContactSettingsLock(ctx, db, p)
	if errors.Is(pgdb.Classify(err), pgdb.ErrNotFound) {
		// First use. A concurrent creator makes this wait on the unique
		// index until it commits; then the row exists and the lock below
		// queues behind it.
		if _, err := s.q.ContactSettingsCreate(ctx, db, dbgen.ContactSettingsCreateParams{
			TenantID: tenantID, CustomerID: customerID, Now: now,
		}); err != nil {
			return Settings{}, interpret("create contact settings", err)
		}
		row, err = s.q.ContactSettingsLock(ctx, db, p)
	}
	if err != nil {
		return Settings{}, interpret("lock contact settings", err)
	}
	c, err := s.q.ContactSettingsCustomer(ctx, db, dbgen.ContactSettingsCustomerParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return Settings{}, interpret("read customer", err)
	}
	out := settings(customerID, c.TimeZone, row.ConsentVersion, row.QuietStartMinute, row.QuietEndMinute,
		row.PreferredChannels, row.PreferencesUpdateTime)
	out.Erased, out.MergedInto = c.Erased, c.MergedInto
	return out, nil
}

// GetSettings reads the customer's settings without locking; a customer
// without a settings row gets the zero settings. ErrNotFound when the
// tenant has no such customer.
func (s *Store) GetSettings(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (Settings, error) {
	row, err := s.q.ContactSettingsGet(ctx, db, dbgen.ContactSettingsGetParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return Settings{}, interpret("get contact settings", err)
	}
	out := settings(customerID, row.TimeZone, row.ConsentVersion.Int64, row.QuietStartMinute, row.QuietEndMinute,
		row.PreferredChannels, row.PreferencesUpdateTime)
	out.Erased, out.MergedInto = row.Erased, row.MergedInto
	return out, nil
}

func settings(customerID uuid.UUID, tz string, version int64, qs, qe pgtype.Int2, channels []string,
	prefTime pgtype.Timestamptz,
) Settings {
	out := Settings{CustomerID: customerID, TimeZone: tz, ConsentVersion: version, PreferredChannels: channels}
	if qs.Valid && qe.Valid {
		out.HasQuietHours, out.QuietStart, out.QuietEnd = true, int(qs.Int16), int(qe.Int16)
	}
	if out.PreferredChannels == nil {
		out.PreferredChannels = []string{}
	}
	if prefTime.Valid {
		out.PreferencesUpdateTime = prefTime.Time.UTC()
	}
	return out
}

// NextConsentVersion increments the customer's consent version and returns
// it. Under the customer's lock.
func (s *Store) NextConsentVersion(ctx context.Context, db DB, tenantID, customerID uuid.UUID) (int64, error) {
	v, err := s.q.ContactSettingsBumpConsentVersion(ctx, db, dbgen.ContactSettingsBumpConsentVersionParams{
		TenantID: tenantID, CustomerID: customerID,
	})
	if err != nil {
		return 0, interpret("bump consent version", err)
	}
	return v, nil
}

// UpdatePreferences writes quiet hours (nil: none) and preferred channels.
// Under the customer's lock.
func (s *Store) UpdatePreferences(ctx context.Context, db DB, tenantID, customerID uuid.UUID,
	quiet *[2]int, channels []string, now time.Time,
) error {
	p := dbgen.ContactSettingsUpdatePreferencesParams{
		TenantID: tenantID, CustomerID: customerID, PreferredChannels: channels, Now: now,
	}
	if quiet != nil {
		p.QuietStartMinute = pgtype.Int2{Int16: int16(quiet[0]), Valid: true} //nolint:gosec // < 1440, checked by the domain
		p.QuietEndMinute = pgtype.Int2{Int16: int16(quiet[1]), Valid: true}   //nolint:gosec // likewise
	}
	if p.PreferredChannels == nil {
		p.PreferredChannels = []string{}
	}
	if err := s.q.ContactSettingsUpdatePreferences(ctx, db, p); err != nil {
		return interpret("update contact preferences", err)
	}
	return nil
}

// Consent is a current consent.
type Consent struct {
	CustomerID  uuid.UUID
	Channel     string
	Purpose     string
	State       string
	LegalBasis  string
	Source      string
	CaptureTime time.Time
	Version     int64
	UpdateTime  time.Time
}

// Consents returns the customer's current consents by channel, purpose.
func (s *Store) Consents(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Consent, error) {
	rows, err := s.q.ConsentStateList(ctx, db, dbgen.ConsentStateListParams{TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list consents", err)
	}
	out := make([]Consent, len(rows))
	for i, r := range rows {
		out[i] = consentFromRow(r)
	}
	return out, nil
}

// GetConsent returns one current consent; ErrNotFound when none is recorded.
func (s *Store) GetConsent(ctx context.Context, db DB, tenantID, customerID uuid.UUID, channel, purpose string) (Consent, error) {
	r, err := s.q.ConsentStateGet(ctx, db, dbgen.ConsentStateGetParams{
		TenantID: tenantID, CustomerID: customerID, Channel: channel, Purpose: purpose,
	})
	if err != nil {
		return Consent{}, interpret("get consent", err)
	}
	return consentFromRow(r), nil
}

func consentFromRow(r dbgen.ConsentState) Consent {
	return Consent{
		CustomerID: r.CustomerID, Channel: r.Channel, Purpose: r.Purpose, State: r.State,
		LegalBasis: r.LegalBasis, Source: r.Source, CaptureTime: r.CaptureTime.UTC(),
		Version: r.Version, UpdateTime: r.UpdateTime.UTC(),
	}
}

// Event is one consent history entry.
type Event struct {
	ID            uuid.UUID
	CustomerID    uuid.UUID
	Version       int64
	Channel       string
	Purpose       string
	State         string
	PreviousState string
	LegalBasis    string
	Source        string
	CaptureTime   time.Time
	RecordTime    time.Time
	Actor         string
	RequestID     uuid.UUID // uuid.Nil: none
}

// AppendEvent appends e to the history and makes it the current consent of
// its channel × purpose, together: the current state is never written
// without its event. Under the customer's lock, with e.Version from
// NextConsentVersion.
func (s *Store) AppendEvent(ctx context.Context, db DB, tenantID uuid.UUID, e Event) error {
	err := s.q.ConsentEventInsert(ctx, db, dbgen.ConsentEventInsertParams{
		TenantID: tenantID, CustomerID: e.CustomerID, Version: e.Version, ID: e.ID, Channel: e.Channel,
		Purpose: e.Purpose, State: e.State, PreviousState: e.PreviousState, LegalBasis: e.LegalBasis,
		Source: e.Source, CaptureTime: e.CaptureTime, RecordTime: e.RecordTime, Actor: e.Actor,
		RequestID: uuid.NullUUID{UUID: e.RequestID, Valid: e.RequestID != uuid.Nil},
	})
	if err != nil {
		return interpret("append consent event", err)
	}
	err = s.q.ConsentStatePut(ctx, db, dbgen.ConsentStatePutParams{
		TenantID: tenantID, CustomerID: e.CustomerID, Channel: e.Channel, Purpose: e.Purpose, State: e.State,
		LegalBasis: e.LegalBasis, Source: e.Source, CaptureTime: e.CaptureTime, Version: e.Version,
		UpdateTime: e.RecordTime,
	})
	if err != nil {
		return interpret("put consent state", err)
	}
	return nil
}

// Events returns up to limit history entries with a version below
// beforeVersion (0: from the newest), newest first.
func (s *Store) Events(ctx context.Context, db DB, tenantID, customerID uuid.UUID, beforeVersion int64, limit int) ([]Event, error) {
	p := dbgen.ConsentEventListParams{TenantID: tenantID, CustomerID: customerID, RowLimit: int32(limit)} //nolint:gosec // bounded by the caller
	if beforeVersion > 0 {
		p.BeforeVersion = pgtype.Int8{Int64: beforeVersion, Valid: true}
	}
	rows, err := s.q.ConsentEventList(ctx, db, p)
	if err != nil {
		return nil, interpret("list consent events", err)
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = Event{
			ID: r.ID, CustomerID: r.CustomerID, Version: r.Version, Channel: r.Channel, Purpose: r.Purpose,
			State: r.State, PreviousState: r.PreviousState, LegalBasis: r.LegalBasis, Source: r.Source,
			CaptureTime: r.CaptureTime.UTC(), RecordTime: r.RecordTime.UTC(), Actor: r.Actor,
			RequestID: r.RequestID.UUID,
		}
	}
	return out, nil
}

// Token is a stored confirmation token.
type Token struct {
	Hash       [32]byte
	CustomerID uuid.UUID
	Channel    string
	Purpose    string
	Version    int64
	CreateTime time.Time
	ExpireTime time.Time
	UseTime    time.Time // zero: unused
	RevokeTime time.Time // zero: not revoked
}

// InsertToken stores a token (its hash). Under the customer's lock.
func (s *Store) InsertToken(ctx context.Context, db DB, tenantID uuid.UUID, t Token) error {
	err := s.q.ConsentTokenInsert(ctx, db, dbgen.ConsentTokenInsertParams{
		TenantID: tenantID, TokenHash: t.Hash[:], CustomerID: t.CustomerID, Channel: t.Channel,
		Purpose: t.Purpose, Version: t.Version, CreateTime: t.CreateTime, ExpireTime: t.ExpireTime,
	})
	if err != nil {
		return interpret("insert consent token", err)
	}
	return nil
}

// GetToken returns the token with hash, locked FOR UPDATE if asked;
// ErrNotFound when the tenant has none.
func (s *Store) GetToken(ctx context.Context, db DB, tenantID uuid.UUID, hash [32]byte, forUpdate bool) (Token, error) {
	var (
		r   dbgen.ConsentToken
		err error
	)
	if forUpdate {
		r, err = s.q.ConsentTokenGetForUpdate(ctx, db, dbgen.ConsentTokenGetForUpdateParams{TenantID: tenantID, TokenHash: hash[:]})
	} else {
		r, err = s.q.ConsentTokenGet(ctx, db, dbgen.ConsentTokenGetParams{TenantID: tenantID, TokenHash: hash[:]})
	}
	if err != nil {
		return Token{}, interpret("get consent token", err)
	}
	t := Token{
		CustomerID: r.CustomerID, Channel: r.Channel, Purpose: r.Purpose, Version: r.Version,
		CreateTime: r.CreateTime.UTC(), ExpireTime: r.ExpireTime.UTC(),
	}
	copy(t.Hash[:], r.TokenHash)
	if r.UseTime.Valid {
		t.UseTime = r.UseTime.Time.UTC()
	}
	if r.RevokeTime.Valid {
		t.RevokeTime = r.RevokeTime.Time.UTC()
	}
	return t, nil
}

// UseToken spends a token that is unused, unrevoked and unexpired at now;
// false when it was not. Under the customer's lock.
func (s *Store) UseToken(ctx context.Context, db DB, tenantID uuid.UUID, hash [32]byte, now time.Time) (bool, error) {
	n, err := s.q.ConsentTokenUse(ctx, db, dbgen.ConsentTokenUseParams{TenantID: tenantID, TokenHash: hash[:], Now: now})
	if err != nil {
		return false, interpret("use consent token", err)
	}
	return n == 1, nil
}

// RevokeOpenTokens voids the open tokens of a channel × purpose. Under the
// customer's lock.
func (s *Store) RevokeOpenTokens(ctx context.Context, db DB, tenantID, customerID uuid.UUID, channel, purpose string, now time.Time) error {
	_, err := s.q.ConsentTokenRevokeOpen(ctx, db, dbgen.ConsentTokenRevokeOpenParams{
		TenantID: tenantID, CustomerID: customerID, Channel: channel, Purpose: purpose, Now: now,
	})
	if err != nil {
		return interpret("revoke consent tokens", err)
	}
	return nil
}

// Touch is a recorded outbound contact.
type Touch struct {
	ID            uuid.UUID
	CustomerID    uuid.UUID
	Channel       string
	Purpose       string
	SourceService string
	Reference     string
	Time          time.Time
	Actor         string
}

// InsertTouch records t unless its (source service, reference) is recorded
// already; inserted tells which, and the returned touch is the stored one
// either way. Under the customer's lock.
func (s *Store) InsertTouch(ctx context.Context, db DB, tenantID uuid.UUID, t Touch) (stored Touch, inserted bool, err error) {
	r, err := s.q.ContactTouchInsert(ctx, db, dbgen.ContactTouchInsertParams{
		TenantID: tenantID, ID: t.ID, CustomerID: t.CustomerID, Channel: t.Channel, Purpose: t.Purpose,
		SourceService: t.SourceService, Reference: t.Reference, TouchTime: t.Time, Actor: t.Actor,
	})
	if err == nil {
		return touchFromRow(r), true, nil
	}
	if !errors.Is(pgdb.Classify(err), pgdb.ErrNotFound) {
		return Touch{}, false, interpret("insert contact touch", err)
	}
	stored, err = s.TouchByReference(ctx, db, tenantID, t.SourceService, t.Reference)
	return stored, false, err
}

// TouchByReference returns the touch recorded for (sourceService,
// reference); ErrNotFound when none.
func (s *Store) TouchByReference(ctx context.Context, db DB, tenantID uuid.UUID, sourceService, reference string) (Touch, error) {
	r, err := s.q.ContactTouchGetByReference(ctx, db, dbgen.ContactTouchGetByReferenceParams{
		TenantID: tenantID, SourceService: sourceService, Reference: reference,
	})
	if err != nil {
		return Touch{}, interpret("get contact touch", err)
	}
	return touchFromRow(r), nil
}

func touchFromRow(r dbgen.ContactTouch) Touch {
	return Touch{
		ID: r.ID, CustomerID: r.CustomerID, Channel: r.Channel, Purpose: r.Purpose, SourceService: r.SourceService,
		Reference: r.Reference, Time: r.TouchTime.UTC(), Actor: r.Actor,
	}
}

// TouchTimes returns the purpose and time of the customer's touches after
// since, oldest first.
func (s *Store) TouchTimes(ctx context.Context, db DB, tenantID, customerID uuid.UUID, since time.Time) ([]Touch, error) {
	rows, err := s.q.ContactTouchListSince(ctx, db, dbgen.ContactTouchListSinceParams{
		TenantID: tenantID, CustomerID: customerID, Since: since,
	})
	if err != nil {
		return nil, interpret("list contact touches", err)
	}
	out := make([]Touch, len(rows))
	for i, r := range rows {
		out[i] = Touch{CustomerID: customerID, Purpose: r.Purpose, Time: r.TouchTime.UTC()}
	}
	return out, nil
}

// Policy is a tenant's stored contact policy; caps as (max, period).
type Policy struct {
	DefaultTimeZone             string
	CareMax, MarketingMax       int
	SurveyMax, GlobalMax        int
	CarePeriod, MarketingPeriod time.Duration
	SurveyPeriod, GlobalPeriod  time.Duration
	Version                     int64
	UpdateTime                  time.Time
}

// GetPolicy returns the tenant's policy, locked FOR UPDATE if asked;
// ErrNotFound when the tenant never stored one.
func (s *Store) GetPolicy(ctx context.Context, db DB, tenantID uuid.UUID, forUpdate bool) (Policy, error) {
	var (
		r   dbgen.ContactPolicy
		err error
	)
	if forUpdate {
		r, err = s.q.ContactPolicyGetForUpdate(ctx, db, tenantID)
	} else {
		r, err = s.q.ContactPolicyGet(ctx, db, tenantID)
	}
	if err != nil {
		return Policy{}, interpret("get contact policy", err)
	}
	return policyFromRow(r), nil
}

// CreatePolicy stores p as the tenant's policy at version 1 unless the
// tenant has one.
func (s *Store) CreatePolicy(ctx context.Context, db DB, tenantID uuid.UUID, p Policy) error {
	_, err := s.q.ContactPolicyCreate(ctx, db, dbgen.ContactPolicyCreateParams{
		TenantID: tenantID, DefaultTimeZone: p.DefaultTimeZone,
		CareMax: int32(p.CareMax), CarePeriodSeconds: seconds(p.CarePeriod), //nolint:gosec // ≤ 1000, checked by the domain
		MarketingMax: int32(p.MarketingMax), MarketingPeriodSeconds: seconds(p.MarketingPeriod), //nolint:gosec // likewise
		SurveyMax: int32(p.SurveyMax), SurveyPeriodSeconds: seconds(p.SurveyPeriod), //nolint:gosec // likewise
		GlobalMax: int32(p.GlobalMax), GlobalPeriodSeconds: seconds(p.GlobalPeriod), //nolint:gosec // likewise
		UpdateTime: p.UpdateTime,
	})
	if err != nil {
		return interpret("create contact policy", err)
	}
	return nil
}

// UpdatePolicy writes p over the tenant's policy, incrementing its version.
func (s *Store) UpdatePolicy(ctx context.Context, db DB, tenantID uuid.UUID, p Policy) (Policy, error) {
	r, err := s.q.ContactPolicyUpdate(ctx, db, dbgen.ContactPolicyUpdateParams{
		TenantID: tenantID, DefaultTimeZone: p.DefaultTimeZone,
		CareMax: int32(p.CareMax), CarePeriodSeconds: seconds(p.CarePeriod), //nolint:gosec // ≤ 1000, checked by the domain
		MarketingMax: int32(p.MarketingMax), MarketingPeriodSeconds: seconds(p.MarketingPeriod), //nolint:gosec // likewise
		SurveyMax: int32(p.SurveyMax), SurveyPeriodSeconds: seconds(p.SurveyPeriod), //nolint:gosec // likewise
		GlobalMax: int32(p.GlobalMax), GlobalPeriodSeconds: seconds(p.GlobalPeriod), //nolint:gosec // likewise
		UpdateTime: p.UpdateTime,
	})
	if err != nil {
		return Policy{}, interpret("update contact policy", err)
	}
	return policyFromRow(r), nil
}

func policyFromRow(r dbgen.ContactPolicy) Policy {
	return Policy{
		DefaultTimeZone: r.DefaultTimeZone,
		CareMax:         int(r.CareMax), CarePeriod: time.Duration(r.CarePeriodSeconds) * time.Second,
		MarketingMax: int(r.MarketingMax), MarketingPeriod: time.Duration(r.MarketingPeriodSeconds) * time.Second,
		SurveyMax: int(r.SurveyMax), SurveyPeriod: time.Duration(r.SurveyPeriodSeconds) * time.Second,
		GlobalMax: int(r.GlobalMax), GlobalPeriod: time.Duration(r.GlobalPeriodSeconds) * time.Second,
		Version: r.Version, UpdateTime: r.UpdateTime.UTC(),
	}
}

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

// interpret classifies a database error once; a missing row is ErrNotFound,
// every other kind keeps pgdb's classification for the edge to map.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return ErrNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
