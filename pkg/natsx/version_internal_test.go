package natsx

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestCheckServerVersion(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name    string
		version string
		tooOld  bool
		invalid bool
	}{
		{name: "AcceptsTheMinimum", version: "2.10.23"},
		{name: "AcceptsALaterPatch", version: "2.10.24"},
		{name: "AcceptsALaterMinor", version: "2.11.0"},
		{name: "AcceptsThePinnedRelease", version: "2.15.2"},
		{name: "AcceptsALaterMajor", version: "3.0.0"},
		{name: "AcceptsAVPrefix", version: "v2.12.1"},
		{name: "AcceptsBuildMetadata", version: "2.10.23+3f1d2c"},
		{name: "AcceptsAPreReleaseOfALaterVersion", version: "2.10.24-RC.1"},
		{name: "RefusesThePreviousPatch", version: "2.10.22", tooOld: true},
		{name: "RefusesAnOlderMinor", version: "2.9.10", tooOld: true},
		{name: "RefusesAnOlderMajor", version: "1.99.99", tooOld: true},
		{name: "RefusesAPreReleaseOfTheMinimum", version: "2.10.23-beta.1", tooOld: true},
		{name: "RejectsEmpty", version: "", invalid: true},
		{name: "RejectsTwoParts", version: "2.10", invalid: true},
		{name: "RejectsFourParts", version: "2.10.23.1", invalid: true},
		{name: "RejectsALetter", version: "2.x.23", invalid: true},
		{name: "RejectsANegativePart", version: "2.-1.23", invalid: true},
		{name: "RejectsALeadingZero", version: "2.010.23", invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkServerVersion(tc.version)
			switch {
			case tc.tooOld:
				require.ErrorIs(t, err, ErrServerTooOld)
			case tc.invalid:
				require.Error(t, err)
				require.False(t, errors.Is(err, ErrServerTooOld), "a malformed version is not 'too old': %v", err)
			default:
				require.NoError(t, err)
			}
		})
	}
}

func TestReconnectDelay(t *testing.T) {
	t.Parallel()

	delay := reconnectDelay(250*time.Millisecond, 10*time.Second)
	for _, tc := range []struct {
		attempts int
		lo, hi   time.Duration
	}{
		{attempts: 0, lo: 125 * time.Millisecond, hi: 250 * time.Millisecond},
		{attempts: 1, lo: 125 * time.Millisecond, hi: 250 * time.Millisecond},
		{attempts: 2, lo: 250 * time.Millisecond, hi: 500 * time.Millisecond},
		{attempts: 3, lo: 500 * time.Millisecond, hi: time.Second},
		{attempts: 6, lo: 4 * time.Second, hi: 8 * time.Second},
		{attempts: 7, lo: 5 * time.Second, hi: 10 * time.Second},
		{attempts: 64, lo: 5 * time.Second, hi: 10 * time.Second},
		{attempts: 1 << 30, lo: 5 * time.Second, hi: 10 * time.Second},
	} {
		t.Run(fmt.Sprintf("Attempt%d", tc.attempts), func(t *testing.T) {
			t.Parallel()
			for range 200 {
				d := delay(tc.attempts)
				require.GreaterOrEqual(t, d, tc.lo)
				require.LessOrEqual(t, d, tc.hi)
			}
		})
	}
}
