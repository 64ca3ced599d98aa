package insight

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/insight/store"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/schedule"
)

func (a *insightAPI) ListRecommendations(ctx context.Context, req *customerv1.ListRecommendationsRequest) (*customerv1.ListRecommendationsResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size <= 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	// Recommendations are for the customer's next purchase, which only the
	// customer it was merged into can make: its purchases moved there, so
	// under the old id the list would be best sellers for nobody. A merged
	// customer is refused with lifecycle.MergedError, which names the one
	// to ask about.
	ok, mergedInto, checked, err := a.s.store.CustomerExists(ctx, a.s.pool, tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, toStatus(errCustomerNotFound)
	}
	if mergedInto != uuid.Nil {
		return nil, lifecycle.MergedError(customerID, mergedInto)
	}
	recs, refreshed, err := a.s.store.Recommendations(ctx, a.s.pool, tenant, customerID, size)
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		// No rows: a tenant without counts; the refresh time still shows.
		refreshed = checked
	}
	resp := &customerv1.ListRecommendationsResponse{Recommendations: make([]*customerv1.Recommendation, len(recs))}
	for i, r := range recs {
		resp.Recommendations[i] = recommendationToProto(r)
	}
	if !refreshed.IsZero() {
		resp.RefreshTime = timestamppb.New(refreshed)
	}
	return resp, nil
}

func recommendationToProto(r store.Recommendation) *customerv1.Recommendation {
	out := &customerv1.Recommendation{Sku: r.SKU, Category: r.Category, Buyers: r.Buyers}
	switch r.Kind {
	case store.KindTogether:
		out.Reason = customerv1.RecommendationReason_RECOMMENDATION_REASON_BOUGHT_TOGETHER
		out.AnchorSku, out.CoBuyers, out.Score = r.AnchorSKU, r.CoBuyers, r.Score
		out.ReasonText = fmt.Sprintf("bought with %s by %d customers", r.AnchorSKU, r.CoBuyers)
	case store.KindBestSeller:
		out.Reason = customerv1.RecommendationReason_RECOMMENDATION_REASON_BEST_SELLER
		out.ReasonText = fmt.Sprintf("best seller: bought by %d %s", r.Buyers, plural(r.Buyers, "customer", "customers"))
	}
	return out
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

func (a *insightAPI) RefreshRecommendations(ctx context.Context, req *customerv1.RefreshRecommendationsRequest) (*customerv1.RefreshRecommendationsResponse, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.InsightService_RefreshRecommendations_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.RefreshRecommendationsResponse, error) {
		now := a.s.now().UTC()
		// Takes turns with a scheduled round of this tenant: waits for it,
		// then recomputes from what it committed.
		if err := a.s.store.LockSchedule(ctx, tx, tenant, now, a.s.refreshTimeout()); err != nil {
			return nil, err
		}
		r, err := a.s.refresh(ctx, tx, tenant, now)
		if err != nil {
			return nil, err
		}
		if err := a.s.store.FinishRound(ctx, tx, tenant, now, time.Time{}, r); err != nil {
			return nil, err
		}
		return &customerv1.RefreshRecommendationsResponse{Items: r.Items, Pairs: r.Pairs, RefreshTime: timestamppb.New(now)}, nil
	})
}

// refresh rebuilds the tenant's counts in tx.
func (s *Server) refresh(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now time.Time) (store.Refreshed, error) {
	return s.store.Refresh(ctx, tx, store.RefreshParams{
		TenantID: tenant, WindowStart: now.Add(-s.window()), MinCoBuyers: minCoBuyers, Neighbours: neighbours,
	})
}

// RunRefresh refreshes every scheduled tenant's counts each interval every,
// until ctx ends; then it returns nil. Any number of replicas may run it:
// each round of a tenant is claimed by one of them (RefreshDue). A tenant
// joins with its first purchase (each pass enrols new ones, due at once).
// A failing round is logged and retried; it never stops the loop.
func (s *Server) RunRefresh(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("insight: recommendation refresh interval must be positive, got %s", every)
	}
	schedule.Loop(ctx, every, s.RefreshDue, func(ctx context.Context) (time.Time, bool, error) {
		return s.store.NextDue(ctx, s.pool)
	}, s.now, s.logger(), "recommendation refresh")
	return nil
}

// RefreshDue runs one pass of the schedule: it enrols tenants with
// purchases that are not on it yet, then refreshes each due tenant, one
// transaction per tenant, and returns how many it refreshed. The claim (FOR
// UPDATE SKIP LOCKED on the tenant's schedule row) is held by the
// transaction that refreshes and moves the round on by every, so a replica
// that crashes mid-round leaves the tenant due, and replicas racing through
// the same pass never refresh a tenant twice.
func (s *Server) RefreshDue(ctx context.Context, every time.Duration) (int, error) {
	if _, err := s.store.Enrol(ctx, s.pool, s.now().UTC()); err != nil {
		return 0, err
	}
	return schedule.Pass(ctx, s.pool, s.now, every, schedule.Round{
		Claim: func(ctx context.Context, tx pgx.Tx, now time.Time) (uuid.UUID, bool, error) {
			return s.store.ClaimDue(ctx, tx, now, s.refreshTimeout())
		},
		Run: func(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now, next time.Time) error {
			r, err := s.refresh(ctx, tx, tenant, now)
			if err != nil {
				return fmt.Errorf("refresh tenant %s: %w", tenant, err)
			}
			return s.store.FinishRound(ctx, tx, tenant, now, next, r)
		},
		Postpone: func(ctx context.Context, tenant uuid.UUID, next time.Time) error {
			return s.store.Postpone(ctx, s.pool, tenant, next)
		},
	})
}
