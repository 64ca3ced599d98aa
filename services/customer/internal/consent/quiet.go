package consent

import (
	"fmt"
	"sync"
	"time"
	_ "time/tzdata" // quiet hours must resolve zones on hosts and images without a zoneinfo database
)

// QuietHours is a daily window of local wall-clock time, [Start, End) in
// minutes after midnight, during which only service contacts are allowed.
// End < Start runs across midnight; Start == End is not a window.
type QuietHours struct {
	Start int
	End   int
}

// ParseClock reads "HH:MM" as minutes after midnight.
func ParseClock(s string) (int, error) {
	var h, m int
	if len(s) != 5 || s[2] != ':' {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	if _, err := fmt.Sscanf(s, "%2d:%2d", &h, &m); err != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return 0, fmt.Errorf("%q is not HH:MM", s)
	}
	return h*60 + m, nil
}

// FormatClock writes minutes after midnight as "HH:MM".
func FormatClock(minutes int) string {
	return fmt.Sprintf("%02d:%02d", minutes/60, minutes%60)
}

// Valid reports whether q is a window.
func (q QuietHours) Valid() bool {
	return q.Start >= 0 && q.Start < 24*60 && q.End >= 0 && q.End < 24*60 && q.Start != q.End
}

// Until returns when the quiet period holding t ends, or t itself when t is
// outside quiet hours: the earliest instant from t on that is not quiet.
//
// A quiet period is defined by instants, not by re-reading the wall clock:
// it runs from the first instant the local clock shows Start on some day to
// the first instant it shows End afterwards. That keeps the night in one
// piece across DST changes:
//   - spring forward: a Start or End inside the skipped hour happens when the
//     clock jumps past it (22:00–02:30 in Europe/Berlin on the last Sunday of
//     March ends at 03:00 CEST, the instant 02:30 is skipped);
//   - fall back: a Start or End inside the repeated hour happens at its first
//     showing, and the second pass through the repeated hour is still the
//     same night (02:15–07:00 does not reopen at 02:00 CET).
func (q QuietHours) Until(t time.Time, loc *time.Location) time.Time {
	if !q.Valid() {
		return t
	}
	// Periods that can hold t start on t's local day or the day before
	// (across midnight). A period can end exactly where the next one starts
	// (a 23:59-hour window on a day whose midnight is skipped), so repeat
	// until t lands outside; three rounds cover any real zone.
	for range 3 {
		end, quiet := q.periodHolding(t, loc)
		if !quiet {
			return t
		}
		t = end
	}
	return t
}

// periodHolding returns the end of the quiet period holding t, if any.
func (q QuietHours) periodHolding(t time.Time, loc *time.Location) (time.Time, bool) {
	y, m, d := t.In(loc).Date()
	for _, day := range []int{d - 1, d} {
		from := firstShowing(y, m, day, q.Start, loc)
		endDay := day
		if q.End < q.Start {
			endDay++
		}
		to := firstShowing(y, m, endDay, q.End, loc)
		if !t.Before(from) && t.Before(to) {
			return to, true
		}
	}
	return time.Time{}, false
}

// firstShowing returns the first instant at which the wall clock in loc
// reads at least the given minute of the given day (time.Date normalises
// day overflow). time.Date alone is ambiguous exactly where quiet hours
// matter: for a time skipped by a DST jump it may answer an instant before
// the jump, and for a repeated time either occurrence.
func firstShowing(y int, m time.Month, d, minute int, loc *time.Location) time.Time {
	want := time.Date(y, m, d, minute/60, minute%60, 0, 0, time.UTC)
	t := time.Date(y, m, d, minute/60, minute%60, 0, 0, loc)
	got := wallClock(t)
	switch {
	case got.After(want):
		// Skipped, and t was normalised forwards into the zone that began
		// with the jump: the jump is when the clock passed the minute.
		start, _ := t.ZoneBounds()
		return start
	case got.Before(want):
		// Skipped, normalised backwards: the jump ends t's zone.
		_, end := t.ZoneBounds()
		return end
	}
	// Shown twice when t is in a zone that began by turning the clock back
	// and the same reading existed under the previous offset, earlier.
	start, _ := t.ZoneBounds()
	if start.IsZero() {
		return t
	}
	_, prevOffset := start.Add(-time.Second).Zone()
	_, offset := t.Zone()
	if prevOffset > offset {
		earlier := t.Add(-time.Duration(prevOffset-offset) * time.Second)
		if earlier.Before(start) && wallClock(earlier).Equal(want) {
			return earlier
		}
	}
	return t
}

// wallClock is t's local reading as a UTC time, for comparing readings.
func wallClock(t time.Time) time.Time {
	y, m, d := t.Date()
	hh, mm, ss := t.Clock()
	return time.Date(y, m, d, hh, mm, ss, t.Nanosecond(), time.UTC)
}

var locations sync.Map // zone name -> *time.Location

// Location resolves an IANA zone name, falling back to fallback and then to
// UTC when a name is empty or unknown. Resolved zones are cached: loading one
// parses the embedded database.
func Location(name, fallback string) (*time.Location, string) {
	for _, n := range []string{name, fallback} {
		if n == "" || n == "Local" {
			continue
		}
		if l, ok := locations.Load(n); ok {
			return l.(*time.Location), n
		}
		if l, err := time.LoadLocation(n); err == nil {
			locations.Store(n, l)
			return l, n
		}
	}
	return time.UTC, "UTC"
}
