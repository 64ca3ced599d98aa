package profile

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

func TestBirthdayValidate(t *testing.T) {
	t.Parallel()
	// 10:00 UTC on 2026-03-01: already March 2 in UTC+14.
	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		b     Birthday
		field string // "" when valid
	}{
		"Feb29LeapYear":          {Birthday{Year: 2000, Month: 2, Day: 29}, ""},
		"Feb29YearUnknown":       {Birthday{Month: 2, Day: 29}, ""},
		"Feb29CenturyNotLeap":    {Birthday{Year: 1900, Month: 2, Day: 29}, "birthday.day"},
		"Feb29CommonYear":        {Birthday{Year: 1991, Month: 2, Day: 29}, "birthday.day"},
		"Feb30":                  {Birthday{Month: 2, Day: 30}, "birthday.day"},
		"April31":                {Birthday{Year: 1980, Month: 4, Day: 31}, "birthday.day"},
		"December31":             {Birthday{Year: 1980, Month: 12, Day: 31}, ""},
		"DayZero":                {Birthday{Month: 5, Day: 0}, "birthday.day"},
		"MonthZero":              {Birthday{Month: 0, Day: 1}, "birthday.month"},
		"Month13":                {Birthday{Month: 13, Day: 1}, "birthday.month"},
		"YearTooEarly":           {Birthday{Year: 1849, Month: 1, Day: 1}, "birthday.year"},
		"BornTodaySomewhere":     {Birthday{Year: 2026, Month: 3, Day: 2}, ""},
		"TheDayAfterEverywhere":  {Birthday{Year: 2026, Month: 3, Day: 3}, "birthday"},
		"FutureYear":             {Birthday{Year: 2027, Month: 1, Day: 1}, "birthday"},
		"UnknownYearAnyDayValid": {Birthday{Month: 12, Day: 31}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			err := tc.b.validate(now)
			if tc.field == "" {
				require.NoError(t, err)
				return
			}
			fe, ok := err.(*FieldError) //nolint:errorlint // validate returns it unwrapped
			require.True(t, ok, "%v", err)
			require.Equal(t, tc.field, fe.Field)
		})
	}
}

// TestMergeProfiles: the primary keeps what it has; each gap takes the
// first source (in the order given: newest first) that has a value; tags
// unite; maps unite key by key with the same precedence.
func TestMergeProfiles(t *testing.T) {
	t.Parallel()
	primary := Customer{ID: uuid.New(), DisplayName: "P", Email: "p@example.org", Tags: []string{"a"},
		ExternalRefs: map[string]string{"shop": "P"}, Attributes: map[string]string{"k": "p"}}
	newer := Customer{DisplayName: "N", Email: "n@example.org", Phone: "+100", Tags: []string{"b"},
		Address:      &Address{CountryCode: "DE"},
		ExternalRefs: map[string]string{"shop": "N", "pos": "N"}, Attributes: map[string]string{"k": "n", "j": "n"}}
	older := Customer{DisplayName: "O", Phone: "+200", Locale: "de", Tags: []string{"a", "c"},
		Birthday: &Birthday{Month: 1, Day: 2}, Address: &Address{Locality: "Berlin", CountryCode: "DE"},
		ExternalRefs: map[string]string{"pos": "O", "crm": "O"}, Attributes: map[string]string{"j": "o", "i": "o"}}
	got := mergeProfiles(primary, []Customer{newer, older})
	got.normalise()
	require.Equal(t, "P", got.DisplayName)
	require.Equal(t, "p@example.org", got.Email)
	require.Equal(t, "+100", got.Phone)
	require.Equal(t, "de", got.Locale)
	require.Equal(t, []string{"a", "b", "c"}, got.Tags)
	require.Equal(t, &Birthday{Month: 1, Day: 2}, got.Birthday)
	require.Equal(t, &Address{CountryCode: "DE"}, got.Address, "an address is taken whole, from the first source having one")
	require.Equal(t, map[string]string{"shop": "P", "pos": "N", "crm": "O"}, got.ExternalRefs)
	require.Equal(t, map[string]string{"k": "p", "j": "n", "i": "o"}, got.Attributes)
	require.Equal(t, map[string]string{"shop": "P"}, primary.ExternalRefs, "the primary's map is not changed in place")
	require.Equal(t, []string{"email", "phone", "locale", "tags", "birthday", "address", "external_refs", "attributes"},
		changedFields(Customer{DisplayName: "P", Email: "x"}, got), "changed fields in Mutable order")
}
