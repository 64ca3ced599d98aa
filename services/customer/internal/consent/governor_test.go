package consent_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
)

const day = 24 * time.Hour

func granted(p consent.Purpose, basis consent.LegalBasis) *consent.Consent {
	return &consent.Consent{Channel: consent.ChannelEmail, Purpose: p, State: consent.StateGranted, LegalBasis: basis}
}

func withState(c *consent.Consent, s consent.State) *consent.Consent {
	c.State = s
	return c
}

func touches(now time.Time, p consent.Purpose, ago ...time.Duration) []consent.Touch {
	out := make([]consent.Touch, len(ago))
	for i, a := range ago {
		out[i] = consent.Touch{Purpose: p, Time: now.Add(-a)}
	}
	return out
}

func TestDecide(t *testing.T) {
	t.Parallel()
	// A Saturday, 12:00 in Berlin (CEST, UTC+2).
	now := utc("2024-06-15T10:00:00Z")
	policy := consent.DefaultPolicy()
	known := func(c *consent.Consent, ts ...[]consent.Touch) consent.Situation {
		s := consent.Situation{Known: true, TimeZone: "Europe/Berlin", Consent: c, Policy: policy}
		for _, t := range ts {
			s.Touches = append(s.Touches, t...)
		}
		return s
	}
	night := &consent.QuietHours{Start: 22 * 60, End: 7 * 60}
	noon := &consent.QuietHours{Start: 11 * 60, End: 13 * 60} // 12:00 local is inside

	type want struct {
		reason  consent.Reason // "" : allowed
		next    string         // "" : none
		global  bool
		purpose consent.Purpose
		count   int
	}
	cases := []struct {
		name    string
		s       consent.Situation
		purpose consent.Purpose
		now     time.Time // zero: now
		want    want
	}{
		{name: "UnknownCustomer", s: consent.Situation{}, purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonCustomerUnknown}},
		{name: "UnknownCustomerEvenForService", s: consent.Situation{}, purpose: consent.PurposeService,
			want: want{reason: consent.ReasonCustomerUnknown}},
		{name: "Erased", s: consent.Situation{Known: true, Erased: true}, purpose: consent.PurposeService,
			want: want{reason: consent.ReasonErased}},
		{name: "NoConsent", s: known(nil), purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonNoConsent}},
		{name: "NoConsentForCare", s: known(nil), purpose: consent.PurposeCare,
			want: want{reason: consent.ReasonNoConsent}},
		{name: "Withdrawn", s: known(withState(granted(consent.PurposeMarketing, consent.BasisConsent), consent.StateWithdrawn)),
			purpose: consent.PurposeMarketing, want: want{reason: consent.ReasonWithdrawn}},
		{name: "PendingDoubleOptIn", s: known(withState(granted(consent.PurposeMarketing, consent.BasisConsent), consent.StatePending)),
			purpose: consent.PurposeMarketing, want: want{reason: consent.ReasonPendingConfirmation}},
		{name: "Granted", s: known(granted(consent.PurposeMarketing, consent.BasisConsent)), purpose: consent.PurposeMarketing},
		{name: "GrantedOnLegitimateInterest", s: known(granted(consent.PurposeCare, consent.BasisLegitimateInterest)),
			purpose: consent.PurposeCare},
		{name: "ServiceOnContractWithoutAnyConsent", s: known(nil), purpose: consent.PurposeService},
		{name: "ServiceOnRecordedContractBasis", s: known(granted(consent.PurposeService, consent.BasisContract)),
			purpose: consent.PurposeService},
		{name: "ServiceOnLegalObligation", s: known(granted(consent.PurposeService, consent.BasisLegalObligation)),
			purpose: consent.PurposeService},
		{name: "ServiceWithdrawnOnTheChannel", s: known(withState(granted(consent.PurposeService, consent.BasisContract), consent.StateWithdrawn)),
			purpose: consent.PurposeService, want: want{reason: consent.ReasonWithdrawn}},
		{name: "ServiceIgnoresQuietHours", s: func() consent.Situation {
			s := known(nil)
			s.QuietHours = noon
			return s
		}(), purpose: consent.PurposeService},
		{name: "ServiceIgnoresCaps", s: known(nil, touches(now, consent.PurposeService, time.Hour, 2*time.Hour, 3*time.Hour,
			4*time.Hour, 5*time.Hour, 6*time.Hour, 7*time.Hour)), purpose: consent.PurposeService},
		{name: "MarketingCapReached", s: known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeMarketing, 1*day, 3*day)), purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-19T10:00:00Z", purpose: consent.PurposeMarketing, count: 2}},
		{name: "MarketingCapFreesWhenTheOldestNeededLeaves", s: known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeMarketing, 1*day, 2*day, 5*day)), purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-20T10:00:00Z", purpose: consent.PurposeMarketing, count: 3}},
		{name: "TouchAtTheWindowsStartHasLeft", s: known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeMarketing, 1*day, 7*day)), purpose: consent.PurposeMarketing},
		{name: "OtherPurposesDoNotCountTowardsThePurposeCap", s: known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeCare, 1*day, 2*day)), purpose: consent.PurposeMarketing},
		{name: "SurveyCapOnePerFortnight", s: known(granted(consent.PurposeSurvey, consent.BasisConsent),
			touches(now, consent.PurposeSurvey, 13*day)), purpose: consent.PurposeSurvey,
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-16T10:00:00Z", purpose: consent.PurposeSurvey, count: 1}},
		{name: "GlobalCapCountsEveryPurpose", s: known(granted(consent.PurposeCare, consent.BasisConsent),
			touches(now, consent.PurposeCare, 1*day, 2*day, 6*day),
			touches(now, consent.PurposeService, 1*time.Hour, 2*time.Hour, 3*time.Hour)), purpose: consent.PurposeCare,
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-16T10:00:00Z", global: true, count: 6}},
		{name: "BothCapsReportTheOneThatFreesLater", s: known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeMarketing, 5*day, 4*day),
			touches(now, consent.PurposeService, 6*day, 1*time.Hour, 2*time.Hour, 3*time.Hour)), purpose: consent.PurposeMarketing,
			// Marketing frees at -5d+7d = +2d; global (6 in 7 days) frees when the oldest leaves: -6d+7d = +1d.
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-17T10:00:00Z", purpose: consent.PurposeMarketing, count: 2}},
		{name: "QuietHoursNow", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent))
			s.QuietHours = noon
			return s
		}(), purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonQuietHours, next: "2024-06-15T11:00:00Z"}},
		{name: "QuietHoursAcrossMidnightInTheCustomersZone", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent))
			s.QuietHours = night
			return s
		}(), purpose: consent.PurposeMarketing, now: utc("2024-06-15T21:30:00Z"), // 23:30 CEST
			want: want{reason: consent.ReasonQuietHours, next: "2024-06-16T05:00:00Z"}},
		{name: "DaytimeInBerlinIsNightInUTCTerms", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent))
			s.QuietHours = night
			return s
		}(), purpose: consent.PurposeMarketing, now: utc("2024-06-15T05:30:00Z")}, // 07:30 CEST
		{name: "QuietHoursInTheTenantsDefaultZone", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent))
			s.TimeZone = ""
			s.Policy.DefaultTimeZone = "Asia/Tokyo"
			s.QuietHours = night
			return s
		}(), purpose: consent.PurposeMarketing, // 19:00 in Tokyo: open
		},
		{name: "QuietHoursInUTCWithoutAnyZone", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent))
			s.TimeZone = ""
			s.QuietHours = &consent.QuietHours{Start: 9 * 60, End: 11 * 60}
			return s
		}(), purpose: consent.PurposeMarketing, want: want{reason: consent.ReasonQuietHours, next: "2024-06-15T11:00:00Z"}},
		{name: "CapFreeingInsideQuietHoursWaitsForTheirEnd", s: func() consent.Situation {
			// Marketing frees at 2024-06-16T00:00Z, 02:00 CEST, inside the night.
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent),
				[]consent.Touch{{Purpose: consent.PurposeMarketing, Time: utc("2024-06-09T00:00:00Z")},
					{Purpose: consent.PurposeMarketing, Time: utc("2024-06-12T00:00:00Z")}})
			s.QuietHours = night
			return s
		}(), purpose: consent.PurposeMarketing,
			want: want{reason: consent.ReasonFrequencyCap, next: "2024-06-16T05:00:00Z", purpose: consent.PurposeMarketing, count: 2}},
		{name: "ConsentIsCheckedBeforeCapsAndQuietHours", s: func() consent.Situation {
			s := known(nil, touches(now, consent.PurposeMarketing, time.Hour, 2*time.Hour))
			s.QuietHours = noon
			return s
		}(), purpose: consent.PurposeMarketing, want: want{reason: consent.ReasonNoConsent}},
		{name: "ZeroMaxIsNoCap", s: func() consent.Situation {
			s := known(granted(consent.PurposeMarketing, consent.BasisConsent),
				touches(now, consent.PurposeMarketing, 1*time.Hour, 2*time.Hour, 3*time.Hour))
			s.Policy.Marketing.Max = 0
			return s
		}(), purpose: consent.PurposeMarketing},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			at := c.now
			if at.IsZero() {
				at = now
			}
			d := consent.Decide(c.s, consent.ChannelEmail, c.purpose, at)
			require.Equal(t, c.want.reason == "", d.Allowed, "%+v", d)
			require.Equal(t, c.want.reason, d.Reason)
			require.Equal(t, at, d.DecideTime)
			if c.want.next == "" {
				require.True(t, d.NextAllowed.IsZero(), "next allowed %v", d.NextAllowed)
			} else {
				require.Equal(t, utc(c.want.next), d.NextAllowed)
			}
			if c.want.reason != consent.ReasonFrequencyCap {
				require.Nil(t, d.Cap)
				return
			}
			require.NotNil(t, d.Cap)
			require.Equal(t, c.want.global, d.Cap.Global)
			require.Equal(t, c.want.purpose, d.Cap.Purpose)
			require.Equal(t, c.want.count, d.Cap.Contacts)
		})
	}

	t.Run("NextAllowedIsAllowed", func(t *testing.T) {
		t.Parallel()
		s := known(granted(consent.PurposeMarketing, consent.BasisConsent),
			touches(now, consent.PurposeMarketing, 1*day, 3*day))
		s.QuietHours = night
		d := consent.Decide(s, consent.ChannelEmail, consent.PurposeMarketing, now)
		require.Equal(t, consent.ReasonFrequencyCap, d.Reason)
		require.True(t, consent.Decide(s, consent.ChannelEmail, consent.PurposeMarketing, d.NextAllowed).Allowed)
		require.False(t, consent.Decide(s, consent.ChannelEmail, consent.PurposeMarketing, d.NextAllowed.Add(-time.Second)).Allowed)
	})
}

func TestApply(t *testing.T) {
	t.Parallel()
	now := utc("2024-06-15T10:00:00Z")
	customer := uuid.New()
	change := func(ch consent.Channel, p consent.Purpose, s consent.State, b consent.LegalBasis) consent.Change {
		return consent.Change{CustomerID: customer, Channel: ch, Purpose: p, State: s, LegalBasis: b, Source: "web-form"}
	}
	current := func(ch consent.Channel, p consent.Purpose, s consent.State) *consent.Consent {
		return &consent.Consent{CustomerID: customer, Channel: ch, Purpose: p, State: s, LegalBasis: consent.BasisConsent,
			Source: "agent", CaptureTime: now.Add(-day), Version: 3}
	}
	email, mkt := consent.ChannelEmail, consent.PurposeMarketing

	cases := []struct {
		name        string
		cur         *consent.Consent
		change      consent.Change
		wantState   consent.State
		wantBasis   consent.LegalBasis
		wantPending bool
		wantField   string
		wantErr     error
	}{
		{name: "MarketingEmailGrantIsPending", change: change(email, mkt, consent.StateGranted, consent.BasisConsent),
			wantState: consent.StatePending, wantBasis: consent.BasisConsent, wantPending: true},
		{name: "MarketingEmailRegrantWhileGrantedStaysGranted", cur: current(email, mkt, consent.StateGranted),
			change: change(email, mkt, consent.StateGranted, consent.BasisConsent), wantState: consent.StateGranted, wantBasis: consent.BasisConsent},
		{name: "MarketingEmailRegrantWhilePendingIssuesAnotherToken", cur: current(email, mkt, consent.StatePending),
			change: change(email, mkt, consent.StateGranted, consent.BasisConsent), wantState: consent.StatePending,
			wantBasis: consent.BasisConsent, wantPending: true},
		{name: "MarketingEmailGrantAfterWithdrawalIsPending", cur: current(email, mkt, consent.StateWithdrawn),
			change: change(email, mkt, consent.StateGranted, consent.BasisConsent), wantState: consent.StatePending,
			wantBasis: consent.BasisConsent, wantPending: true},
		{name: "MarketingSMSGrantNeedsNoConfirmation", change: change(consent.ChannelSMS, mkt, consent.StateGranted, consent.BasisConsent),
			wantState: consent.StateGranted, wantBasis: consent.BasisConsent},
		{name: "ServiceOnContract", change: change(email, consent.PurposeService, consent.StateGranted, consent.BasisContract),
			wantState: consent.StateGranted, wantBasis: consent.BasisContract},
		{name: "WithdrawalKeepsTheBasis", cur: func() *consent.Consent {
			c := current(email, consent.PurposeCare, consent.StateGranted)
			c.LegalBasis = consent.BasisLegitimateInterest
			return c
		}(), change: change(email, consent.PurposeCare, consent.StateWithdrawn, ""), wantState: consent.StateWithdrawn,
			wantBasis: consent.BasisLegitimateInterest},
		{name: "WithdrawalWithoutAnyRecordIsOnConsent", change: change(email, mkt, consent.StateWithdrawn, ""),
			wantState: consent.StateWithdrawn, wantBasis: consent.BasisConsent},
		{name: "WithdrawingPendingNeedsNoConfirmation", cur: current(email, mkt, consent.StatePending),
			change: change(email, mkt, consent.StateWithdrawn, ""), wantState: consent.StateWithdrawn, wantBasis: consent.BasisConsent},
		{name: "GrantNeedsABasis", change: change(email, mkt, consent.StateGranted, ""), wantField: "legal_basis"},
		{name: "ContractIsNoBasisForMarketing", change: change(email, mkt, consent.StateGranted, consent.BasisContract), wantField: "legal_basis"},
		{name: "LegalObligationIsNoBasisForSurveys", change: change(email, consent.PurposeSurvey, consent.StateGranted, consent.BasisLegalObligation),
			wantField: "legal_basis"},
		{name: "PendingIsNotForClients", change: change(email, mkt, consent.StatePending, consent.BasisConsent), wantField: "state"},
		{name: "CaptureInTheFuture", change: func() consent.Change {
			c := change(email, mkt, consent.StateWithdrawn, "")
			c.CaptureTime = now.Add(consent.MaxClockSkew + time.Second)
			return c
		}(), wantField: "capture_time"},
		{name: "CaptureSlightlyAheadIsSkew", change: func() consent.Change {
			c := change(email, mkt, consent.StateWithdrawn, "")
			c.CaptureTime = now.Add(consent.MaxClockSkew)
			return c
		}(), wantState: consent.StateWithdrawn, wantBasis: consent.BasisConsent},
		{name: "OlderThanTheCurrentDecisionIsOutdated", cur: current(email, mkt, consent.StateWithdrawn), change: func() consent.Change {
			c := change(email, mkt, consent.StateGranted, consent.BasisConsent)
			c.CaptureTime = now.Add(-2 * day)
			return c
		}(), wantErr: consent.ErrOutdated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			next, pending, err := consent.Apply(c.cur, c.change, now)
			if c.wantField != "" {
				var fe *consent.FieldError
				require.ErrorAs(t, err, &fe)
				require.Equal(t, c.wantField, fe.Field)
				return
			}
			if c.wantErr != nil {
				require.ErrorIs(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.wantState, next.State)
			require.Equal(t, c.wantBasis, next.LegalBasis)
			require.Equal(t, c.wantPending, pending)
			require.Equal(t, "web-form", next.Source)
			want := c.change.CaptureTime
			if want.IsZero() {
				want = now
			}
			require.Equal(t, want, next.CaptureTime)
		})
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	now := utc("2024-06-15T10:00:00Z")
	pending := &consent.Consent{Channel: consent.ChannelEmail, Purpose: consent.PurposeMarketing,
		State: consent.StatePending, LegalBasis: consent.BasisConsent, Source: "web-form", Version: 4}
	token := consent.Token{Version: 4, CreateTime: now.Add(-time.Hour), ExpireTime: now.Add(consent.ConfirmationTTL - time.Hour)}

	cases := []struct {
		name  string
		cur   *consent.Consent
		token func(consent.Token) consent.Token
		at    time.Time
		want  error
	}{
		{name: "Confirms", cur: pending, token: func(t consent.Token) consent.Token { return t }, at: now},
		{name: "UsedOnce", cur: pending, token: func(t consent.Token) consent.Token { t.UseTime = now; return t }, at: now,
			want: consent.ErrTokenUsed},
		{name: "Revoked", cur: pending, token: func(t consent.Token) consent.Token { t.RevokeTime = now; return t }, at: now,
			want: consent.ErrTokenSuperseded},
		{name: "ExpiresAtItsExpiryTime", cur: pending, token: func(t consent.Token) consent.Token { return t },
			at: token.ExpireTime, want: consent.ErrTokenExpired},
		{name: "ValidJustBeforeExpiry", cur: pending, token: func(t consent.Token) consent.Token { return t },
			at: token.ExpireTime.Add(-time.Microsecond)},
		{name: "ForAnEarlierPendingDecision", cur: pending, token: func(t consent.Token) consent.Token { t.Version = 2; return t },
			at: now, want: consent.ErrTokenSuperseded},
		{name: "NoLongerPending", cur: withState(&consent.Consent{Version: 4}, consent.StateWithdrawn),
			token: func(t consent.Token) consent.Token { return t }, at: now, want: consent.ErrTokenSuperseded},
		{name: "NothingRecorded", token: func(t consent.Token) consent.Token { return t }, at: now, want: consent.ErrTokenSuperseded},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			next, err := consent.Confirm(c.cur, c.token(token), c.at)
			if c.want != nil {
				require.True(t, errors.Is(err, c.want), "got %v, want %v", err, c.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, consent.StateGranted, next.State)
			require.Equal(t, consent.BasisConsent, next.LegalBasis)
			require.Equal(t, consent.ConfirmSource, next.Source)
			require.Equal(t, c.at, next.CaptureTime)
		})
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	a, ha := consent.NewToken()
	b, hb := consent.NewToken()
	require.NotEqual(t, a, b)
	require.NotEqual(t, ha, hb)
	require.Regexp(t, `^cc_[A-Za-z0-9_-]{43}$`, a, "256 bits in base64url after the prefix")
	require.Equal(t, ha, consent.HashToken(a))
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, consent.DefaultPolicy().Validate())
	cases := map[string]func(*consent.Policy){
		"default_time_zone":       func(p *consent.Policy) { p.DefaultTimeZone = "Mars/Olympus" },
		"care_cap.max_contacts":   func(p *consent.Policy) { p.Care.Max = 1001 },
		"marketing_cap.period":    func(p *consent.Policy) { p.Marketing.Period = time.Minute },
		"global_cap.max_contacts": func(p *consent.Policy) { p.Global.Max = -1 },
	}
	for field, mutate := range cases {
		t.Run(field, func(t *testing.T) {
			t.Parallel()
			p := consent.DefaultPolicy()
			mutate(&p)
			var fe *consent.FieldError
			require.ErrorAs(t, p.Validate(), &fe)
			require.Equal(t, field, fe.Field)
		})
	}
}
