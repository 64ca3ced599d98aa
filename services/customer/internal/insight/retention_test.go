package insight_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

// retentionFixture is eleven customers of one tenant buying from December
// 2025 to May 2026 (the clock stands at 2026-05-10), with segments, and a
// second tenant buying in the same months, which must never show.
//
//	customer segment   purchases (UTC)                                   cohort
//	c1       important 01-05, 02-10, 04-20                               Jan
//	c2       at_risk   01-31 23:59:59, 02-01 00:00:00                    Jan
//	c3       important 01-15, 01-20, 03-03                               Jan
//	c4       lost      01-02                                             Jan
//	c5       important 02-01 00:00:00, 03-01 00:00:00, 04-01 00:00:00    Feb
//	c6       ordinary  02-14, 04-30 23:59:59                             Feb
//	c7       potential 02-28 12:00, 05-02                                Feb
//	c8       (none)    03-10, 03-12                                      Mar
//	c9       important 03-31 23:59:59, 04-02                             Mar
//	c10      potential 04-01 00:00:00, 04-15                             Apr
//	c11      important 2025-12-20, 01-10                                 Dec 2025
//
// c11's first purchase is before January, so it is in no cohort of the
// January-April report though it bought in January.
type retentionFixture struct {
	tenant, other uuid.UUID
	c             []uuid.UUID // c[1]..c[11]; c[0] unused
}

func newRetentionFixture(t *testing.T, b *testBundle) retentionFixture {
	t.Helper()
	f := retentionFixture{tenant: uuid.New(), other: uuid.New()}
	f.c = append([]uuid.UUID{uuid.Nil}, b.newCustomers(t, f.tenant, 11)...)
	d := func(m time.Month, day int) time.Time { return utc(2026, m, day, 10, 0, 0) }
	buys := map[int][]time.Time{
		1:  {d(1, 5), d(2, 10), d(4, 20)},
		2:  {utc(2026, 1, 31, 23, 59, 59), utc(2026, 2, 1, 0, 0, 0)},
		3:  {d(1, 15), d(1, 20), d(3, 3)},
		4:  {d(1, 2)},
		5:  {utc(2026, 2, 1, 0, 0, 0), utc(2026, 3, 1, 0, 0, 0), utc(2026, 4, 1, 0, 0, 0)},
		6:  {d(2, 14), utc(2026, 4, 30, 23, 59, 59)},
		7:  {utc(2026, 2, 28, 12, 0, 0), d(5, 2)},
		8:  {d(3, 10), d(3, 12)},
		9:  {utc(2026, 3, 31, 23, 59, 59), d(4, 2)},
		10: {utc(2026, 4, 1, 0, 0, 0), d(4, 15)},
		11: {utc(2025, 12, 20, 10, 0, 0), d(1, 10)},
	}
	for i, times := range buys {
		for _, at := range times {
			b.buy(t, f.tenant, f.c[i], at)
		}
	}
	for i, seg := range map[int]string{1: "important", 2: "at_risk", 3: "important", 4: "lost", 5: "important",
		6: "ordinary", 7: "potential", 9: "important", 10: "potential", 11: "important"} {
		b.setSegment(t, f.tenant, f.c[i], seg)
	}
	// The other tenant: customers buying every month, and once more in
	// March, with segments; any leak changes every figure below.
	others := b.newCustomers(t, f.other, 3)
	for _, c := range others {
		for m := time.January; m <= time.May; m++ {
			b.buy(t, f.other, c, d(m, 3))
		}
		b.buy(t, f.other, c, d(3, 20))
		b.setSegment(t, f.other, c, "important")
	}
	return f
}

func period(offset int32, month string, retained int64, rate, churn float64, complete bool) *customerv1.CohortPeriod {
	return &customerv1.CohortPeriod{Offset: offset, Month: month, Retained: retained, RetentionRate: rate,
		ChurnRate: churn, Complete: complete}
}

func TestRetentionReport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newRetentionFixture(t, b)

	t.Run("CohortTableMatchesHandComputation", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetRetentionReport(grpcxtest.As(f.tenant, "marketer"), &customerv1.GetRetentionReportRequest{
			StartMonth: "2026-01", EndMonth: "2026-04", MonthsAfter: 3})
		require.NoError(t, err)
		// By hand (rate = retained / size to 4 places; churn = 1 - rate):
		//
		// Jan: {c1, c2, c3, c4}, size 4.
		//   +0 Jan: all four                                   4/4 = 1
		//   +1 Feb: c1 (02-10), c2 (02-01 00:00:00)            2/4 = 0.5
		//   +2 Mar: c3 (03-03)                                 1/4 = 0.25
		//   +3 Apr: c1 (04-20)                                 1/4 = 0.25
		// Feb: {c5 (02-01 00:00:00 is February), c6, c7}, size 3.
		//   +0 Feb: 3/3 = 1
		//   +1 Mar: c5 (03-01 00:00:00)                        1/3 = 0.3333, churn 2/3 = 0.6667
		//   +2 Apr: c5 (04-01 00:00:00), c6 (04-30 23:59:59)   2/3 = 0.6667, churn 0.3333
		//   +3 May: c7 (05-02); May is not over                1/3 = 0.3333, incomplete
		// Mar: {c8, c9 (03-31 23:59:59 is March)}, size 2.
		//   +0 Mar: 2/2 = 1
		//   +1 Apr: c9 (04-02)                                 1/2 = 0.5
		//   +2 May: nobody yet                                 0/2 = 0, incomplete
		//   +3 Jun: not begun, absent
		// Apr: {c10}, size 1.
		//   +0 Apr: 1/1 = 1
		//   +1 May: 0/1 = 0, incomplete; +2, +3 absent.
		// c11 bought in January but first in December: in no cohort.
		want := &customerv1.RetentionReport{MonthsAfter: 3, Cohorts: []*customerv1.Cohort{
			{Month: "2026-01", Size: 4, Periods: []*customerv1.CohortPeriod{
				period(0, "2026-01", 4, 1, 0, true), period(1, "2026-02", 2, 0.5, 0.5, true),
				period(2, "2026-03", 1, 0.25, 0.75, true), period(3, "2026-04", 1, 0.25, 0.75, true)}},
			{Month: "2026-02", Size: 3, Periods: []*customerv1.CohortPeriod{
				period(0, "2026-02", 3, 1, 0, true), period(1, "2026-03", 1, 0.3333, 0.6667, true),
				period(2, "2026-04", 2, 0.6667, 0.3333, true), period(3, "2026-05", 1, 0.3333, 0.6667, false)}},
			{Month: "2026-03", Size: 2, Periods: []*customerv1.CohortPeriod{
				period(0, "2026-03", 2, 1, 0, true), period(1, "2026-04", 1, 0.5, 0.5, true),
				period(2, "2026-05", 0, 0, 1, false)}},
			{Month: "2026-04", Size: 1, Periods: []*customerv1.CohortPeriod{
				period(0, "2026-04", 1, 1, 0, true), period(1, "2026-05", 0, 0, 1, false)}},
		}}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("cohorts (-want +got):\n%s", diff)
		}
	})

	t.Run("SegmentFilter", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetRetentionReport(grpcxtest.As(f.tenant), &customerv1.GetRetentionReportRequest{
			StartMonth: "2026-01", EndMonth: "2026-04", MonthsAfter: 2, Segment: customerv1.Segment_SEGMENT_IMPORTANT})
		require.NoError(t, err)
		// Important: Jan {c1, c3}, Feb {c5}, Mar {c9}, Apr {} (c11 is in
		// no cohort).
		//   Jan +1 Feb: c1           1/2 = 0.5;  +2 Mar: c3     1/2 = 0.5
		//   Feb +1 Mar: c5           1/1 = 1;    +2 Apr: c5     1/1 = 1
		//   Mar +1 Apr: c9           1/1 = 1;    +2 May: nobody 0, incomplete
		//   Apr: empty, every rate 0; +2 Jun not begun.
		want := &customerv1.RetentionReport{MonthsAfter: 2, Segment: customerv1.Segment_SEGMENT_IMPORTANT,
			Cohorts: []*customerv1.Cohort{
				{Month: "2026-01", Size: 2, Periods: []*customerv1.CohortPeriod{
					period(0, "2026-01", 2, 1, 0, true), period(1, "2026-02", 1, 0.5, 0.5, true),
					period(2, "2026-03", 1, 0.5, 0.5, true)}},
				{Month: "2026-02", Size: 1, Periods: []*customerv1.CohortPeriod{
					period(0, "2026-02", 1, 1, 0, true), period(1, "2026-03", 1, 1, 0, true),
					period(2, "2026-04", 1, 1, 0, true)}},
				{Month: "2026-03", Size: 1, Periods: []*customerv1.CohortPeriod{
					period(0, "2026-03", 1, 1, 0, true), period(1, "2026-04", 1, 1, 0, true),
					period(2, "2026-05", 0, 0, 1, false)}},
				{Month: "2026-04", Size: 0, Periods: []*customerv1.CohortPeriod{
					period(0, "2026-04", 0, 0, 0, true), period(1, "2026-05", 0, 0, 0, false)}},
			}}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("important cohorts (-want +got):\n%s", diff)
		}
	})

	t.Run("DefaultMonthsAfterAndFutureCohorts", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetRetentionReport(grpcxtest.As(f.tenant), &customerv1.GetRetentionReportRequest{
			StartMonth: "2026-04", EndMonth: "2026-07"})
		require.NoError(t, err)
		require.Equal(t, int32(12), got.GetMonthsAfter())
		var months []string
		for _, c := range got.GetCohorts() {
			months = append(months, c.GetMonth())
		}
		require.Equal(t, []string{"2026-04", "2026-05", "2026-06", "2026-07"}, months, "empty months are listed")
		require.Len(t, got.GetCohorts()[0].GetPeriods(), 2, "April: +0 and +1 (May) have begun")
		require.Len(t, got.GetCohorts()[1].GetPeriods(), 1, "May: only itself")
		require.Equal(t, int64(0), got.GetCohorts()[1].GetSize(), "c7 bought in May but first in February")
		require.Empty(t, got.GetCohorts()[2].GetPeriods(), "June has not begun")
	})

	t.Run("OtherTenantSeesOnlyItsOwn", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetRetentionReport(grpcxtest.As(f.other), &customerv1.GetRetentionReportRequest{
			StartMonth: "2026-01", EndMonth: "2026-02", MonthsAfter: 1})
		require.NoError(t, err)
		require.Equal(t, int64(3), got.GetCohorts()[0].GetSize())
		require.Equal(t, int64(3), got.GetCohorts()[0].GetPeriods()[1].GetRetained())
		require.Equal(t, int64(0), got.GetCohorts()[1].GetSize())
	})
}

func TestCustomerMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newRetentionFixture(t, b)
	// March: [03-01 00:00, 04-01 00:00), 31 days; the previous period is
	// the 31 days before, [01-29 00:00, 03-01 00:00).
	start, end := utc(2026, 3, 1, 0, 0, 0), utc(2026, 4, 1, 0, 0, 0)
	prev := utc(2026, 1, 29, 0, 0, 0)
	metrics := func(t *testing.T, seg customerv1.Segment) *customerv1.CustomerMetricsReport {
		t.Helper()
		got, err := b.insight.GetCustomerMetrics(grpcxtest.As(f.tenant, "supervisor"), &customerv1.GetCustomerMetricsRequest{
			StartTime: timestamppb.New(start), EndTime: timestamppb.New(end), Segment: seg})
		require.NoError(t, err)
		return got
	}

	t.Run("MatchesHandComputation", func(t *testing.T) {
		t.Parallel()
		got := metrics(t, customerv1.Segment_SEGMENT_UNSPECIFIED)
		// In March: c3 (03-03), c5 (03-01 00:00:00: the start is included),
		// c8 (03-10, 03-12), c9 (03-31 23:59:59). Not c9's 04-02 nor c10's
		// 04-01 00:00:00: the end is excluded.
		//   active 4; purchases 1+1+2+1 = 5; repeaters {c8} = 1
		//   repeat rate 1/4 = 0.25; frequency 5/4 = 1.25
		// In [01-29, 03-01): c1 (02-10), c2 (01-31, 02-01), c5 (02-01),
		// c6 (02-14), c7 (02-28); not c3, c4, c11 (all before 01-29).
		//   previous active 5; churned {c1, c2, c6, c7} = 4; churn 4/5 = 0.8
		// Per segment (current segments):
		//   important: now c3, c5, c9 (3, 3 purchases, no repeater,
		//     frequency 3/3 = 1); before c1, c5 (2), churned c1: 1/2 = 0.5
		//   potential: c7 before only: 0 active; churned 1/1 = 1
		//   ordinary:  c6 before only: 0 active; churned 1/1 = 1
		//   at_risk:   c2 before only: 0 active; churned 1/1 = 1
		//   lost:      c4 bought in neither period: no row
		//   none:      c8 now only: 1 active, 2 purchases, 1 repeater
		//     (1/1 = 1), frequency 2/1 = 2; nobody before, churn 0
		// Check: active 3+1 = 4, previous 2+1+1+1 = 5, churned 1+1+1+1 = 4.
		want := &customerv1.CustomerMetricsReport{
			StartTime: timestamppb.New(start), EndTime: timestamppb.New(end), PreviousStartTime: timestamppb.New(prev),
			Total: &customerv1.CustomerMetrics{ActiveCustomers: 4, Purchases: 5, RepeatCustomers: 1,
				RepeatPurchaseRate: 0.25, PurchaseFrequency: 1.25, PreviousActiveCustomers: 5, ChurnedCustomers: 4,
				ChurnRate: 0.8},
			Segments: []*customerv1.CustomerMetrics{
				{Segment: customerv1.Segment_SEGMENT_IMPORTANT, ActiveCustomers: 3, Purchases: 3, PurchaseFrequency: 1,
					PreviousActiveCustomers: 2, ChurnedCustomers: 1, ChurnRate: 0.5},
				{Segment: customerv1.Segment_SEGMENT_POTENTIAL, PreviousActiveCustomers: 1, ChurnedCustomers: 1, ChurnRate: 1},
				{Segment: customerv1.Segment_SEGMENT_ORDINARY, PreviousActiveCustomers: 1, ChurnedCustomers: 1, ChurnRate: 1},
				{Segment: customerv1.Segment_SEGMENT_AT_RISK, PreviousActiveCustomers: 1, ChurnedCustomers: 1, ChurnRate: 1},
				{Segment: customerv1.Segment_SEGMENT_UNSPECIFIED, ActiveCustomers: 1, Purchases: 2, RepeatCustomers: 1,
					RepeatPurchaseRate: 1, PurchaseFrequency: 2},
			},
		}
		if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
			t.Fatalf("metrics (-want +got):\n%s", diff)
		}
	})

	t.Run("SegmentFilter", func(t *testing.T) {
		t.Parallel()
		got := metrics(t, customerv1.Segment_SEGMENT_IMPORTANT)
		important := &customerv1.CustomerMetrics{ActiveCustomers: 3, Purchases: 3, PurchaseFrequency: 1,
			PreviousActiveCustomers: 2, ChurnedCustomers: 1, ChurnRate: 0.5}
		if diff := cmp.Diff(important, got.GetTotal(), protocmp.Transform()); diff != "" {
			t.Fatalf("total (-want +got):\n%s", diff)
		}
		require.Len(t, got.GetSegments(), 1)
		require.Equal(t, customerv1.Segment_SEGMENT_IMPORTANT, got.GetSegments()[0].GetSegment())
	})

	t.Run("EmptyRangeIsZeros", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetCustomerMetrics(grpcxtest.As(f.tenant), &customerv1.GetCustomerMetricsRequest{
			StartTime: timestamppb.New(utc(2030, 1, 1, 0, 0, 0)), EndTime: timestamppb.New(utc(2030, 2, 1, 0, 0, 0))})
		require.NoError(t, err)
		if diff := cmp.Diff(&customerv1.CustomerMetrics{}, got.GetTotal(), protocmp.Transform()); diff != "" {
			t.Fatalf("total (-want +got):\n%s", diff)
		}
		require.Empty(t, got.GetSegments())
	})

	t.Run("OtherTenantSeesOnlyItsOwn", func(t *testing.T) {
		t.Parallel()
		got, err := b.insight.GetCustomerMetrics(grpcxtest.As(f.other), &customerv1.GetCustomerMetricsRequest{
			StartTime: timestamppb.New(start), EndTime: timestamppb.New(end)})
		require.NoError(t, err)
		// Three customers, each buying on 03-03 and 03-20, and on 02-03.
		require.Equal(t, int64(3), got.GetTotal().GetActiveCustomers())
		require.Equal(t, int64(6), got.GetTotal().GetPurchases())
		require.Equal(t, 1.0, got.GetTotal().GetRepeatPurchaseRate())
		require.Equal(t, int64(3), got.GetTotal().GetPreviousActiveCustomers())
		require.Zero(t, got.GetTotal().GetChurnedCustomers())
	})
}

func TestAnalyticsRejectsBadInput(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := grpcxtest.As(uuid.New())
	ts := func(y int, m time.Month, d int) *timestamppb.Timestamp { return timestamppb.New(utc(y, m, d, 0, 0, 0)) }
	for name, tc := range map[string]struct {
		req   *customerv1.GetRetentionReportRequest
		field string
	}{
		"EndMonthBeforeStart": {&customerv1.GetRetentionReportRequest{StartMonth: "2026-03", EndMonth: "2026-02"}, "end_month"},
		"RangeTooLong":        {&customerv1.GetRetentionReportRequest{StartMonth: "2023-01", EndMonth: "2026-01"}, "end_month"},
		"MonthMalformed":      {&customerv1.GetRetentionReportRequest{StartMonth: "2026-13", EndMonth: "2026-12"}, "start_month"},
		"MonthMissing":        {&customerv1.GetRetentionReportRequest{StartMonth: "2026-01"}, "end_month"},
		"MonthsAfterTooMany":  {&customerv1.GetRetentionReportRequest{StartMonth: "2026-01", EndMonth: "2026-02", MonthsAfter: 37}, "months_after"},
		"UnknownSegment":      {&customerv1.GetRetentionReportRequest{StartMonth: "2026-01", EndMonth: "2026-02", Segment: 99}, "segment"},
	} {
		t.Run("Retention"+name, func(t *testing.T) {
			t.Parallel()
			_, err := b.insight.GetRetentionReport(ctx, tc.req)
			requireFieldViolation(t, err, tc.field)
		})
	}
	for name, tc := range map[string]struct {
		req   *customerv1.GetCustomerMetricsRequest
		field string
	}{
		"EndBeforeStart": {&customerv1.GetCustomerMetricsRequest{StartTime: ts(2026, 3, 1), EndTime: ts(2026, 2, 1)}, "end_time"},
		"EmptyRange":     {&customerv1.GetCustomerMetricsRequest{StartTime: ts(2026, 3, 1), EndTime: ts(2026, 3, 1)}, "end_time"},
		"RangeTooLong":   {&customerv1.GetCustomerMetricsRequest{StartTime: ts(2025, 1, 1), EndTime: ts(2026, 1, 3)}, "end_time"},
		"StartMissing":   {&customerv1.GetCustomerMetricsRequest{EndTime: ts(2026, 3, 1)}, "start_time"},
		"UnknownSegment": {&customerv1.GetCustomerMetricsRequest{StartTime: ts(2026, 3, 1), EndTime: ts(2026, 4, 1), Segment: 42}, "segment"},
	} {
		t.Run("Metrics"+name, func(t *testing.T) {
			t.Parallel()
			_, err := b.insight.GetCustomerMetrics(ctx, tc.req)
			requireFieldViolation(t, err, tc.field)
		})
	}
	t.Run("LongestRangesAreAccepted", func(t *testing.T) {
		t.Parallel()
		_, err := b.insight.GetRetentionReport(ctx, &customerv1.GetRetentionReportRequest{StartMonth: "2023-02", EndMonth: "2026-01", MonthsAfter: 36})
		require.NoError(t, err, "36 cohorts, 36 months after")
		_, err = b.insight.GetCustomerMetrics(ctx, &customerv1.GetCustomerMetricsRequest{StartTime: ts(2024, 1, 1), EndTime: ts(2024, 12, 31)})
		require.NoError(t, err, "366 days (2024 is a leap year)")
	})
}

func TestAnalyticsRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	req := &customerv1.GetRetentionReportRequest{StartMonth: "2026-01", EndMonth: "2026-02"}
	for _, role := range []string{"admin", "supervisor", "marketer", "analyst"} {
		_, err := b.insight.GetRetentionReport(grpcxtest.As(tenant, role), req)
		require.NoError(t, err, role)
	}
	for _, role := range []string{"agent", "service"} {
		_, err := b.insight.GetRetentionReport(grpcxtest.As(tenant, role), req)
		require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		_, err = b.insight.GetCustomerMetrics(grpcxtest.As(tenant, role), &customerv1.GetCustomerMetricsRequest{
			StartTime: timestamppb.New(now.Add(-time.Hour)), EndTime: timestamppb.New(now)})
		require.Equal(t, codes.PermissionDenied, status.Code(err), role)
	}
}
