package profile

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Birthday is a date of birth in the customer's own calendar. Year 0 means
// the year is unknown (a customer may share the day but not the year).
type Birthday struct {
	Year  int `json:"y,omitempty"`
	Month int `json:"m"`
	Day   int `json:"d"`
}

// minBirthYear is the earliest year a living customer can have been born in
// with some margin; earlier years are typing errors.
const minBirthYear = 1850

// validate: the month exists, the day exists in that month (February 29
// only in a leap year or with the year unknown) and the date is not after
// today (in the earliest time zone, so nobody born today somewhere is
// refused).
func (b *Birthday) validate(now time.Time) error {
	field := func(f, reason string) error { return &FieldError{Field: "birthday." + f, Reason: reason} }
	if b.Month < 1 || b.Month > 12 {
		return field("month", "must be 1 to 12")
	}
	if b.Year != 0 && (b.Year < minBirthYear || b.Year > 9999) {
		return field("year", fmt.Sprintf("must be 0 (unknown) or from %d", minBirthYear))
	}
	// A leap year stands in for an unknown one, so February 29 passes.
	year := b.Year
	if year == 0 {
		year = 2000
	}
	last := time.Date(year, time.Month(b.Month)+1, 0, 0, 0, 0, 0, time.UTC).Day()
	if b.Day < 1 || b.Day > last {
		if b.Month == 2 && b.Day == 29 {
			return field("day", "February 29 needs a leap year (or year 0, unknown)")
		}
		return field("day", fmt.Sprintf("must be 1 to %d for month %d", last, b.Month))
	}
	if b.Year != 0 {
		// UTC+14 is the first zone to reach a date.
		today := now.UTC().Add(14 * time.Hour)
		if time.Date(b.Year, time.Month(b.Month), b.Day, 0, 0, 0, 0, time.UTC).After(today) {
			return &FieldError{Field: "birthday", Reason: "must not be in the future"}
		}
	}
	return nil
}

// Address is a postal address. CountryCode is ISO 3166-1 alpha-2.
type Address struct {
	Lines       []string `json:"l,omitempty"`
	Locality    string   `json:"c,omitempty"`
	Region      string   `json:"r,omitempty"`
	PostalCode  string   `json:"p,omitempty"`
	CountryCode string   `json:"-"` // stored in clear, beside the sealed rest
}

const maxAddressLines = 3

var countryCode = regexp.MustCompile(`^[A-Z]{2}$`)

func (a *Address) validate() error {
	if len(a.Lines) > maxAddressLines {
		return &FieldError{Field: "address.lines", Reason: fmt.Sprintf("at most %d lines", maxAddressLines)}
	}
	if a.CountryCode != "" && !countryCode.MatchString(a.CountryCode) {
		return &FieldError{Field: "address.country_code", Reason: "must be an ISO 3166-1 alpha-2 code in upper case, e.g. DE"}
	}
	return nil
}

// empty reports whether the address holds nothing.
func (a *Address) empty() bool {
	return a == nil || (len(a.Lines) == 0 && a.Locality == "" && a.Region == "" && a.PostalCode == "" && a.CountryCode == "")
}

// Limits of the map fields (the request schema checks them too; the domain
// checks again because merges build maps no request carried).
const (
	maxExternalRefs = 20
	maxAttributes   = 50
	maxRefLength    = 200
)

var (
	systemName   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	attributeKey = regexp.MustCompile(`^[a-z][a-z0-9_]{0,62}$`)
)

func validateExternalRefs(refs map[string]string) error {
	if len(refs) > maxExternalRefs {
		return &FieldError{Field: "external_refs", Reason: fmt.Sprintf("at most %d systems", maxExternalRefs)}
	}
	for _, sys := range slices.Sorted(maps.Keys(refs)) {
		if !systemName.MatchString(sys) {
			return &FieldError{Field: "external_refs", Reason: "system names are lower-case letters, digits, '.', '_' and '-'"}
		}
		if n := len([]rune(refs[sys])); n < 1 || n > maxRefLength {
			return &FieldError{Field: "external_refs[" + sys + "]", Reason: fmt.Sprintf("must be 1 to %d characters", maxRefLength)}
		}
	}
	return nil
}

func validateAttributes(attrs map[string]string) error {
	if len(attrs) > maxAttributes {
		return &FieldError{Field: "attributes", Reason: fmt.Sprintf("at most %d attributes", maxAttributes)}
	}
	for k := range attrs {
		if !attributeKey.MatchString(k) {
			return &FieldError{Field: "attributes", Reason: "keys are lower-case letters, digits and '_', starting with a letter"}
		}
	}
	return nil
}

// CountryCode is the address's country, or "".
func (c *Customer) CountryCode() string {
	if c.Address == nil {
		return ""
	}
	return c.Address.CountryCode
}

// normalise puts a profile in its one stored form, so equal profiles compare
// equal: tags sorted and unique, empty maps and addresses as nil, address
// lines without blank ones.
func (c *Customer) normalise() {
	c.Tags = normaliseTags(c.Tags)
	if c.Address != nil {
		a := *c.Address
		a.Lines = slices.DeleteFunc(slices.Clone(a.Lines), func(l string) bool { return strings.TrimSpace(l) == "" })
		if len(a.Lines) == 0 {
			a.Lines = nil
		}
		c.Address = &a
		if a.empty() {
			c.Address = nil
		}
	}
	if c.Birthday != nil && *c.Birthday == (Birthday{}) {
		c.Birthday = nil
	}
	if len(c.ExternalRefs) == 0 {
		c.ExternalRefs = nil
	}
	if len(c.Attributes) == 0 {
		c.Attributes = nil
	}
}

// changedFields names the Mutable fields that differ between a and b (both
// normalised), in Mutable's order.
func changedFields(a, b Customer) []string {
	var out []string
	for _, f := range Mutable {
		if !sameField(a, b, f) {
			out = append(out, f)
		}
	}
	return out
}

func sameField(a, b Customer, f string) bool {
	switch f {
	case "display_name":
		return a.DisplayName == b.DisplayName
	case "email":
		return a.Email == b.Email
	case "phone":
		return a.Phone == b.Phone
	case "locale":
		return a.Locale == b.Locale
	case "time_zone":
		return a.TimeZone == b.TimeZone
	case "tags":
		return slices.Equal(a.Tags, b.Tags)
	case "birthday":
		return (a.Birthday == nil) == (b.Birthday == nil) && (a.Birthday == nil || *a.Birthday == *b.Birthday)
	case "address":
		if (a.Address == nil) != (b.Address == nil) {
			return false
		}
		return a.Address == nil || (slices.Equal(a.Address.Lines, b.Address.Lines) && a.Address.Locality == b.Address.Locality &&
			a.Address.Region == b.Address.Region && a.Address.PostalCode == b.Address.PostalCode &&
			a.Address.CountryCode == b.Address.CountryCode)
	case "external_refs":
		return maps.Equal(a.ExternalRefs, b.ExternalRefs)
	case "attributes":
		return maps.Equal(a.Attributes, b.Attributes)
	}
	return true
}

// MergedError refuses a change to, or a merge of, a customer that was
// merged into another: merges never chain.
type MergedError struct {
	ID   uuid.UUID // the merged customer
	Into uuid.UUID // where it was merged
}

func (e *MergedError) Error() string {
	return fmt.Sprintf("customer %s was merged into %s", e.ID, e.Into)
}

// DuplicateKey is a kind of key two customers share.
type DuplicateKey int

const (
	DuplicateEmail DuplicateKey = iota + 1
	DuplicatePhone
	DuplicateExternalRef
)

// Match is one key a duplicate shares; System is set for DuplicateExternalRef.
type Match struct {
	Key    DuplicateKey
	System string
}

// Duplicate is another customer sharing keys with the one asked about.
type Duplicate struct {
	Customer Customer
	Matches  []Match
}
