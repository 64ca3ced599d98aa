package insight

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/insight/store"
)

// Report bounds: each report is one statement whose cost grows with its
// range, so ranges are capped rather than left to the statement timeout.
const (
	maxCohortMonths     = 36
	defaultMonthsAfter  = 12
	maxMetricsRange     = 366 * 24 * time.Hour
	monthLayoutForError = "YYYY-MM"
)

func (a *insightAPI) GetRetentionReport(ctx context.Context, req *customerv1.GetRetentionReportRequest) (*customerv1.RetentionReport, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	first, err := parseMonth("start_month", req.GetStartMonth())
	if err != nil {
		return nil, toStatus(err)
	}
	last, err := parseMonth("end_month", req.GetEndMonth())
	if err != nil {
		return nil, toStatus(err)
	}
	switch {
	case last < first:
		return nil, toStatus(&fieldError{field: "end_month", reason: "must not be before start_month"})
	case last-first+1 > maxCohortMonths:
		return nil, toStatus(&fieldError{field: "end_month",
			reason: fmt.Sprintf("at most %d months from start_month, both included", maxCohortMonths)})
	}
	after := req.GetMonthsAfter()
	switch {
	case after == 0:
		after = defaultMonthsAfter
	case after < 0 || after > maxCohortMonths:
		return nil, toStatus(&fieldError{field: "months_after", reason: fmt.Sprintf("must be 0 to %d", maxCohortMonths)})
	}
	segment, err := segmentFilter("segment", req.GetSegment())
	if err != nil {
		return nil, toStatus(err)
	}
	cells, err := a.s.store.Cohorts(ctx, a.s.pool, store.CohortParams{
		TenantID: tenant, FirstMonth: first, LastMonth: last, MonthsAfter: after,
		NowMonth: monthOf(a.s.now()), Segment: segment,
	})
	if err != nil {
		return nil, err
	}
	out := &customerv1.RetentionReport{Segment: req.GetSegment(), MonthsAfter: after}
	var cur *customerv1.Cohort
	for _, c := range cells {
		if cur == nil || cur.GetMonth() != formatMonth(c.Cohort) {
			cur = &customerv1.Cohort{Month: formatMonth(c.Cohort), Size: c.Size}
			out.Cohorts = append(out.Cohorts, cur)
		}
		if !c.Begun {
			continue
		}
		cur.Periods = append(cur.Periods, &customerv1.CohortPeriod{
			Offset: c.Offset, Month: formatMonth(c.Cohort + c.Offset), Retained: c.Retained,
			RetentionRate: c.RetentionRate, ChurnRate: c.ChurnRate, Complete: c.Complete,
		})
	}
	return out, nil
}

func (a *insightAPI) GetCustomerMetrics(ctx context.Context, req *customerv1.GetCustomerMetricsRequest) (*customerv1.CustomerMetricsReport, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetStartTime() == nil {
		return nil, toStatus(&fieldError{field: "start_time", reason: "is required"})
	}
	if req.GetEndTime() == nil {
		return nil, toStatus(&fieldError{field: "end_time", reason: "is required"})
	}
	start, end := req.GetStartTime().AsTime(), req.GetEndTime().AsTime()
	switch {
	case !end.After(start):
		return nil, toStatus(&fieldError{field: "end_time", reason: "must be after start_time"})
	case end.Sub(start) > maxMetricsRange:
		return nil, toStatus(&fieldError{field: "end_time", reason: "at most 366 days after start_time"})
	}
	segment, err := segmentFilter("segment", req.GetSegment())
	if err != nil {
		return nil, toStatus(err)
	}
	previous := start.Add(-end.Sub(start))
	rows, err := a.s.store.Metrics(ctx, a.s.pool, store.MetricsParams{
		TenantID: tenant, PreviousStart: previous, Start: start, End: end, Segment: segment,
	})
	if err != nil {
		return nil, err
	}
	out := &customerv1.CustomerMetricsReport{StartTime: timestamppb.New(start), EndTime: timestamppb.New(end),
		PreviousStartTime: timestamppb.New(previous), Total: &customerv1.CustomerMetrics{}}
	bySegment := map[string]*customerv1.CustomerMetrics{}
	for _, r := range rows {
		m := metricsToProto(r)
		if r.Total {
			out.Total = m
			continue
		}
		bySegment[r.Segment] = m
	}
	for _, name := range segmentReportOrder {
		if m, ok := bySegment[name]; ok {
			out.Segments = append(out.Segments, m)
		}
	}
	return out, nil
}

func metricsToProto(r store.Metrics) *customerv1.CustomerMetrics {
	m := &customerv1.CustomerMetrics{
		ActiveCustomers: r.Active, Purchases: r.Purchases, RepeatCustomers: r.Repeaters,
		RepeatPurchaseRate: r.RepeatRate, PurchaseFrequency: r.Frequency,
		PreviousActiveCustomers: r.PreviousActive, ChurnedCustomers: r.Churned, ChurnRate: r.ChurnRate,
	}
	if !r.Total {
		m.Segment = segmentValues[r.Segment]
	}
	return m
}

// Segments are stored by lower-case name (purchase's customer_segments);
// "" is a customer without one.
var (
	segmentNames = map[customerv1.Segment]string{
		customerv1.Segment_SEGMENT_IMPORTANT: "important",
		customerv1.Segment_SEGMENT_ORDINARY:  "ordinary",
		customerv1.Segment_SEGMENT_POTENTIAL: "potential",
		customerv1.Segment_SEGMENT_AT_RISK:   "at_risk",
		customerv1.Segment_SEGMENT_LOST:      "lost",
	}
	segmentValues = func() map[string]customerv1.Segment {
		out := map[string]customerv1.Segment{"": customerv1.Segment_SEGMENT_UNSPECIFIED}
		for v, n := range segmentNames {
			out[n] = v
		}
		return out
	}()
	// segmentReportOrder is SegmentService's order, then no segment.
	segmentReportOrder = []string{"important", "potential", "ordinary", "at_risk", "lost", ""}
)

// segmentFilter is the stored name of a filter segment, "" for none.
func segmentFilter(field string, s customerv1.Segment) (string, error) {
	if s == customerv1.Segment_SEGMENT_UNSPECIFIED {
		return "", nil
	}
	name, ok := segmentNames[s]
	if !ok {
		return "", &fieldError{field: field, reason: "must be a segment"}
	}
	return name, nil
}

// Months are numbered year*12 + month-1, so offsets are differences.

// parseMonth reads YYYY-MM (protovalidate has checked the form; this guards
// direct calls and the year's range).
func parseMonth(field, v string) (int32, error) {
	bad := &fieldError{field: field, reason: "must be a month as " + monthLayoutForError}
	y, m, ok := strings.Cut(v, "-")
	if !ok || len(y) != 4 || len(m) != 2 {
		return 0, bad
	}
	year, err := strconv.Atoi(y)
	if err != nil || year < 1 {
		return 0, bad
	}
	month, err := strconv.Atoi(m)
	if err != nil || month < 1 || month > 12 {
		return 0, bad
	}
	return int32(year*12 + month - 1), nil //nolint:gosec // four digits
}

func formatMonth(m int32) string { return fmt.Sprintf("%04d-%02d", m/12, m%12+1) }

func monthOf(t time.Time) int32 {
	t = t.UTC()
	return int32(t.Year()*12 + int(t.Month()) - 1) //nolint:gosec // a calendar year
}
