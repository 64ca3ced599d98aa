// Package consent owns what customers agreed to be contacted about and how
// they like to be reached, and the contact governor: the one answer, for
// every service, to "may we contact this customer on this channel for this
// purpose now?".
//
// The rules are pure functions over loaded state with the time passed in:
// Apply and Confirm decide consent changes, Decide is the governor. The
// Server (server.go) loads that state through package store inside one
// transaction, under the customer's row lock where it writes, and turns the
// results into responses, history rows and outbox events. Nothing here builds
// SQL or knows protobuf beyond the transport file.
package consent

import (
	"errors"
	"time"

	"github.com/google/uuid"
)

// Channel is a way to reach a customer; the values are the stored names.
type Channel string

// Channels, in the order the API lists them.
const (
	ChannelEmail     Channel = "email"
	ChannelSMS       Channel = "sms"
	ChannelPhone     Channel = "phone"
	ChannelPush      Channel = "push"
	ChannelMessaging Channel = "messaging"
	ChannelPost      Channel = "post"
)

// Purpose is why a customer is contacted.
type Purpose string

// Purposes. Service is what the contract needs and is allowed on a contract
// basis without a recorded consent; the others need one.
const (
	PurposeService   Purpose = "service"
	PurposeCare      Purpose = "care"
	PurposeMarketing Purpose = "marketing"
	PurposeSurvey    Purpose = "survey"
)

// State is where a consent stands.
type State string

// States. Pending is granted-but-unconfirmed (double opt-in) and refuses
// contact like no consent at all.
const (
	StateGranted   State = "granted"
	StateWithdrawn State = "withdrawn"
	StatePending   State = "pending"
)

// LegalBasis is the GDPR Art. 6 basis of a decision.
type LegalBasis string

// Legal bases. Contract and legal obligation justify service contacts only.
const (
	BasisConsent            LegalBasis = "consent"
	BasisContract           LegalBasis = "contract"
	BasisLegitimateInterest LegalBasis = "legitimate_interest"
	BasisLegalObligation    LegalBasis = "legal_obligation"
)

// ConfirmSource is the source of the decision a double opt-in confirmation
// records: the customer's click on the confirmation link.
const ConfirmSource = "double-opt-in"

// ConfirmationTTL is how long a double opt-in token stays valid.
const ConfirmationTTL = 72 * time.Hour

// MaxClockSkew is how far in the future a capture time may lie: the
// capturing system's clock may run a little ahead of ours.
const MaxClockSkew = 5 * time.Minute

// Consent is the current decision of one customer × channel × purpose.
type Consent struct {
	CustomerID  uuid.UUID
	Channel     Channel
	Purpose     Purpose
	State       State
	LegalBasis  LegalBasis
	Source      string
	CaptureTime time.Time
	// Version is the customer's consent version when this decision was
	// recorded; zero for a decision not recorded yet.
	Version    int64
	UpdateTime time.Time
}

// Event is one entry of a customer's append-only consent history.
type Event struct {
	ID            uuid.UUID
	CustomerID    uuid.UUID
	Version       int64
	Channel       Channel
	Purpose       Purpose
	State         State
	PreviousState State // "" for the first decision of its channel × purpose
	LegalBasis    LegalBasis
	Source        string
	CaptureTime   time.Time
	RecordTime    time.Time
	Actor         string
	RequestID     uuid.UUID // uuid.Nil when the call had none
}

// Errors the rules return; the server maps them to statuses once.
var (
	// ErrCustomerNotFound: no such customer in the caller's tenant.
	ErrCustomerNotFound = errors.New("customer not found")
	// ErrOutdated: the decision was captured before the current one.
	ErrOutdated = errors.New("a later consent decision is already recorded")
	// ErrTokenNotFound: no such confirmation token in the tenant.
	ErrTokenNotFound = errors.New("confirmation token not found")
	// ErrTokenUsed: the token confirmed its consent already.
	ErrTokenUsed = errors.New("confirmation token already used")
	// ErrTokenExpired: the token's 72 hours are over.
	ErrTokenExpired = errors.New("confirmation token expired")
	// ErrTokenSuperseded: a later decision on the same channel × purpose
	// voided the token.
	ErrTokenSuperseded = errors.New("confirmation token superseded by a later decision")
	// ErrReferenceConflict: the touch reference is recorded for another
	// customer, channel or purpose.
	ErrReferenceConflict = errors.New("contact reference already recorded for another contact")
)

// FieldError is a rule on one request field that the request schema cannot
// express. Field is the request field's name, e.g. "legal_basis".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Change is a consent decision as a caller submits it.
type Change struct {
	CustomerID  uuid.UUID
	Channel     Channel
	Purpose     Purpose
	State       State // granted or withdrawn
	LegalBasis  LegalBasis
	Source      string
	CaptureTime time.Time // zero: now
}

// NeedsDoubleOptIn reports the channel × purpose pairs whose grant must be
// confirmed by the customer before it counts.
func NeedsDoubleOptIn(ch Channel, p Purpose) bool {
	return ch == ChannelEmail && p == PurposeMarketing
}

// Apply decides what a change makes of the current consent (nil when none
// is recorded): the next current consent, and whether it awaits double
// opt-in, in which case the caller issues a confirmation token.
//
//   - Granting marketing by email is pending until confirmed, unless it is
//     granted already (a re-grant then refreshes source and capture time).
//     Granting again while pending stays pending; the caller issues a fresh
//     token and voids the old one.
//   - A withdrawal without a legal basis keeps the previous basis (consent
//     if there was none).
//   - A decision captured before the current one is ErrOutdated: an import
//     of old records must not undo a later withdrawal.
func Apply(cur *Consent, c Change, now time.Time) (next Consent, pending bool, err error) {
	if c.State != StateGranted && c.State != StateWithdrawn {
		return Consent{}, false, &FieldError{Field: "state", Reason: "must be GRANTED or WITHDRAWN"}
	}
	capture := c.CaptureTime
	if capture.IsZero() {
		capture = now
	}
	if capture.After(now.Add(MaxClockSkew)) {
		return Consent{}, false, &FieldError{Field: "capture_time", Reason: "must not be in the future"}
	}
	basis := c.LegalBasis
	switch {
	case c.State == StateGranted && basis == "":
		return Consent{}, false, &FieldError{Field: "legal_basis", Reason: "is required when granting"}
	case basis == "" && cur != nil:
		basis = cur.LegalBasis
	case basis == "":
		basis = BasisConsent
	}
	if (basis == BasisContract || basis == BasisLegalObligation) && c.Purpose != PurposeService {
		return Consent{}, false, &FieldError{Field: "legal_basis",
			Reason: "CONTRACT and LEGAL_OBLIGATION justify the service purpose only"}
	}
	if cur != nil && capture.Before(cur.CaptureTime) {
		return Consent{}, false, ErrOutdated
	}
	next = Consent{
		CustomerID: c.CustomerID, Channel: c.Channel, Purpose: c.Purpose, State: c.State,
		LegalBasis: basis, Source: c.Source, CaptureTime: capture.UTC(), UpdateTime: now.UTC(),
	}
	if c.State == StateGranted && NeedsDoubleOptIn(c.Channel, c.Purpose) &&
		(cur == nil || cur.State != StateGranted) {
		next.State = StatePending
		pending = true
	}
	return next, pending, nil
}

// Token is a stored double opt-in token (its hash only).
type Token struct {
	CustomerID uuid.UUID
	Channel    Channel
	Purpose    Purpose
	// Version is the consent version of the pending decision it confirms.
	Version    int64
	CreateTime time.Time
	ExpireTime time.Time
	UseTime    time.Time // zero: unused
	RevokeTime time.Time // zero: not revoked
}

// Confirm decides a double opt-in confirmation: the pending consent cur
// becomes granted, confirmed now. The token must be unused, unexpired and
// still belong to the current pending decision.
func Confirm(cur *Consent, t Token, now time.Time) (Consent, error) {
	switch {
	case !t.UseTime.IsZero():
		return Consent{}, ErrTokenUsed
	case !t.RevokeTime.IsZero():
		return Consent{}, ErrTokenSuperseded
	case !now.Before(t.ExpireTime):
		return Consent{}, ErrTokenExpired
	case cur == nil || cur.State != StatePending || cur.Version != t.Version:
		return Consent{}, ErrTokenSuperseded
	}
	next := *cur
	next.State = StateGranted
	next.Source = ConfirmSource
	next.CaptureTime = now.UTC()
	next.UpdateTime = now.UTC()
	next.Version = 0
	return next, nil
}
