package purchase

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store"
)

// DefaultSettings are the thresholds of a tenant that never set any.
//
// Monetary is summed in one base currency per tenant and purchases in other
// currencies are not converted: they count for recency and frequency only.
// Converting would need exchange rates as of each purchase, which Rapport
// does not keep; a tenant selling in several currencies picks the main one.
// USD is only a default: the amounts (100, 250, 500, 1,000 in major units)
// suit USD and EUR, and a tenant in another currency sets its own.
func DefaultSettings() store.Settings {
	return store.Settings{
		BaseCurrency:     "USD",
		WindowDays:       365,
		RecencyMaxDays:   [4]int32{30, 90, 180, 365},
		FrequencyMin:     [4]int64{2, 3, 5, 8},
		MonetaryMinMinor: [4]int64{10_000, 25_000, 50_000, 100_000},
	}
}

// settingsPaths are the SegmentSettings fields UpdateSegmentSettings may set.
var settingsPaths = []string{"base_currency", "window_days", "recency_max_days", "frequency_min", "monetary_min_minor"}

// eventBatch is how many segment.changed events go to one outbox.Write call.
const eventBatch = 500

// segmentAPI implements customerv1.SegmentServiceServer.
type segmentAPI struct {
	customerv1.UnimplementedSegmentServiceServer
	s *Server
}

func (a *segmentAPI) GetCustomerSegment(ctx context.Context, req *customerv1.GetCustomerSegmentRequest) (*customerv1.CustomerSegment, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	m, err := a.s.store.Membership(ctx, a.s.pool, tenant, customerID)
	if errors.Is(err, store.ErrNotFound) {
		// No segment: the customer has no purchase, is not the tenant's, or
		// was merged into another. A merge drops the sources' segments and
		// moves their purchases: the customer's standing is the primary's
		// now, and "no segment" under the old id would read as a customer
		// who never bought. Refused, naming the customer to ask about.
		ok, mergedInto, err := a.s.store.CustomerMergedInto(ctx, a.s.pool, tenant, customerID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, toStatus(errCustomerNotFound)
		}
		if mergedInto != uuid.Nil {
			return nil, lifecycle.MergedError(customerID, mergedInto)
		}
		return &customerv1.CustomerSegment{CustomerId: customerID.String()}, nil
	}
	if err != nil {
		return nil, err
	}
	return membershipToProto(m, now), nil
}

func (a *segmentAPI) ListCustomersBySegment(ctx context.Context, req *customerv1.ListCustomersBySegmentRequest) (*customerv1.ListCustomersBySegmentResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	segment := segmentName(req.GetSegment())
	if segment == "" {
		return nil, toStatus(&fieldError{field: "segment", reason: "must be a segment"})
	}
	size := grpcx.PageSize(req.GetPageSize())
	filter := "segment:" + segment
	var after store.Cursor
	if tok := req.GetPageToken(); tok != "" {
		if after, err = decodePageToken(tok, filter); err != nil {
			return nil, toStatus(&fieldError{field: "page_token", reason: err.Error()})
		}
	}
	rows, err := a.s.store.Members(ctx, a.s.pool, tenant, segment, after, size+1)
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	resp := &customerv1.ListCustomersBySegmentResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.SegmentChangeTime, ID: last.CustomerID})
	}
	for _, m := range rows {
		resp.Customers = append(resp.Customers, membershipToProto(m, now))
	}
	return resp, nil
}

func (a *segmentAPI) GetSegmentSettings(ctx context.Context, _ *customerv1.GetSegmentSettingsRequest) (*customerv1.SegmentSettings, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.s.settings(ctx, a.s.pool, tenant, false)
	if err != nil {
		return nil, err
	}
	return settingsToProto(st), nil
}

func (a *segmentAPI) UpdateSegmentSettings(ctx context.Context, req *customerv1.UpdateSegmentSettingsRequest) (*customerv1.SegmentSettings, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := settingsMask(req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, toStatus(err)
	}
	now := a.s.now().UTC()
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.SegmentService_UpdateSegmentSettings_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.SegmentSettings, error) {
		cur, err := a.s.settings(ctx, tx, tenant, true)
		if err != nil {
			return nil, err
		}
		next, err := mergeSettings(cur, req.GetSettings(), paths)
		if err != nil {
			return nil, toStatus(err)
		}
		if cur.Version > 0 && sameThresholds(cur, next) {
			return settingsToProto(cur), nil
		}
		saved, err := a.s.store.PutSettings(ctx, tx, tenant, next, now)
		if err != nil {
			return nil, err
		}
		// The new thresholds apply from the next round, which is now.
		if err := a.s.store.BringForward(ctx, tx, tenant, now); err != nil {
			return nil, err
		}
		return settingsToProto(saved), nil
	})
}

func (a *segmentAPI) RecomputeSegments(ctx context.Context, req *customerv1.RecomputeSegmentsRequest) (*customerv1.RecomputeSegmentsResponse, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.SegmentService_RecomputeSegments_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.RecomputeSegmentsResponse, error) {
		now := a.s.now().UTC()
		// Takes turns with scheduled rounds and other calls for this
		// tenant: it waits for one in progress, then finds its work done.
		if err := a.s.store.LockSchedule(ctx, tx, tenant, now, a.s.recomputeTimeout()); err != nil {
			return nil, err
		}
		changes, err := a.s.recompute(ctx, tx, tenant, uuid.Nil, now)
		if err != nil {
			return nil, err
		}
		if err := a.s.store.RecordRun(ctx, tx, tenant, now, int64(len(changes))); err != nil {
			return nil, err
		}
		counts, err := a.s.store.SegmentCounts(ctx, tx, tenant)
		if err != nil {
			return nil, err
		}
		resp := &customerv1.RecomputeSegmentsResponse{SegmentsChanged: int64(len(changes))}
		for _, seg := range segmentOrder {
			resp.SegmentCounts = append(resp.SegmentCounts, &customerv1.SegmentCount{Segment: seg, Customers: counts[segmentName(seg)]})
			resp.CustomersSegmented += counts[segmentName(seg)]
		}
		return resp, nil
	})
}

// segmentOrder is the order segments are reported in.
var segmentOrder = []customerv1.Segment{
	customerv1.Segment_SEGMENT_IMPORTANT, customerv1.Segment_SEGMENT_POTENTIAL, customerv1.Segment_SEGMENT_ORDINARY,
	customerv1.Segment_SEGMENT_AT_RISK, customerv1.Segment_SEGMENT_LOST,
}

// recompute recomputes the segments of the tenant's customers (of one
// customer if customerID is not nil) in tx with one statement, and writes a
// segment.changed event for each change, in batches, in the same tx.
func (s *Server) recompute(ctx context.Context, tx pgx.Tx, tenantID, customerID uuid.UUID, now time.Time) ([]store.Membership, error) {
	st, err := s.settings(ctx, tx, tenantID, false)
	if err != nil {
		return nil, err
	}
	changes, err := s.store.Recompute(ctx, tx, store.RecomputeParams{
		TenantID: tenantID, CustomerID: customerID, Settings: st, Now: now,
	})
	if err != nil {
		return nil, err
	}
	if customerID != uuid.Nil {
		return changes, nil // the caller writes them with its own event
	}
	events := segmentEvents(tenantID, changes, now)
	for len(events) > 0 {
		n := min(len(events), eventBatch)
		if err := outbox.Write(ctx, tx, events[:n]...); err != nil {
			return nil, fmt.Errorf("write segment events: %w", err)
		}
		events = events[n:]
	}
	return changes, nil
}

// settings returns the tenant's thresholds, or the defaults (version 0).
func (s *Server) settings(ctx context.Context, db store.DB, tenantID uuid.UUID, forUpdate bool) (store.Settings, error) {
	st, err := s.store.Settings(ctx, db, tenantID, forUpdate)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultSettings(), nil
	}
	return st, err
}

func segmentEvents(tenantID uuid.UUID, changes []store.Membership, now time.Time) []outbox.Event {
	out := make([]outbox.Event, len(changes))
	for i, m := range changes {
		out[i] = outbox.Event{
			TenantID: tenantID.String(), Subject: SubjectSegmentChanged,
			AggregateType: aggregateSegment, AggregateID: m.CustomerID.String(), AggregateVersion: m.SegmentVersion,
			OccurredAt: now,
			Payload: &customerv1.SegmentChanged{
				TenantId: tenantID.String(), CustomerId: m.CustomerID.String(),
				AggregateVersion: m.SegmentVersion, OccurredAt: timestamppb.New(now),
				PreviousSegment: segmentValue(m.PreviousSegment), Segment: segmentValue(m.Segment),
				RecencyScore: m.RecencyScore, FrequencyScore: m.FrequencyScore, MonetaryScore: m.MonetaryScore,
				LastPurchaseTime: timestamppb.New(m.LastPurchaseTime), Frequency: m.Frequency,
				Monetary: money(m.MonetaryCurrency, m.MonetaryMinor),
			},
		}
	}
	return out
}

// settingsMask checks an update mask; empty or "*" means every field.
func settingsMask(paths []string) ([]string, error) {
	if len(paths) == 0 || (len(paths) == 1 && paths[0] == "*") {
		return settingsPaths, nil
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !slices.Contains(settingsPaths, p) {
			return nil, &fieldError{field: "update_mask",
				reason: fmt.Sprintf("path %q cannot be updated; allowed: %s", p, strings.Join(settingsPaths, ", "))}
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// mergeSettings copies the masked fields of in onto cur. protovalidate has
// checked each given field's own rules; here a masked field must be given.
func mergeSettings(cur store.Settings, in *customerv1.SegmentSettings, paths []string) (store.Settings, error) {
	next := cur
	missing := func(p string) error {
		return &fieldError{field: "settings." + p, reason: "is required when named in update_mask (or the mask is empty)"}
	}
	for _, p := range paths {
		switch p {
		case "base_currency":
			if in.GetBaseCurrency() == "" {
				return store.Settings{}, missing(p)
			}
			next.BaseCurrency = in.GetBaseCurrency()
		case "window_days":
			if in.GetWindowDays() == 0 {
				return store.Settings{}, missing(p)
			}
			next.WindowDays = in.GetWindowDays()
		case "recency_max_days":
			if len(in.GetRecencyMaxDays()) != 4 {
				return store.Settings{}, missing(p)
			}
			next.RecencyMaxDays = [4]int32(in.GetRecencyMaxDays())
		case "frequency_min":
			if len(in.GetFrequencyMin()) != 4 {
				return store.Settings{}, missing(p)
			}
			next.FrequencyMin = [4]int64(in.GetFrequencyMin())
		case "monetary_min_minor":
			if len(in.GetMonetaryMinMinor()) != 4 {
				return store.Settings{}, missing(p)
			}
			next.MonetaryMinMinor = [4]int64(in.GetMonetaryMinMinor())
		}
	}
	return next, nil
}

func sameThresholds(a, b store.Settings) bool {
	return a.BaseCurrency == b.BaseCurrency && a.WindowDays == b.WindowDays && a.RecencyMaxDays == b.RecencyMaxDays &&
		a.FrequencyMin == b.FrequencyMin && a.MonetaryMinMinor == b.MonetaryMinMinor
}

func settingsToProto(st store.Settings) *customerv1.SegmentSettings {
	out := &customerv1.SegmentSettings{
		BaseCurrency: st.BaseCurrency, WindowDays: st.WindowDays,
		RecencyMaxDays: st.RecencyMaxDays[:], FrequencyMin: st.FrequencyMin[:],
		MonetaryMinMinor: st.MonetaryMinMinor[:], Version: st.Version,
	}
	if !st.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(st.UpdateTime)
	}
	return out
}

func membershipToProto(m store.Membership, now time.Time) *customerv1.CustomerSegment {
	days := max(0, now.Sub(m.LastPurchaseTime)/(24*time.Hour))
	return &customerv1.CustomerSegment{
		CustomerId: m.CustomerID.String(), Segment: segmentValue(m.Segment),
		PreviousSegment: segmentValue(m.PreviousSegment),
		RecencyScore:    m.RecencyScore, FrequencyScore: m.FrequencyScore, MonetaryScore: m.MonetaryScore,
		RecencyDays:      int32(min(days, 1<<31-1)), //nolint:gosec // clamped
		LastPurchaseTime: timestamppb.New(m.LastPurchaseTime), Frequency: m.Frequency,
		Monetary:          money(m.MonetaryCurrency, m.MonetaryMinor),
		SegmentChangeTime: timestamppb.New(m.SegmentChangeTime), UpdateTime: timestamppb.New(m.UpdateTime),
		Version: m.SegmentVersion,
	}
}

// Segments are stored by their lower-case names: SEGMENT_AT_RISK is
// "at_risk"; "" is no segment.
const segmentPrefix = "SEGMENT_"

func segmentName(s customerv1.Segment) string {
	if s == customerv1.Segment_SEGMENT_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.Segment_name[int32(s)]; !ok {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), segmentPrefix))
}

func segmentValue(name string) customerv1.Segment {
	if name == "" {
		return customerv1.Segment_SEGMENT_UNSPECIFIED
	}
	return customerv1.Segment(customerv1.Segment_value[segmentPrefix+strings.ToUpper(name)])
}
