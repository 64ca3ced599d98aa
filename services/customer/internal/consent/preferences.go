package consent

import (
	"slices"
	"time"

	"github.com/google/uuid"
)

// Preferences is how a customer likes to be reached.
type Preferences struct {
	CustomerID        uuid.UUID
	QuietHours        *QuietHours // nil: none
	PreferredChannels []Channel
	// TimeZone is the zone quiet hours are read in: the customer's, else
	// the tenant's default.
	TimeZone   string
	UpdateTime time.Time // zero: never changed
}

// PreferencePaths are the update-mask paths of ContactPreferences.
var PreferencePaths = []string{"quiet_hours", "preferred_channels"}

// ApplyPreferences copies the fields named in paths from patch onto cur.
// Fields are named as in the request ("contact_preferences." prefixed by
// the caller).
func ApplyPreferences(cur, patch Preferences, paths []string) (Preferences, error) {
	next := cur
	for _, p := range paths {
		switch p {
		case "quiet_hours":
			next.QuietHours = patch.QuietHours
			if q := next.QuietHours; q != nil && !q.Valid() {
				return Preferences{}, &FieldError{Field: "quiet_hours.end_time", Reason: "must differ from start_time"}
			}
		case "preferred_channels":
			next.PreferredChannels = slices.Clone(patch.PreferredChannels)
		default:
			return Preferences{}, &FieldError{Field: p, Reason: "cannot be changed"}
		}
	}
	if next.PreferredChannels == nil {
		next.PreferredChannels = []Channel{}
	}
	return next, nil
}

// PolicyPaths are the update-mask paths of ContactPolicy.
var PolicyPaths = []string{"default_time_zone", "care_cap", "marketing_cap", "survey_cap", "global_cap"}

// ApplyPolicy copies the fields named in paths from patch onto cur and
// validates the result. A cap in the mask with a zero period keeps the
// current period (a cap of 0 contacts needs none).
func ApplyPolicy(cur, patch Policy, paths []string) (Policy, error) {
	next := cur
	setCap := func(dst *Cap, src Cap) {
		period := src.Period
		if period == 0 {
			period = dst.Period
		}
		*dst = Cap{Max: src.Max, Period: period}
	}
	for _, p := range paths {
		switch p {
		case "default_time_zone":
			next.DefaultTimeZone = patch.DefaultTimeZone
		case "care_cap":
			setCap(&next.Care, patch.Care)
		case "marketing_cap":
			setCap(&next.Marketing, patch.Marketing)
		case "survey_cap":
			setCap(&next.Survey, patch.Survey)
		case "global_cap":
			setCap(&next.Global, patch.Global)
		default:
			return Policy{}, &FieldError{Field: p, Reason: "cannot be changed"}
		}
	}
	if err := next.Validate(); err != nil {
		return Policy{}, err
	}
	return next, nil
}
