package purchase_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
)

// bought is one purchase of a boundary case: how long before t0, and what.
type bought struct {
	ago      time.Duration
	minor    int64
	currency string // "" is USD, the default base currency
}

// spread is n purchases of minor each, the newest last days ago and the
// others one day apart before it.
func spread(n, last int, minor int64) []bought {
	out := make([]bought, n)
	for i := range out {
		out[i] = bought{ago: days(last + i), minor: minor}
	}
	return out
}

type rfmCase struct {
	name    string
	bought  []bought
	r, f, m int32
	segment customerv1.Segment
}

// The default thresholds: recency 30/90/180/365 days (scores 5..2),
// frequency 2/3/5/8 purchases and monetary 10,000/25,000/50,000/100,000
// minor units (scores 2..5), window 365 days.
var (
	important = customerv1.Segment_SEGMENT_IMPORTANT
	ordinary  = customerv1.Segment_SEGMENT_ORDINARY
	potential = customerv1.Segment_SEGMENT_POTENTIAL
	atRisk    = customerv1.Segment_SEGMENT_AT_RISK
	lost      = customerv1.Segment_SEGMENT_LOST
)

var defaultRFMCases = []rfmCase{
	// Recency: whole days since the last purchase, each bound inclusive.
	{"R5At30Days", spread(1, 30, 100), 5, 1, 1, potential},
	{"R5At30DaysAnd23Hours", []bought{{ago: days(30) + 23*time.Hour, minor: 100}}, 5, 1, 1, potential},
	{"R4At31Days", spread(1, 31, 100), 4, 1, 1, potential},
	{"R4At90Days", spread(1, 90, 100), 4, 1, 1, potential},
	{"R3At91Days", spread(1, 91, 100), 3, 1, 1, ordinary},
	{"R3At180Days", spread(1, 180, 100), 3, 1, 1, ordinary},
	{"R2At181Days", spread(1, 181, 100), 2, 1, 1, ordinary},
	{"R2At365Days", spread(1, 365, 100), 2, 1, 1, ordinary},
	{"R1At366Days", spread(1, 366, 100), 1, 1, 1, lost},

	// Frequency: purchases in the window, at least 2/3/5/8.
	{"F1At1Purchase", spread(1, 1, 100), 5, 1, 1, potential},
	{"F2At2Purchases", spread(2, 1, 100), 5, 2, 1, potential},
	{"F3At3Purchases", spread(3, 1, 100), 5, 3, 1, ordinary},
	{"F3At4Purchases", spread(4, 1, 100), 5, 3, 1, ordinary},
	{"F4At5Purchases", spread(5, 1, 100), 5, 4, 1, ordinary},
	{"F4At7Purchases", spread(7, 1, 100), 5, 4, 1, ordinary},
	{"F5At8Purchases", spread(8, 1, 100), 5, 5, 1, ordinary},

	// Monetary: spent in the window, at least 10,000/25,000/50,000/100,000.
	{"M1At9999", spread(1, 1, 9_999), 5, 1, 1, potential},
	{"M2At10000", spread(1, 1, 10_000), 5, 1, 2, potential},
	{"M2At24999", spread(1, 1, 24_999), 5, 1, 2, potential},
	{"M3At25000", spread(1, 1, 25_000), 5, 1, 3, potential},
	{"M3At49999", spread(1, 1, 49_999), 5, 1, 3, potential},
	{"M4At50000", spread(1, 1, 50_000), 5, 1, 4, potential},
	{"M4At99999", spread(1, 1, 99_999), 5, 1, 4, potential},
	{"M5At100000", spread(1, 1, 100_000), 5, 1, 5, potential},

	// The window includes its first instant, 365 days ago, and nothing
	// earlier; only base-currency purchases add to monetary.
	{"WindowIncludes365Days", []bought{{ago: days(10), minor: 100}, {ago: days(365), minor: 20_000}}, 5, 2, 2, potential},
	{"WindowExcludes365DaysAnd1Second", []bought{{ago: days(10), minor: 100}, {ago: days(365) + time.Second, minor: 20_000}}, 5, 1, 1, potential},
	{"OtherCurrencyCountsForFrequencyOnly", []bought{{ago: days(10), minor: 100}, {ago: days(20), minor: 90_000, currency: "EUR"}}, 5, 2, 1, potential},

	// important: R >= 4, F >= 4, M >= 4, each at its edge, and one short.
	{"ImportantAtEdges", spread(5, 90, 10_000), 4, 4, 4, important},
	{"NotImportantAtM3", spread(5, 90, 9_999), 4, 4, 3, ordinary},
	{"NotImportantAtR3", spread(5, 91, 10_000), 3, 4, 4, ordinary},
	{"NotImportantAtF3", spread(4, 90, 12_500), 4, 3, 4, ordinary},

	// potential: R >= 4 and F <= 2.
	{"PotentialAtR4F2", spread(2, 90, 100), 4, 2, 1, potential},
	{"NotPotentialAtF3", spread(3, 90, 100), 4, 3, 1, ordinary},
	{"NotPotentialAtR3", spread(1, 91, 100), 3, 1, 1, ordinary},

	// at_risk: R <= 2 and (F >= 3 or M >= 3).
	{"AtRiskAtR2F3", spread(3, 181, 100), 2, 3, 1, atRisk},
	{"AtRiskAtR2M3", spread(1, 181, 25_000), 2, 1, 3, atRisk},
	{"NotAtRiskAtR2F2M2", spread(2, 181, 5_000), 2, 2, 2, ordinary},
	{"NotAtRiskAtR3F3M3", spread(3, 180, 10_000), 3, 3, 3, ordinary},

	// lost: R = 1 and F <= 2, whatever was spent long ago.
	{"LostBigSpenderLongAgo", spread(2, 366, 1_000_000), 1, 1, 1, lost},
}

// TestSegmentBoundaries places customers exactly at each threshold's edge
// (default settings) and checks scores and segment. Purchases go through
// RecordPurchase (the per-customer recompute); then a tenant-wide recompute
// must agree and change nothing.
func TestSegmentBoundaries(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()

	runRFMCases(t, b, tenant, defaultRFMCases)
	t.Cleanup(func() {
		resp := b.recomputeAll(t, tenant)
		require.Zero(t, resp.GetSegmentsChanged(), "the tenant-wide recompute agrees with the per-customer one")
		require.Equal(t, int64(len(defaultRFMCases)), resp.GetCustomersSegmented())
		// A case's purchases may move its customer through segments on
		// the way; each move is one event, counted by the version.
		require.Equal(t, b.count(t, `SELECT sum(segment_version) FROM customer_segments WHERE tenant_id = $1`, tenant),
			len(b.segmentEvents(t, tenant)), "one event per change")
	})
}

// TestSegmentRulePrecedence uses a two-year window so a customer can have
// R = 1 and still purchases in the window: lost is checked before at_risk.
func TestSegmentRulePrecedence(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	_, err := b.segments.UpdateSegmentSettings(as(tenant), &customerv1.UpdateSegmentSettingsRequest{
		Settings:   &customerv1.SegmentSettings{WindowDays: 730},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"window_days"}},
	})
	require.NoError(t, err)
	runRFMCases(t, b, tenant, []rfmCase{
		{"LostBeatsAtRiskAtR1F2M4", spread(2, 366, 30_000), 1, 2, 4, lost},
		{"AtRiskAtR1F3", spread(3, 366, 100), 1, 3, 1, atRisk},
		{"LostAtR1F2", spread(2, 400, 100), 1, 2, 1, lost},
	})
}

func runRFMCases(t *testing.T, b *testBundle, tenant uuid.UUID, cases []rfmCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := b.newCustomer(t, tenant)
			var last time.Time
			for i, p := range tc.bought {
				in := at(newPurchase(fmt.Sprintf("%s-%d", tc.name, i), p.minor), t0.Add(-p.ago))
				if p.currency != "" {
					in.TotalAmount.CurrencyCode, in.Items[0].UnitPrice.CurrencyCode = p.currency, p.currency
				}
				b.record(t, tenant, c, in)
				if pt := t0.Add(-p.ago); pt.After(last) {
					last = pt
				}
			}
			got := b.segment(t, tenant, c)
			require.Equal(t, []int32{tc.r, tc.f, tc.m}, []int32{got.GetRecencyScore(), got.GetFrequencyScore(), got.GetMonetaryScore()},
				"R, F, M of %v", got)
			require.Equal(t, tc.segment, got.GetSegment(), "segment of %v", got)
			require.Equal(t, last, got.GetLastPurchaseTime().AsTime())
			require.Equal(t, int32(t0.Sub(last)/days(1)), got.GetRecencyDays())
		})
	}
}

// TestSegmentChangedEvents: segment.changed is written when the segment
// changes and only then (not when only scores move), exactly once per
// change, with a version per customer that counts the changes.
func TestSegmentChangedEvents(t *testing.T) {
	t.Parallel()

	t.Run("OneCustomerThroughItsSegments", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		type step struct {
			segment, previous customerv1.Segment
			version           int64
		}
		requireEvents := func(t *testing.T, want ...step) {
			t.Helper()
			evs := b.segmentEvents(t, tenant)
			require.Len(t, evs, len(want), "events: %v", evs)
			for i, w := range want {
				require.Equal(t, w, step{evs[i].GetSegment(), evs[i].GetPreviousSegment(), evs[i].GetAggregateVersion()}, "event %d", i)
				require.Equal(t, c.String(), evs[i].GetCustomerId())
				require.Equal(t, tenant.String(), evs[i].GetTenantId())
			}
		}

		b.record(t, tenant, c, newPurchase("E-1", 5_000))
		requireEvents(t, step{potential, 0, 1})
		first := b.events(t, tenant, "rapport.customer.segment.changed")[0]
		require.Equal(t, "customer_segment", first.AggregateType)

		// A second purchase moves F to 2: the row changes, the segment
		// does not, so no event.
		b.record(t, tenant, c, newPurchase("E-2", 3_000))
		got := b.segment(t, tenant, c)
		require.Equal(t, int32(2), got.GetFrequencyScore())
		require.Equal(t, int64(2), got.GetFrequency())
		require.True(t, proto.Equal(usd(8_000), got.GetMonetary()))
		requireEvents(t, step{potential, 0, 1})

		// Nothing new: a recompute changes nothing.
		require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged())
		requireEvents(t, step{potential, 0, 1})

		// 100 days on: R = 3, F = 2, M = 1: ordinary.
		b.clock.Advance(days(100))
		require.Equal(t, int64(1), b.recomputeAll(t, tenant).GetSegmentsChanged())
		require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged())
		requireEvents(t, step{potential, 0, 1}, step{ordinary, potential, 2})

		// 200 days: R = 2, still ordinary: scores move, no event.
		b.clock.Advance(days(100))
		require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged())
		require.Equal(t, int32(2), b.segment(t, tenant, c).GetRecencyScore())
		requireEvents(t, step{potential, 0, 1}, step{ordinary, potential, 2})

		// 366 days: lost.
		b.clock.Advance(days(166))
		require.Equal(t, int64(1), b.recomputeAll(t, tenant).GetSegmentsChanged())
		requireEvents(t, step{potential, 0, 1}, step{ordinary, potential, 2}, step{lost, ordinary, 3})

		// Back with a purchase: potential again, in the purchase's
		// transaction.
		b.record(t, tenant, c, newPurchase("E-3", 100))
		requireEvents(t, step{potential, 0, 1}, step{ordinary, potential, 2}, step{lost, ordinary, 3}, step{potential, lost, 4})
		got = b.segment(t, tenant, c)
		require.Equal(t, potential, got.GetSegment())
		require.Equal(t, lost, got.GetPreviousSegment())
		require.Equal(t, int64(4), got.GetVersion())
		require.Equal(t, b.clock.Now(), got.GetSegmentChangeTime().AsTime())
		require.Len(t, b.events(t, tenant, "rapport.customer.purchase.recorded"), 3)
	})

	t.Run("ManyCustomersOneEventPerChange", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		const n = 40
		customers := b.newCustomers(t, tenant, n)
		for i, c := range customers {
			b.record(t, tenant, c, at(newPurchase(fmt.Sprintf("M-%d", i), 100), t0.Add(-days(i%60))))
		}
		require.Len(t, b.segmentEvents(t, tenant), n)

		// 60 days later the customers whose purchase is now over 90 days
		// old drop from potential (R4) to ordinary (R3): i >= 31.
		b.clock.Advance(days(60))
		want := 0
		for i := range customers {
			if i%60+60 > 90 {
				want++
			}
		}
		require.Positive(t, want)
		resp := b.recomputeAll(t, tenant)
		require.Equal(t, int64(want), resp.GetSegmentsChanged())
		require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged())
		evs := b.segmentEvents(t, tenant)
		require.Len(t, evs, n+want)
		seen := map[string]bool{}
		for _, ev := range evs[n:] {
			require.False(t, seen[ev.GetCustomerId()], "one event per changed customer")
			seen[ev.GetCustomerId()] = true
			require.Equal(t, []customerv1.Segment{potential, ordinary}, []customerv1.Segment{ev.GetPreviousSegment(), ev.GetSegment()})
			require.Equal(t, int64(2), ev.GetAggregateVersion())
		}
		counts := map[customerv1.Segment]int64{}
		for _, sc := range resp.GetSegmentCounts() {
			counts[sc.GetSegment()] = sc.GetCustomers()
		}
		require.Equal(t, map[customerv1.Segment]int64{
			important: 0, potential: int64(n - want), ordinary: int64(want), atRisk: 0, lost: 0,
		}, counts)
		require.Equal(t, int64(n), resp.GetCustomersSegmented())
	})
}

func TestGetCustomerSegment(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	c := b.newCustomer(t, tenant)

	t.Run("NoPurchaseIsNoSegment", func(t *testing.T) {
		t.Parallel()
		none := b.newCustomer(t, tenant)
		got := b.segment(t, tenant, none)
		require.True(t, proto.Equal(&customerv1.CustomerSegment{CustomerId: none.String()}, got), "%v", got)
	})
	t.Run("OtherTenantIsNotFound", func(t *testing.T) {
		t.Parallel()
		b.record(t, tenant, c, newPurchase("GS-1", 100))
		for _, id := range []uuid.UUID{c, uuid.New()} {
			_, err := b.segments.GetCustomerSegment(as(uuid.New()), &customerv1.GetCustomerSegmentRequest{CustomerId: id.String()})
			require.Equal(t, codes.NotFound, status.Code(err))
		}
	})
	t.Run("AnalystIsDenied", func(t *testing.T) {
		t.Parallel()
		_, err := b.segments.GetCustomerSegment(as(tenant, "analyst"), &customerv1.GetCustomerSegmentRequest{CustomerId: c.String()})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
	t.Run("BadIDNamesTheField", func(t *testing.T) {
		t.Parallel()
		_, err := b.segments.GetCustomerSegment(as(tenant), &customerv1.GetCustomerSegmentRequest{CustomerId: "nope"})
		requireFieldViolation(t, err, "customer_id")
	})
}

func TestListCustomersBySegment(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	// Seven customers become potential one hour apart, two at the same
	// instant (the id breaks the tie), one becomes ordinary.
	var potentials []uuid.UUID
	for i := range 7 {
		if i != 3 {
			b.clock.Advance(time.Hour)
		}
		c := b.newCustomer(t, tenant)
		b.record(t, tenant, c, newPurchase(fmt.Sprintf("LS-%d", i), 100))
		potentials = append(potentials, c)
	}
	o := b.newCustomer(t, tenant)
	b.record(t, tenant, o, at(newPurchase("LS-O", 100), b.clock.Now().Add(-days(100))))

	list := func(tb testing.TB, req *customerv1.ListCustomersBySegmentRequest) (*customerv1.ListCustomersBySegmentResponse, error) {
		tb.Helper()
		return b.segments.ListCustomersBySegment(as(tenant, "analyst"), req)
	}

	t.Run("RecentFirstAcrossPages", func(t *testing.T) {
		t.Parallel()
		var (
			got []*customerv1.CustomerSegment
			tok string
		)
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			resp, err := list(t, &customerv1.ListCustomersBySegmentRequest{Segment: potential, PageSize: 3, PageToken: tok})
			require.NoError(t, err)
			got = append(got, resp.GetCustomers()...)
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		require.Len(t, got, len(potentials))
		for i, m := range got {
			require.Equal(t, potential, m.GetSegment())
			if i > 0 {
				prev := got[i-1]
				require.False(t, m.GetSegmentChangeTime().AsTime().After(prev.GetSegmentChangeTime().AsTime()))
				if m.GetSegmentChangeTime().AsTime().Equal(prev.GetSegmentChangeTime().AsTime()) {
					require.Less(t, m.GetCustomerId(), prev.GetCustomerId())
				}
			}
		}
		require.Equal(t, potentials[len(potentials)-1].String(), got[0].GetCustomerId())
	})

	t.Run("OtherSegment", func(t *testing.T) {
		t.Parallel()
		resp, err := list(t, &customerv1.ListCustomersBySegmentRequest{Segment: ordinary})
		require.NoError(t, err)
		require.Len(t, resp.GetCustomers(), 1)
		require.Equal(t, o.String(), resp.GetCustomers()[0].GetCustomerId())
		resp, err = list(t, &customerv1.ListCustomersBySegmentRequest{Segment: lost})
		require.NoError(t, err)
		require.Empty(t, resp.GetCustomers())
	})

	t.Run("SegmentIsRequired", func(t *testing.T) {
		t.Parallel()
		_, err := list(t, &customerv1.ListCustomersBySegmentRequest{})
		requireFieldViolation(t, err, "segment")
		_, err = list(t, &customerv1.ListCustomersBySegmentRequest{Segment: 42})
		requireFieldViolation(t, err, "segment")
	})

	t.Run("TokenOfAnotherSegmentIsRefused", func(t *testing.T) {
		t.Parallel()
		resp, err := list(t, &customerv1.ListCustomersBySegmentRequest{Segment: potential, PageSize: 1})
		require.NoError(t, err)
		_, err = list(t, &customerv1.ListCustomersBySegmentRequest{Segment: ordinary, PageToken: resp.GetNextPageToken()})
		requireFieldViolation(t, err, "page_token")
	})

	t.Run("OtherTenantSeesNone", func(t *testing.T) {
		t.Parallel()
		resp, err := b.segments.ListCustomersBySegment(as(uuid.New()), &customerv1.ListCustomersBySegmentRequest{Segment: potential})
		require.NoError(t, err)
		require.Empty(t, resp.GetCustomers())
	})

	t.Run("AgentIsDenied", func(t *testing.T) {
		t.Parallel()
		_, err := b.segments.ListCustomersBySegment(as(tenant, "agent"), &customerv1.ListCustomersBySegmentRequest{Segment: potential})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
}

func TestSegmentSettings(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	defaults := &customerv1.SegmentSettings{
		BaseCurrency: "USD", WindowDays: 365, RecencyMaxDays: []int32{30, 90, 180, 365},
		FrequencyMin: []int64{2, 3, 5, 8}, MonetaryMinMinor: []int64{10_000, 25_000, 50_000, 100_000},
	}
	update := func(tb testing.TB, tenant uuid.UUID, s *customerv1.SegmentSettings, paths ...string) (*customerv1.SegmentSettings, error) {
		tb.Helper()
		req := &customerv1.UpdateSegmentSettingsRequest{Settings: s}
		if paths != nil {
			req.UpdateMask = &fieldmaskpb.FieldMask{Paths: paths}
		}
		return b.segments.UpdateSegmentSettings(as(tenant), req)
	}

	t.Run("DefaultsUntilSet", func(t *testing.T) {
		t.Parallel()
		got, err := b.segments.GetSegmentSettings(as(uuid.New()), &customerv1.GetSegmentSettingsRequest{})
		require.NoError(t, err)
		require.True(t, proto.Equal(defaults, got), "%v", got)
	})

	t.Run("MaskedUpdateKeepsTheRest", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		got, err := update(t, tenant, &customerv1.SegmentSettings{BaseCurrency: "EUR", WindowDays: 9}, "base_currency")
		require.NoError(t, err)
		want := proto.Clone(defaults).(*customerv1.SegmentSettings)
		want.BaseCurrency, want.Version = "EUR", 1
		require.NotNil(t, got.GetUpdateTime())
		got.UpdateTime = nil
		require.True(t, proto.Equal(want, got), "%v", got)

		got, err = update(t, tenant, &customerv1.SegmentSettings{FrequencyMin: []int64{1, 2, 3, 4}}, "frequency_min")
		require.NoError(t, err)
		require.Equal(t, int64(2), got.GetVersion())
		require.Equal(t, "EUR", got.GetBaseCurrency())
		require.Equal(t, []int64{1, 2, 3, 4}, got.GetFrequencyMin())

		read, err := b.segments.GetSegmentSettings(as(tenant), &customerv1.GetSegmentSettingsRequest{})
		require.NoError(t, err)
		require.True(t, proto.Equal(got, read))

		// The same values again write nothing.
		again, err := update(t, tenant, &customerv1.SegmentSettings{FrequencyMin: []int64{1, 2, 3, 4}}, "frequency_min")
		require.NoError(t, err)
		require.Equal(t, int64(2), again.GetVersion())
	})

	t.Run("FullReplaceNeedsEveryField", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		_, err := update(t, tenant, &customerv1.SegmentSettings{WindowDays: 30})
		requireFieldViolation(t, err, "settings.base_currency")
		full := proto.Clone(defaults).(*customerv1.SegmentSettings)
		full.WindowDays = 180
		got, err := update(t, tenant, full, "*")
		require.NoError(t, err)
		require.Equal(t, int32(180), got.GetWindowDays())
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		for _, tc := range []struct {
			s     *customerv1.SegmentSettings
			paths []string
			field string
		}{
			{&customerv1.SegmentSettings{RecencyMaxDays: []int32{30, 30, 180, 365}}, []string{"recency_max_days"}, "settings.recency_max_days"},
			{&customerv1.SegmentSettings{RecencyMaxDays: []int32{30, 90, 180}}, []string{"recency_max_days"}, "settings.recency_max_days"},
			{&customerv1.SegmentSettings{FrequencyMin: []int64{0, 1, 2, 3}}, []string{"frequency_min"}, "settings.frequency_min"},
			{&customerv1.SegmentSettings{MonetaryMinMinor: []int64{5, 4, 3, 2}}, []string{"monetary_min_minor"}, "settings.monetary_min_minor"},
			{&customerv1.SegmentSettings{BaseCurrency: "euro"}, []string{"base_currency"}, "settings.base_currency"},
			{&customerv1.SegmentSettings{WindowDays: 4000}, []string{"window_days"}, "settings.window_days"},
			{&customerv1.SegmentSettings{}, []string{"window_days"}, "settings.window_days"},
			{&customerv1.SegmentSettings{WindowDays: 10}, []string{"version"}, "update_mask"},
		} {
			_, err := update(t, tenant, tc.s, tc.paths...)
			requireFieldViolation(t, err, tc.field)
		}
		got, err := b.segments.GetSegmentSettings(as(tenant), &customerv1.GetSegmentSettingsRequest{})
		require.NoError(t, err)
		require.Zero(t, got.GetVersion(), "nothing was stored")
	})

	t.Run("AdminOnly", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		for _, role := range []string{"supervisor", "marketer", "analyst", "agent", "service"} {
			_, err := b.segments.GetSegmentSettings(as(tenant, role), &customerv1.GetSegmentSettingsRequest{})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.segments.UpdateSegmentSettings(as(tenant, role), &customerv1.UpdateSegmentSettingsRequest{
				Settings: &customerv1.SegmentSettings{WindowDays: 10}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"window_days"}}})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.segments.RecomputeSegments(as(tenant, role), &customerv1.RecomputeSegmentsRequest{})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		}
	})

	t.Run("RetryWithRequestIDReplays", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		req := &customerv1.UpdateSegmentSettingsRequest{
			Settings:   &customerv1.SegmentSettings{WindowDays: 100},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"window_days"}},
			RequestId:  uuid.NewString(),
		}
		first, err := b.segments.UpdateSegmentSettings(as(tenant), req)
		require.NoError(t, err)
		_, err = update(t, tenant, &customerv1.SegmentSettings{WindowDays: 200}, "window_days")
		require.NoError(t, err)
		again, err := b.segments.UpdateSegmentSettings(as(tenant), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		read, err := b.segments.GetSegmentSettings(as(tenant), &customerv1.GetSegmentSettingsRequest{})
		require.NoError(t, err)
		require.Equal(t, int32(200), read.GetWindowDays(), "the replay changed nothing")
	})

	// New thresholds apply at the next round, which the update brings
	// forward to now.
	t.Run("NewThresholdsApplyAtTheNextRound", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		b.record(t, tenant, c, newPurchase("ST-1", 100))
		n, err := b.server.RecomputeDue(t.Context(), time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n, "due since its first purchase")
		b.clock.Advance(30 * time.Minute)
		n, err = b.server.RecomputeDue(t.Context(), time.Hour)
		require.NoError(t, err)
		require.Zero(t, n, "not due again within the hour")
		require.Equal(t, int32(1), b.segment(t, tenant, c).GetMonetaryScore())

		_, err = b.segments.UpdateSegmentSettings(as(tenant), &customerv1.UpdateSegmentSettingsRequest{
			Settings:   &customerv1.SegmentSettings{MonetaryMinMinor: []int64{1, 2, 3, 100}},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"monetary_min_minor"}},
		})
		require.NoError(t, err)
		require.Equal(t, int32(1), b.segment(t, tenant, c).GetMonetaryScore(), "not before the round")
		n, err = b.server.RecomputeDue(t.Context(), time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n, "the update made the tenant due")
		require.Equal(t, int32(5), b.segment(t, tenant, c).GetMonetaryScore())
	})
}

func TestRecomputeSegments(t *testing.T) {
	t.Parallel()

	t.Run("RetryWithRequestIDReplaysTheCounts", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		b.record(t, tenant, c, newPurchase("RS-1", 100))
		b.clock.Advance(days(100))
		req := &customerv1.RecomputeSegmentsRequest{RequestId: uuid.NewString()}
		first, err := b.segments.RecomputeSegments(as(tenant), req)
		require.NoError(t, err)
		require.Equal(t, int64(1), first.GetSegmentsChanged())
		again, err := b.segments.RecomputeSegments(as(tenant), req)
		require.NoError(t, err)
		require.True(t, proto.Equal(first, again))
		require.Len(t, b.segmentEvents(t, tenant), 2)
	})

	// Concurrent recomputes of one tenant take turns: each change is made,
	// counted and published once.
	t.Run("ConcurrentCallsCountEachChangeOnce", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		const n = 30
		for i, c := range b.newCustomers(t, tenant, n) {
			b.record(t, tenant, c, newPurchase(fmt.Sprintf("RC-%d", i), 100))
		}
		b.clock.Advance(days(100))
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total int64
		)
		for range 8 {
			wg.Go(func() {
				resp, err := b.segments.RecomputeSegments(as(tenant), &customerv1.RecomputeSegmentsRequest{})
				if !assertNoError(t, err) {
					return
				}
				mu.Lock()
				total += resp.GetSegmentsChanged()
				mu.Unlock()
			})
		}
		wg.Wait()
		require.Equal(t, int64(n), total)
		require.Len(t, b.segmentEvents(t, tenant), 2*n)
	})

	t.Run("OtherTenantsAreUntouched", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant, other := uuid.New(), uuid.New()
		b.record(t, other, b.newCustomer(t, other), newPurchase("OT-1", 100))
		b.clock.Advance(days(100))
		resp := b.recomputeAll(t, tenant)
		require.Zero(t, resp.GetCustomersSegmented())
		require.Len(t, b.segmentEvents(t, other), 1)
	})

	t.Run("BaseCurrencyOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		p := newPurchase("BC-1", 200_000)
		p.TotalAmount = &typev1.Money{CurrencyCode: "EUR", AmountMinor: 200_000}
		p.Items[0].UnitPrice = &typev1.Money{CurrencyCode: "EUR", AmountMinor: 200_000}
		b.record(t, tenant, c, p)
		require.Equal(t, int32(1), b.segment(t, tenant, c).GetMonetaryScore())
		_, err := b.segments.UpdateSegmentSettings(as(tenant), &customerv1.UpdateSegmentSettingsRequest{
			Settings: &customerv1.SegmentSettings{BaseCurrency: "EUR"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"base_currency"}}})
		require.NoError(t, err)
		b.recomputeAll(t, tenant)
		got := b.segment(t, tenant, c)
		require.Equal(t, int32(5), got.GetMonetaryScore())
		require.True(t, proto.Equal(&typev1.Money{CurrencyCode: "EUR", AmountMinor: 200_000}, got.GetMonetary()))
	})
}

// assertNoError reports err without stopping a goroutine that is not the
// test's (require would call FailNow from it).
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
		return false
	}
	return true
}
