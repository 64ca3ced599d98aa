package consent

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// Cap allows at most Max touches in any rolling Period; Max 0 is no cap.
type Cap struct {
	Max    int
	Period time.Duration
}

// Policy is a tenant's contact policy.
type Policy struct {
	// DefaultTimeZone reads quiet hours of customers without a zone.
	DefaultTimeZone string
	// Caps per purpose; the service purpose is never capped.
	Care, Marketing, Survey Cap
	// Global counts touches of every purpose, service included.
	Global Cap
	// Version is 0 while the tenant runs on the defaults.
	Version    int64
	UpdateTime time.Time
}

// DefaultPolicy is the policy of a tenant that never changed it.
func DefaultPolicy() Policy {
	const day = 24 * time.Hour
	return Policy{
		DefaultTimeZone: "UTC",
		Care:            Cap{Max: 4, Period: 30 * day},
		Marketing:       Cap{Max: 2, Period: 7 * day},
		Survey:          Cap{Max: 1, Period: 14 * day},
		Global:          Cap{Max: 6, Period: 7 * day},
	}
}

// CapFor returns the cap of purpose p, and false for the uncapped service
// purpose.
func (p Policy) CapFor(purpose Purpose) (Cap, bool) {
	switch purpose {
	case PurposeCare:
		return p.Care, true
	case PurposeMarketing:
		return p.Marketing, true
	case PurposeSurvey:
		return p.Survey, true
	}
	return Cap{}, false
}

// Lookback is how far back touches must be loaded for Decide: the longest
// cap period.
func (p Policy) Lookback() time.Duration {
	return max(p.Care.Period, p.Marketing.Period, p.Survey.Period, p.Global.Period)
}

// Validate checks the rules the request schema cannot express; fields are
// named as in ContactPolicy.
func (p Policy) Validate() error {
	if _, err := time.LoadLocation(p.DefaultTimeZone); err != nil || p.DefaultTimeZone == "" || p.DefaultTimeZone == "Local" {
		return &FieldError{Field: "default_time_zone", Reason: "must be an IANA time zone such as Europe/Berlin"}
	}
	for _, c := range []struct {
		field string
		cap   Cap
	}{{"care_cap", p.Care}, {"marketing_cap", p.Marketing}, {"survey_cap", p.Survey}, {"global_cap", p.Global}} {
		if c.cap.Max < 0 || c.cap.Max > 1000 {
			return &FieldError{Field: c.field + ".max_contacts", Reason: "must be between 0 and 1000"}
		}
		if c.cap.Period < time.Hour || c.cap.Period > 366*24*time.Hour {
			return &FieldError{Field: c.field + ".period", Reason: "must be between 1 hour and 366 days"}
		}
	}
	return nil
}

// Touch is one recorded outbound contact.
type Touch struct {
	ID            uuid.UUID
	CustomerID    uuid.UUID
	Channel       Channel
	Purpose       Purpose
	SourceService string
	Reference     string
	Time          time.Time
	Actor         string
}

// Same reports whether u records the same contact as t (the reference
// aside): what makes a repeated reference a replay rather than a conflict.
func (t Touch) Same(u Touch) bool {
	return t.CustomerID == u.CustomerID && t.Channel == u.Channel && t.Purpose == u.Purpose
}

// Situation is what the governor needs to know about one customer, loaded
// in one transaction.
type Situation struct {
	// Known is false for a customer not in the caller's tenant.
	Known bool
	// Erased is true once the customer was erased (package privacy).
	Erased bool
	// TimeZone is the customer's IANA zone; "" uses the policy's default.
	TimeZone string
	// Consent of the asked channel × purpose; nil when none is recorded.
	Consent *Consent
	// QuietHours of the customer; nil when none.
	QuietHours *QuietHours
	// Touches holds at least every touch of the customer after
	// now - Policy.Lookback(), in any order.
	Touches []Touch
	Policy  Policy
}

// Reason is why the governor refused.
type Reason string

// Reasons, in the order Decide checks them.
const (
	ReasonCustomerUnknown     Reason = "CUSTOMER_UNKNOWN"
	ReasonErased              Reason = "ERASED"
	ReasonNoConsent           Reason = "NO_CONSENT"
	ReasonWithdrawn           Reason = "WITHDRAWN"
	ReasonPendingConfirmation Reason = "PENDING_CONFIRMATION"
	ReasonFrequencyCap        Reason = "FREQUENCY_CAP"
	ReasonQuietHours          Reason = "QUIET_HOURS"
)

// CapHit describes the cap that refused a contact.
type CapHit struct {
	Global   bool
	Purpose  Purpose // "" for the global cap
	Cap      Cap
	Contacts int // touches in the period ending now
}

// Decision is the governor's answer.
type Decision struct {
	Allowed bool
	Reason  Reason // "" when allowed
	// NextAllowed, for FREQUENCY_CAP and QUIET_HOURS, is the earliest time
	// the same contact would be allowed if nothing else changed.
	NextAllowed time.Time
	Cap         *CapHit
	// TimeZone is the zone quiet hours were read in.
	TimeZone string
	// DecideTime is the now the decision was made at.
	DecideTime time.Time
}

// Decide is the contact governor: may the customer be contacted on ch for
// purpose p at now? Refusals are checked in this order, and the first one
// answers:
//
//  1. CUSTOMER_UNKNOWN, then ERASED.
//  2. Consent of ch × p: none recorded is NO_CONSENT, except for the service
//     purpose, which the contract justifies; WITHDRAWN; PENDING_CONFIRMATION.
//     The service purpose stops here: it answers something the customer
//     started or is owed, so quiet hours and caps do not hold it back.
//  3. FREQUENCY_CAP: the purpose's cap or the global cap is reached in the
//     rolling period ending now. When both are, the one that frees later is
//     reported.
//  4. QUIET_HOURS: now is inside the customer's quiet hours, read in the
//     customer's zone.
//
// NextAllowed combines 3 and 4: the instant the binding cap frees, moved to
// the end of the quiet period it may fall in. Touches only leave the rolling
// windows as time passes, so once a cap frees it stays free.
func Decide(s Situation, ch Channel, p Purpose, now time.Time) Decision {
	loc, zone := Location(s.TimeZone, s.Policy.DefaultTimeZone)
	d := Decision{TimeZone: zone, DecideTime: now.UTC()}
	refuse := func(r Reason) Decision { d.Reason = r; return d }
	switch {
	case !s.Known:
		return refuse(ReasonCustomerUnknown)
	case s.Erased:
		return refuse(ReasonErased)
	case s.Consent == nil && p != PurposeService:
		return refuse(ReasonNoConsent)
	case s.Consent == nil:
		// Service on the contract basis.
	case s.Consent.State == StateWithdrawn:
		return refuse(ReasonWithdrawn)
	case s.Consent.State == StatePending:
		return refuse(ReasonPendingConfirmation)
	}
	if p == PurposeService {
		d.Allowed = true
		return d
	}

	free := now
	var hit *CapHit
	check := func(c Cap, global bool, purpose Purpose) {
		n, frees := capState(s.Touches, c, purpose, now)
		if c.Max > 0 && n >= c.Max && (hit == nil || frees.After(free)) {
			free = frees
			hit = &CapHit{Global: global, Purpose: purpose, Cap: c, Contacts: n}
		}
	}
	if c, ok := s.Policy.CapFor(p); ok {
		check(c, false, p)
	}
	check(s.Policy.Global, true, "")

	next := free
	if s.QuietHours != nil {
		next = s.QuietHours.Until(free, loc)
	}
	switch {
	case hit != nil:
		d.Reason, d.NextAllowed, d.Cap = ReasonFrequencyCap, next.UTC(), hit
	case next.After(now):
		d.Reason, d.NextAllowed = ReasonQuietHours, next.UTC()
	default:
		d.Allowed = true
	}
	return d
}

// capState counts the touches of purpose (every purpose when "") in the
// rolling period (now - c.Period, now], and returns when the count drops
// below c.Max if it is at or above it: when the oldest touch that must
// leave has left.
func capState(touches []Touch, c Cap, purpose Purpose, now time.Time) (count int, frees time.Time) {
	if c.Max <= 0 {
		return 0, now
	}
	since := now.Add(-c.Period)
	var in []time.Time
	for _, t := range touches {
		if (purpose == "" || t.Purpose == purpose) && t.Time.After(since) {
			in = append(in, t.Time)
		}
	}
	if len(in) < c.Max {
		return len(in), now
	}
	slices.SortFunc(in, func(a, b time.Time) int { return a.Compare(b) })
	// Dropping below Max means the oldest len-Max+1 touches have left; the
	// last of them leaves at its time + Period (the window is open below).
	return len(in), in[len(in)-c.Max].Add(c.Period)
}
