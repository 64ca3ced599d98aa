package consent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/consent/store"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

// Event subject and aggregate of consent changes, per DESIGN.md.
const (
	SubjectChanged = "rapport.customer.consent.changed"
	AggregateType  = "consent"
)

// actor is who acts: the caller's tenant and principal, and the request id
// of the call (uuid.Nil when it had none).
type actor struct {
	tenant    uuid.UUID
	subject   string
	requestID uuid.UUID
}

// service runs the use cases inside the caller's transaction. Writers take
// the customer's lock (store.LockSettings) before reading what they decide
// on.
type service struct {
	store *store.Store
	now   func() time.Time
	// suppressor, when set, refuses marketing grants to suppressed
	// addresses (package privacy).
	suppressor Suppressor
}

// clock is now in UTC at the database's precision, so what a call returns
// equals what a later read returns.
func (s *service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// lock takes the customer's lock; ErrCustomerNotFound for a customer not
// in the tenant.
func (s *service) lock(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID, now time.Time) (store.Settings, error) {
	set, err := s.store.LockSettings(ctx, tx, tenant, customer, now)
	if errors.Is(err, store.ErrNotFound) {
		return store.Settings{}, ErrCustomerNotFound
	}
	return set, err
}

// settings reads the customer's settings without a lock.
func (s *service) settings(ctx context.Context, db store.DB, tenant, customer uuid.UUID) (store.Settings, error) {
	set, err := s.store.GetSettings(ctx, db, tenant, customer)
	if errors.Is(err, store.ErrNotFound) {
		return store.Settings{}, ErrCustomerNotFound
	}
	return set, err
}

// current returns the current consent of ch × p, nil when none is recorded.
func (s *service) current(ctx context.Context, db store.DB, tenant, customer uuid.UUID, ch Channel, p Purpose) (*Consent, error) {
	c, err := s.store.GetConsent(ctx, db, tenant, customer, string(ch), string(p))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cur := consentFromStore(c)
	return &cur, nil
}

// consents returns the customer's current consents and consent version.
func (s *service) consents(ctx context.Context, db store.DB, tenant, customer uuid.UUID) ([]Consent, int64, error) {
	set, err := s.settings(ctx, db, tenant, customer)
	if err != nil {
		return nil, 0, err
	}
	rows, err := s.store.Consents(ctx, db, tenant, customer)
	if err != nil {
		return nil, 0, err
	}
	out := make([]Consent, len(rows))
	for i, r := range rows {
		out[i] = consentFromStore(r)
	}
	return out, set.ConsentVersion, nil
}

// setResult is what SetConsent made: the current consent and, when it is
// pending, the one-time confirmation token.
type setResult struct {
	consent     Consent
	token       string
	tokenExpiry time.Time
}

// setConsent records a decision under the customer's lock.
func (s *service) setConsent(ctx context.Context, tx pgx.Tx, who actor, c Change) (setResult, error) {
	now := s.clock()
	c.CaptureTime = c.CaptureTime.Truncate(time.Microsecond)
	set, err := s.lock(ctx, tx, who.tenant, c.CustomerID, now)
	if err != nil {
		return setResult{}, err
	}
	if err := writable(set); err != nil {
		return setResult{}, err
	}
	if sup, err := s.suppressed(ctx, tx, who.tenant, c); err != nil {
		return setResult{}, err
	} else if sup {
		return setResult{}, ErrContactSuppressed
	}
	cur, err := s.current(ctx, tx, who.tenant, c.CustomerID, c.Channel, c.Purpose)
	if err != nil {
		return setResult{}, err
	}
	next, pending, err := Apply(cur, c, now)
	if err != nil {
		return setResult{}, err
	}
	next, err = s.record(ctx, tx, who, cur, next, now)
	if err != nil {
		return setResult{}, err
	}
	res := setResult{consent: next}
	if pending {
		token, hash := NewToken()
		expiry := now.Add(ConfirmationTTL)
		err := s.store.InsertToken(ctx, tx, who.tenant, store.Token{
			Hash: hash, CustomerID: next.CustomerID, Channel: string(next.Channel), Purpose: string(next.Purpose),
			Version: next.Version, CreateTime: now, ExpireTime: expiry,
		})
		if err != nil {
			return setResult{}, err
		}
		res.token, res.tokenExpiry = token, expiry
	}
	return res, nil
}

// confirm spends a double opt-in token under the customer's lock.
func (s *service) confirm(ctx context.Context, tx pgx.Tx, who actor, token string) (Consent, error) {
	now := s.clock()
	hash := HashToken(token)
	// Find the customer, lock them, then read the token again under the
	// lock: a concurrent confirmation or decision may have spent or voided it.
	t, err := s.store.GetToken(ctx, tx, who.tenant, hash, false)
	if errors.Is(err, store.ErrNotFound) {
		return Consent{}, ErrTokenNotFound
	}
	if err != nil {
		return Consent{}, err
	}
	set, err := s.lock(ctx, tx, who.tenant, t.CustomerID, now)
	if err != nil {
		return Consent{}, err
	}
	if err := writable(set); err != nil {
		return Consent{}, err
	}
	if t, err = s.store.GetToken(ctx, tx, who.tenant, hash, true); err != nil {
		return Consent{}, err
	}
	tok := tokenFromStore(t)
	cur, err := s.current(ctx, tx, who.tenant, tok.CustomerID, tok.Channel, tok.Purpose)
	if err != nil {
		return Consent{}, err
	}
	next, err := Confirm(cur, tok, now)
	if err != nil {
		return Consent{}, err
	}
	used, err := s.store.UseToken(ctx, tx, who.tenant, hash, now)
	if err != nil {
		return Consent{}, err
	}
	if !used {
		return Consent{}, ErrTokenUsed // unreachable under the lock; refuse rather than grant twice
	}
	return s.record(ctx, tx, who, cur, next, now)
}

// record appends next to the customer's history as the next consent
// version, makes it current, voids the open confirmation tokens of its
// channel × purpose and writes its consent.changed event: all in tx, under
// the customer's lock, which also orders the events per customer.
func (s *service) record(ctx context.Context, tx pgx.Tx, who actor, prev *Consent, next Consent, now time.Time) (Consent, error) {
	version, err := s.store.NextConsentVersion(ctx, tx, who.tenant, next.CustomerID)
	if err != nil {
		return Consent{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Consent{}, fmt.Errorf("new consent event id: %w", err)
	}
	next.Version, next.UpdateTime = version, now
	e := Event{
		ID: id, CustomerID: next.CustomerID, Version: version, Channel: next.Channel, Purpose: next.Purpose,
		State: next.State, LegalBasis: next.LegalBasis, Source: next.Source, CaptureTime: next.CaptureTime,
		RecordTime: now, Actor: who.subject, RequestID: who.requestID,
	}
	if prev != nil {
		e.PreviousState = prev.State
	}
	if err := s.store.AppendEvent(ctx, tx, who.tenant, eventToStore(e)); err != nil {
		return Consent{}, err
	}
	if err := s.store.RevokeOpenTokens(ctx, tx, who.tenant, next.CustomerID, string(next.Channel), string(next.Purpose), now); err != nil {
		return Consent{}, err
	}
	err = outbox.Write(ctx, tx, outbox.Event{
		TenantID: who.tenant.String(), Subject: SubjectChanged, AggregateType: AggregateType,
		AggregateID: next.CustomerID.String(), AggregateVersion: version, OccurredAt: now,
		Payload: &customerv1.ConsentChanged{
			TenantId: who.tenant.String(), CustomerId: next.CustomerID.String(), AggregateVersion: version,
			OccurredAt: timestamppb.New(now), ConsentEventId: id.String(), Channel: channels[e.Channel],
			Purpose: purposes[e.Purpose], State: states[e.State], PreviousState: states[e.PreviousState],
			LegalBasis: bases[e.LegalBasis], Source: e.Source, CaptureTime: timestamppb.New(e.CaptureTime),
		},
	})
	if err != nil {
		return Consent{}, fmt.Errorf("write %s event: %w", SubjectChanged, err)
	}
	// The audit row names the consent changed, never its state.
	var key string
	if who.requestID != uuid.Nil {
		key = who.requestID.String()
	}
	err = audit.Record(ctx, tx, audit.Entry{Action: audit.ConsentChange, CustomerIDs: []uuid.UUID{next.CustomerID},
		Fields: []string{"consents." + string(next.Channel) + "." + string(next.Purpose)}, IdempotencyKey: key})
	if err != nil {
		return Consent{}, err
	}
	return next, nil
}

// events returns a page of the customer's consent history, newest first.
func (s *service) events(ctx context.Context, db store.DB, tenant, customer uuid.UUID, before int64, limit int) ([]Event, error) {
	if _, err := s.settings(ctx, db, tenant, customer); err != nil {
		return nil, err
	}
	rows, err := s.store.Events(ctx, db, tenant, customer, before, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = eventFromStore(r)
	}
	return out, nil
}

// policy returns the tenant's contact policy, the defaults if it has none.
func (s *service) policy(ctx context.Context, db store.DB, tenant uuid.UUID) (Policy, error) {
	p, err := s.store.GetPolicy(ctx, db, tenant, false)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultPolicy(), nil
	}
	if err != nil {
		return Policy{}, err
	}
	return policyFromStore(p), nil
}

// updatePolicy changes the tenant's policy under its row lock. The first
// change stores the defaults first (version 0), so there is a row to lock.
func (s *service) updatePolicy(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, patch Policy, paths []string) (Policy, error) {
	now := s.clock()
	defaults := DefaultPolicy()
	defaults.UpdateTime = now
	if err := s.store.CreatePolicy(ctx, tx, tenant, policyToStore(defaults)); err != nil {
		return Policy{}, err
	}
	row, err := s.store.GetPolicy(ctx, tx, tenant, true)
	if err != nil {
		return Policy{}, err
	}
	next, err := ApplyPolicy(policyFromStore(row), patch, paths)
	if err != nil {
		return Policy{}, err
	}
	next.UpdateTime = now
	row, err = s.store.UpdatePolicy(ctx, tx, tenant, policyToStore(next))
	if err != nil {
		return Policy{}, err
	}
	return policyFromStore(row), nil
}

// preferences returns the customer's contact preferences.
func (s *service) preferences(ctx context.Context, db store.DB, tenant, customer uuid.UUID) (Preferences, error) {
	set, err := s.settings(ctx, db, tenant, customer)
	if err != nil {
		return Preferences{}, err
	}
	pol, err := s.policy(ctx, db, tenant)
	if err != nil {
		return Preferences{}, err
	}
	return preferencesFromStore(set, pol), nil
}

// updatePreferences changes the fields in paths under the customer's lock.
func (s *service) updatePreferences(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, patch Preferences, paths []string) (Preferences, error) {
	now := s.clock()
	set, err := s.lock(ctx, tx, tenant, patch.CustomerID, now)
	if err != nil {
		return Preferences{}, err
	}
	if err := writable(set); err != nil {
		return Preferences{}, err
	}
	pol, err := s.policy(ctx, tx, tenant)
	if err != nil {
		return Preferences{}, err
	}
	next, err := ApplyPreferences(preferencesFromStore(set, pol), patch, paths)
	if err != nil {
		return Preferences{}, err
	}
	var quiet *[2]int
	if q := next.QuietHours; q != nil {
		quiet = &[2]int{q.Start, q.End}
	}
	chans := make([]string, len(next.PreferredChannels))
	for i, c := range next.PreferredChannels {
		chans[i] = string(c)
	}
	if err := s.store.UpdatePreferences(ctx, tx, tenant, patch.CustomerID, quiet, chans, now); err != nil {
		return Preferences{}, err
	}
	next.UpdateTime = now
	return next, nil
}

// situation loads what Decide needs about a customer whose settings are
// already read (and, for a reservation, locked).
func (s *service) situation(ctx context.Context, db store.DB, tenant uuid.UUID, set store.Settings,
	ch Channel, p Purpose, now time.Time,
) (Situation, error) {
	if set.MergedInto.Valid {
		// Not a refusal to contact: the caller holds a stale id, and the
		// customer it was merged into is the one to ask about.
		return Situation{}, &customerMergedError{id: set.CustomerID, into: set.MergedInto.UUID}
	}
	pol, err := s.policy(ctx, db, tenant)
	if err != nil {
		return Situation{}, err
	}
	cur, err := s.current(ctx, db, tenant, set.CustomerID, ch, p)
	if err != nil {
		return Situation{}, err
	}
	rows, err := s.store.TouchTimes(ctx, db, tenant, set.CustomerID, now.Add(-pol.Lookback()))
	if err != nil {
		return Situation{}, err
	}
	sit := Situation{Known: true, Erased: set.Erased, TimeZone: set.TimeZone, Consent: cur, Policy: pol,
		Touches: make([]Touch, len(rows))}
	for i, r := range rows {
		sit.Touches[i] = touchFromStore(r)
	}
	if set.HasQuietHours {
		sit.QuietHours = &QuietHours{Start: set.QuietStart, End: set.QuietEnd}
	}
	return sit, nil
}

// check is the governor as a dry run: nothing is locked or written.
func (s *service) check(ctx context.Context, db store.DB, tenant, customer uuid.UUID, ch Channel, p Purpose) (Decision, error) {
	now := s.clock()
	set, err := s.settings(ctx, db, tenant, customer)
	if errors.Is(err, ErrCustomerNotFound) {
		return Decide(Situation{}, ch, p, now), nil
	}
	if err != nil {
		return Decision{}, err
	}
	sit, err := s.situation(ctx, db, tenant, set, ch, p, now)
	if err != nil {
		return Decision{}, err
	}
	return Decide(sit, ch, p, now), nil
}

// reserve decides and, if allowed, records the touch, under the customer's
// lock: concurrent reservations for one customer queue on the lock, and
// each counts the touches the ones before it recorded. A reference already
// recorded for the same contact is answered as the allowed reservation it
// was, without deciding again.
func (s *service) reserve(ctx context.Context, tx pgx.Tx, who actor, t Touch) (Decision, *Touch, error) {
	now := s.clock()
	set, err := s.lock(ctx, tx, who.tenant, t.CustomerID, now)
	if errors.Is(err, ErrCustomerNotFound) {
		return Decide(Situation{}, t.Channel, t.Purpose, now), nil, nil
	}
	if err != nil {
		return Decision{}, nil, err
	}
	sit, err := s.situation(ctx, tx, who.tenant, set, t.Channel, t.Purpose, now)
	if err != nil {
		return Decision{}, nil, err
	}
	prior, err := s.priorTouch(ctx, tx, who.tenant, t)
	if err != nil {
		return Decision{}, nil, err
	}
	if prior != nil {
		_, zone := Location(sit.TimeZone, sit.Policy.DefaultTimeZone)
		return Decision{Allowed: true, TimeZone: zone, DecideTime: prior.Time}, prior, nil
	}
	d := Decide(sit, t.Channel, t.Purpose, now)
	if !d.Allowed {
		return d, nil, nil
	}
	stored, err := s.insertTouch(ctx, tx, who, t, now)
	if err != nil {
		return Decision{}, nil, err
	}
	return d, &stored, nil
}

// recordTouch records a touch that happened, under the customer's lock.
func (s *service) recordTouch(ctx context.Context, tx pgx.Tx, who actor, t Touch) (Touch, error) {
	now := s.clock()
	set, err := s.lock(ctx, tx, who.tenant, t.CustomerID, now)
	if err != nil {
		return Touch{}, err
	}
	if err := writable(set); err != nil {
		return Touch{}, err
	}
	return s.insertTouch(ctx, tx, who, t, now)
}

// priorTouch returns the touch already recorded under t's reference, nil
// when none; ErrReferenceConflict when it records another contact.
func (s *service) priorTouch(ctx context.Context, db store.DB, tenant uuid.UUID, t Touch) (*Touch, error) {
	r, err := s.store.TouchByReference(ctx, db, tenant, t.SourceService, t.Reference)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	prior := touchFromStore(r)
	if !prior.Same(t) {
		return nil, ErrReferenceConflict
	}
	return &prior, nil
}

// insertTouch stores t at now, or returns the touch its reference already
// recorded (ErrReferenceConflict when that is another contact).
func (s *service) insertTouch(ctx context.Context, tx pgx.Tx, who actor, t Touch, now time.Time) (Touch, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return Touch{}, fmt.Errorf("new touch id: %w", err)
	}
	t.ID, t.Time, t.Actor = id, now, who.subject
	r, _, err := s.store.InsertTouch(ctx, tx, who.tenant, touchToStore(t))
	if err != nil {
		return Touch{}, err
	}
	stored := touchFromStore(r)
	if !stored.Same(t) {
		return Touch{}, ErrReferenceConflict
	}
	return stored, nil
}
