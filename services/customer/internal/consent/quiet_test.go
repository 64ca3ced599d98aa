package consent_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
)

func mustZone(tb testing.TB, name string) *time.Location {
	tb.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(tb, err)
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func quiet(start, end string) consent.QuietHours {
	s, err := consent.ParseClock(start)
	if err != nil {
		panic(err)
	}
	e, err := consent.ParseClock(end)
	if err != nil {
		panic(err)
	}
	return consent.QuietHours{Start: s, End: e}
}

func TestQuietHoursUntil(t *testing.T) {
	t.Parallel()

	// Europe/Berlin: 2024-03-31 02:00 CET -> 03:00 CEST at 01:00Z;
	// 2024-10-27 03:00 CEST -> 02:00 CET at 01:00Z.
	// America/New_York: 2024-03-10 02:00 EST -> 03:00 EDT at 07:00Z.
	cases := []struct {
		name  string
		zone  string
		q     consent.QuietHours
		at    string
		until string // equal to at: not quiet
	}{
		{"OutsideIsNow", "UTC", quiet("22:00", "07:00"), "2024-06-01T21:59:00Z", "2024-06-01T21:59:00Z"},
		{"StartIsQuiet", "UTC", quiet("22:00", "07:00"), "2024-06-01T22:00:00Z", "2024-06-02T07:00:00Z"},
		{"AcrossMidnightBeforeMidnight", "UTC", quiet("22:00", "07:00"), "2024-06-01T23:30:00Z", "2024-06-02T07:00:00Z"},
		{"AcrossMidnightAfterMidnight", "UTC", quiet("22:00", "07:00"), "2024-06-02T00:00:00Z", "2024-06-02T07:00:00Z"},
		{"LastSecondIsQuiet", "UTC", quiet("22:00", "07:00"), "2024-06-02T06:59:59Z", "2024-06-02T07:00:00Z"},
		{"EndIsOpen", "UTC", quiet("22:00", "07:00"), "2024-06-02T07:00:00Z", "2024-06-02T07:00:00Z"},
		{"SameDayWindow", "UTC", quiet("12:00", "14:00"), "2024-06-01T13:00:00Z", "2024-06-01T14:00:00Z"},
		{"SameDayWindowAfter", "UTC", quiet("12:00", "14:00"), "2024-06-01T14:30:00Z", "2024-06-01T14:30:00Z"},
		{"ReadInTheCustomersZone", "Asia/Kolkata", quiet("21:00", "08:00"), "2024-06-01T16:00:00Z", "2024-06-02T02:30:00Z"},
		{"UTCNightIsDayInKolkata", "Asia/Kolkata", quiet("21:00", "08:00"), "2024-06-01T23:00:00Z", "2024-06-02T02:30:00Z"},
		{"KolkataDaytimeIsOpen", "Asia/Kolkata", quiet("21:00", "08:00"), "2024-06-01T05:00:00Z", "2024-06-01T05:00:00Z"},
		{"SpringForwardNightIsAnHourShorter", "Europe/Berlin", quiet("22:00", "07:00"), "2024-03-30T23:00:00Z", "2024-03-31T05:00:00Z"},
		{"SpringForwardEndInTheSkippedHour", "Europe/Berlin", quiet("22:00", "02:30"), "2024-03-31T00:30:00Z", "2024-03-31T01:00:00Z"},
		{"SpringForwardStartInTheSkippedHourBefore", "Europe/Berlin", quiet("02:30", "06:00"), "2024-03-31T00:59:00Z", "2024-03-31T00:59:00Z"},
		{"SpringForwardStartInTheSkippedHourAfter", "Europe/Berlin", quiet("02:30", "06:00"), "2024-03-31T01:00:00Z", "2024-03-31T04:00:00Z"},
		{"SpringForwardNewYork", "America/New_York", quiet("22:00", "02:30"), "2024-03-10T06:30:00Z", "2024-03-10T07:00:00Z"},
		{"FallBackNightIsAnHourLonger", "Europe/Berlin", quiet("22:00", "07:00"), "2024-10-26T21:00:00Z", "2024-10-27T06:00:00Z"},
		{"FallBackEndAtItsFirstShowing", "Europe/Berlin", quiet("22:00", "02:30"), "2024-10-26T23:00:00Z", "2024-10-27T00:30:00Z"},
		{"FallBackSecondPassDoesNotReopenTheNight", "Europe/Berlin", quiet("22:00", "02:30"), "2024-10-27T01:10:00Z", "2024-10-27T01:10:00Z"},
		{"FallBackStartAtItsFirstShowing", "Europe/Berlin", quiet("02:15", "07:00"), "2024-10-27T00:15:00Z", "2024-10-27T06:00:00Z"},
		{"FallBackRepeatedHourStaysInTheNight", "Europe/Berlin", quiet("02:15", "07:00"), "2024-10-27T01:05:00Z", "2024-10-27T06:00:00Z"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := c.q.Until(utc(c.at), mustZone(t, c.zone))
			require.Equal(t, utc(c.until), got.UTC())
		})
	}

	t.Run("NoWindowIsNeverQuiet", func(t *testing.T) {
		t.Parallel()
		at := utc("2024-06-01T23:00:00Z")
		require.Equal(t, at, consent.QuietHours{Start: 600, End: 600}.Until(at, time.UTC))
	})
}

// TestQuietHoursUntilProperties checks Until against the wall clock in
// zones with DST of one hour, of 30 minutes (Lord Howe), with the jump at
// midnight (Santiago) and without DST, at random times over two years.
// Away from a DST change the answer must agree with reading the clock;
// everywhere the answer is open, and when it is later than t it is the
// window's end on the clock or a zone change.
func TestQuietHoursUntilProperties(t *testing.T) {
	t.Parallel()
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
		"Asia/Kolkata", "Pacific/Chatham", "America/St_Johns"}
	rng := rand.New(rand.NewPCG(1, 2)) //nolint:gosec // a reproducible test sequence
	from, span := utc("2024-01-01T00:00:00Z"), 2*365*24*time.Hour
	for i := range 20000 {
		loc := mustZone(t, zones[i%len(zones)])
		q := consent.QuietHours{Start: rng.IntN(1440), End: rng.IntN(1440)}
		if !q.Valid() {
			continue
		}
		at := from.Add(time.Duration(rng.Int64N(int64(span)))).Truncate(time.Second)
		got := q.Until(at, loc)

		require.False(t, got.Before(at), "%s %v at %v: %v is before t", loc, q, at, got)
		require.Equal(t, got, q.Until(got, loc), "%s %v at %v: %v is not open", loc, q, at, got)
		require.Less(t, got.Sub(at), 26*time.Hour, "%s %v at %v", loc, q, at)
		if got.After(at) {
			hh, mm, ss := got.In(loc).Clock()
			start, _ := got.ZoneBounds()
			require.True(t, (hh*60+mm == q.End && ss == 0) || got.Equal(start),
				"%s %v at %v: %v is neither the end on the clock nor a zone change", loc, q, at, got)
		}
		if nearZoneChange(at, got, loc) {
			continue
		}
		hh, mm, _ := at.In(loc).Clock()
		require.Equal(t, inWindow(q, hh*60+mm), got.After(at), "%s %v at %v (%v local): got %v", loc, q, at, at.In(loc), got)
	}
}

// nearZoneChange reports a zone change within a day of the interval.
func nearZoneChange(a, b time.Time, loc *time.Location) bool {
	_, offA := a.Add(-24 * time.Hour).In(loc).Zone()
	_, offB := b.Add(24 * time.Hour).In(loc).Zone()
	_, offM := a.In(loc).Zone()
	return offA != offM || offB != offM
}

func inWindow(q consent.QuietHours, minute int) bool {
	if q.Start < q.End {
		return minute >= q.Start && minute < q.End
	}
	return minute >= q.Start || minute < q.End
}

func TestClock(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"00:00", "07:05", "23:59"} {
		m, err := consent.ParseClock(s)
		require.NoError(t, err)
		require.Equal(t, s, consent.FormatClock(m))
	}
	for _, s := range []string{"24:00", "7:05", "07:60", "0705", "", "ab:cd"} {
		_, err := consent.ParseClock(s)
		require.Error(t, err, s)
	}
}
