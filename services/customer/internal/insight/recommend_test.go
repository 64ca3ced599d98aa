package insight_test

import (
	"context"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/insight"
)

// basketFixture is tenant T's purchases, all in the last month:
//
//	u1, u2   A B C
//	u3       A B D
//	u4       A
//	u5, u6   B E
//	u7..u11  B
//	u12      nothing yet
//
// buyers: A 4, B 10, C 2, D 1, E 2. Pairs bought by at least two customers:
//
//	A-B 3 (u1 u2 u3)  sim 3/sqrt(4*10)  = 0.4743
//	A-C 2 (u1 u2)     sim 2/sqrt(4*2)   = 0.7071
//	B-C 2 (u1 u2)     sim 2/sqrt(10*2)  = 0.4472
//	B-E 2 (u5 u6)     sim 2/sqrt(10*2)  = 0.4472
//
// A-D and B-D (u3 alone) are below the two-customer minimum. Tenant Z's
// customers buy A with X, and A alone, many times: if Z leaked into T, X
// would be recommended to u4 and A's buyers (so every A score) would change.
type basketFixture struct {
	t, z uuid.UUID
	u    []uuid.UUID // u[1]..u[12]
	zc   []uuid.UUID
}

func newBasketFixture(t *testing.T, b *testBundle) basketFixture {
	t.Helper()
	f := basketFixture{t: uuid.New(), z: uuid.New()}
	f.u = append([]uuid.UUID{uuid.Nil}, b.newCustomers(t, f.t, 12)...)
	at := now.Add(-20 * 24 * time.Hour)
	b.buy(t, f.t, f.u[1], at, "A", "B", "C")
	b.buy(t, f.t, f.u[2], at, "A", "B")
	b.buy(t, f.t, f.u[2], at.Add(time.Hour), "C") // another order: still u2's
	b.buy(t, f.t, f.u[3], at, "A", "B", "D")
	b.buy(t, f.t, f.u[4], at, "A")
	b.buy(t, f.t, f.u[5], at, "B", "E")
	b.buy(t, f.t, f.u[6], at, "B", "E")
	for i := 7; i <= 11; i++ {
		b.buy(t, f.t, f.u[i], at, "B")
	}
	f.zc = b.newCustomers(t, f.z, 6)
	for i, c := range f.zc {
		if i < 4 {
			b.buy(t, f.z, c, at, "A", "X")
		} else {
			b.buy(t, f.z, c, at, "A")
		}
	}
	return f
}

func together(sku, anchor string, co, buyers int64, score float64, text string) *customerv1.Recommendation {
	return &customerv1.Recommendation{Sku: sku, Category: "cat-" + lower(sku), Score: score,
		Reason: customerv1.RecommendationReason_RECOMMENDATION_REASON_BOUGHT_TOGETHER, AnchorSku: anchor,
		CoBuyers: co, Buyers: buyers, ReasonText: text}
}

func bestSeller(sku string, buyers int64, text string) *customerv1.Recommendation {
	return &customerv1.Recommendation{Sku: sku, Category: "cat-" + lower(sku),
		Reason: customerv1.RecommendationReason_RECOMMENDATION_REASON_BEST_SELLER, Buyers: buyers, ReasonText: text}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// scoresTo4 compares scores to 4 decimal places (the hand computation's).
var scoresTo4 = cmp.Comparer(func(x, y float64) bool { return math.Abs(x-y) < 5e-5 })

func (b *testBundle) recommend(t *testing.T, tenant, customerID uuid.UUID, size int32) *customerv1.ListRecommendationsResponse {
	t.Helper()
	got, err := b.insight.ListRecommendations(grpcxtest.As(tenant, "agent"), &customerv1.ListRecommendationsRequest{
		CustomerId: customerID.String(), PageSize: size})
	require.NoError(t, err)
	return got
}

func requireRecommendations(t *testing.T, want []*customerv1.Recommendation, got *customerv1.ListRecommendationsResponse) {
	t.Helper()
	if diff := cmp.Diff(want, got.GetRecommendations(), protocmp.Transform(), scoresTo4); diff != "" {
		t.Fatalf("recommendations (-want +got):\n%s", diff)
	}
}

func TestRecommendations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBasketFixture(t, b)

	// Before any refresh there are no counts: an empty list, no time.
	before := b.recommend(t, f.t, f.u[4], 0)
	require.Empty(t, before.GetRecommendations())
	require.Nil(t, before.GetRefreshTime())

	n, err := b.server.RefreshDue(context.Background(), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, n, "both tenants enrolled and refreshed")

	t.Run("RanksByCosineNotByCount", func(t *testing.T) {
		t.Parallel()
		// u4 bought A. C (2 co-buyers, 0.7071) beats the best seller B (3
		// co-buyers, 0.4743): sqrt(buyers) keeps B from winning on
		// popularity. Then best sellers u4 lacks: E (2), D (1). Not X: that
		// is tenant Z's.
		got := b.recommend(t, f.t, f.u[4], 0)
		requireRecommendations(t, []*customerv1.Recommendation{
			together("C", "A", 2, 2, 0.7071, "bought with A by 2 customers"),
			together("B", "A", 3, 10, 0.4743, "bought with A by 3 customers"),
			bestSeller("E", 2, "best seller: bought by 2 customers"),
			bestSeller("D", 1, "best seller: bought by 1 customer"),
		}, got)
		require.Equal(t, now, got.GetRefreshTime().AsTime())
	})

	t.Run("ExcludesOwnedItems", func(t *testing.T) {
		t.Parallel()
		// u1 bought A, B and C; only E goes with them (via B), then D.
		requireRecommendations(t, []*customerv1.Recommendation{
			together("E", "B", 2, 2, 0.4472, "bought with B by 2 customers"),
			bestSeller("D", 1, "best seller: bought by 1 customer"),
		}, b.recommend(t, f.t, f.u[1], 0))
		// u2 bought the same in two orders.
		requireRecommendations(t, []*customerv1.Recommendation{
			together("E", "B", 2, 2, 0.4472, "bought with B by 2 customers"),
			bestSeller("D", 1, "best seller: bought by 1 customer"),
		}, b.recommend(t, f.t, f.u[2], 0))
	})

	t.Run("AnchorIsTheBestMatch", func(t *testing.T) {
		t.Parallel()
		// u3 bought A, B, D. C goes with A (0.7071) and with B (0.4472):
		// its score and reason are A's. E goes with B only. D's pairs are
		// below the minimum. Nothing is left for best sellers.
		requireRecommendations(t, []*customerv1.Recommendation{
			together("C", "A", 2, 2, 0.7071, "bought with A by 2 customers"),
			together("E", "B", 2, 2, 0.4472, "bought with B by 2 customers"),
		}, b.recommend(t, f.t, f.u[3], 0))
	})

	t.Run("NewCustomerGetsBestSellers", func(t *testing.T) {
		t.Parallel()
		// By buyers, then sku: B 10, A 4, C 2, E 2, D 1.
		requireRecommendations(t, []*customerv1.Recommendation{
			bestSeller("B", 10, "best seller: bought by 10 customers"),
			bestSeller("A", 4, "best seller: bought by 4 customers"),
			bestSeller("C", 2, "best seller: bought by 2 customers"),
			bestSeller("E", 2, "best seller: bought by 2 customers"),
			bestSeller("D", 1, "best seller: bought by 1 customer"),
		}, b.recommend(t, f.t, f.u[12], 0))
	})

	t.Run("PageSize", func(t *testing.T) {
		t.Parallel()
		requireRecommendations(t, []*customerv1.Recommendation{
			together("C", "A", 2, 2, 0.7071, "bought with A by 2 customers"),
		}, b.recommend(t, f.t, f.u[4], 1))
		require.Len(t, b.recommend(t, f.t, f.u[12], 2).GetRecommendations(), 2)
		require.Len(t, b.recommend(t, f.t, f.u[12], 1000).GetRecommendations(), 5, "above 50 is coerced, not refused")
	})

	t.Run("CoOccurrenceIsPerTenant", func(t *testing.T) {
		t.Parallel()
		// In Z, A's buyers are 6 and X's 4, all four with A:
		// 4/sqrt(6*4) = 0.8165. T's counts never enter.
		zNew := b.newCustomers(t, f.z, 1)[0]
		b.buy(t, f.z, zNew, now.Add(-time.Hour), "A")
		requireRecommendations(t, []*customerv1.Recommendation{
			together("X", "A", 4, 4, 0.8165, "bought with A by 4 customers"),
		}, b.recommend(t, f.z, zNew, 0))
		// And Z's best sellers hold none of T's items.
		requireRecommendations(t, []*customerv1.Recommendation{
			bestSeller("A", 6, "best seller: bought by 6 customers"),
			bestSeller("X", 4, "best seller: bought by 4 customers"),
		}, b.recommend(t, f.z, b.newCustomers(t, f.z, 1)[0], 0))
	})

	t.Run("UnknownOrOtherTenantsCustomerIsNotFound", func(t *testing.T) {
		t.Parallel()
		for _, id := range []uuid.UUID{uuid.New(), f.zc[0]} {
			_, err := b.insight.ListRecommendations(grpcxtest.As(f.t), &customerv1.ListRecommendationsRequest{CustomerId: id.String()})
			require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		}
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		t.Parallel()
		_, err := b.insight.ListRecommendations(grpcxtest.As(f.t), &customerv1.ListRecommendationsRequest{CustomerId: "u4"})
		requireFieldViolation(t, err, "customer_id")
		_, err = b.insight.ListRecommendations(grpcxtest.As(f.t), &customerv1.ListRecommendationsRequest{
			CustomerId: f.u[4].String(), PageSize: -1})
		requireFieldViolation(t, err, "page_size")
	})

	t.Run("Roles", func(t *testing.T) {
		t.Parallel()
		for _, role := range []string{"admin", "supervisor", "agent", "marketer", "service"} {
			_, err := b.insight.ListRecommendations(grpcxtest.As(f.t, role), &customerv1.ListRecommendationsRequest{CustomerId: f.u[4].String()})
			require.NoError(t, err, role)
		}
		_, err := b.insight.ListRecommendations(grpcxtest.As(f.t, "analyst"), &customerv1.ListRecommendationsRequest{CustomerId: f.u[4].String()})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		for _, role := range []string{"supervisor", "agent", "marketer", "service"} {
			_, err := b.insight.RefreshRecommendations(grpcxtest.As(f.t, role), &customerv1.RefreshRecommendationsRequest{})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		}
	})
}

func TestRecommendationWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	u := b.newCustomers(t, tenant, 4)
	// Two customers bought F with G 400 days ago, outside the 365-day
	// window; u[2] bought G and H last week, u[3] H only.
	old := now.Add(-400 * 24 * time.Hour)
	b.buy(t, tenant, u[0], old, "F", "G")
	b.buy(t, tenant, u[1], old, "F", "G")
	b.buy(t, tenant, u[2], now.Add(-7*24*time.Hour), "G", "H")
	b.buy(t, tenant, u[3], now.Add(-7*24*time.Hour), "H")
	_, err := b.insight.RefreshRecommendations(grpcxtest.As(tenant), &customerv1.RefreshRecommendationsRequest{})
	require.NoError(t, err)
	// u[0]'s F and G stay owned though old; only H is left, as a best
	// seller (the F-G pair and F itself are outside the window).
	requireRecommendations(t, []*customerv1.Recommendation{
		bestSeller("H", 2, "best seller: bought by 2 customers"),
	}, b.recommend(t, tenant, u[0], 0))
	// A wider window brings them back.
	b.server.Window = 500 * 24 * time.Hour
	_, err = b.insight.RefreshRecommendations(grpcxtest.As(tenant), &customerv1.RefreshRecommendationsRequest{})
	require.NoError(t, err)
	got := b.recommend(t, tenant, u[3], 0)
	require.Equal(t, []string{"G", "F"}, skus(got), "G (3 buyers) then F (2) as best sellers for u[3]")
}

func skus(r *customerv1.ListRecommendationsResponse) []string {
	var out []string
	for _, x := range r.GetRecommendations() {
		out = append(out, x.GetSku())
	}
	return out
}

func TestRefreshRecommendations(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBasketFixture(t, b)

	t.Run("IdempotentByRequestID", func(t *testing.T) {
		rid := uuid.NewString()
		first, err := b.insight.RefreshRecommendations(grpcxtest.As(f.t), &customerv1.RefreshRecommendationsRequest{RequestId: rid})
		require.NoError(t, err)
		// Items A..E; pairs A-B, A-C, B-C, B-E both ways.
		require.Equal(t, int64(5), first.GetItems())
		require.Equal(t, int64(8), first.GetPairs())
		require.Equal(t, now, first.GetRefreshTime().AsTime())
		// New purchases, then the same request id: the first response,
		// nothing recomputed.
		b.buy(t, f.t, f.u[12], now.Add(-time.Hour), "Q")
		b.clock.Advance(time.Minute)
		again, err := b.insight.RefreshRecommendations(grpcxtest.As(f.t), &customerv1.RefreshRecommendationsRequest{RequestId: rid})
		require.NoError(t, err)
		require.True(t, cmp.Equal(first, again, protocmp.Transform()), "replayed: %v", again)
		require.Equal(t, now, b.recommend(t, f.t, f.u[4], 0).GetRefreshTime().AsTime())
		fresh, err := b.insight.RefreshRecommendations(grpcxtest.As(f.t), &customerv1.RefreshRecommendationsRequest{RequestId: uuid.NewString()})
		require.NoError(t, err)
		require.Equal(t, int64(6), fresh.GetItems(), "Q counted by a new request")
	})

	t.Run("OnlyTheCallersTenant", func(t *testing.T) {
		// The refreshes above were T's: Z has no counts.
		zNew := b.newCustomers(t, f.z, 1)[0]
		require.Empty(t, b.recommend(t, f.z, zNew, 0).GetRecommendations())
	})
}

func TestRefreshSchedule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newBasketFixture(t, b)
	ctx := context.Background()
	every := 6 * time.Hour

	t.Run("EachTenantOncePerRoundAcrossReplicas", func(t *testing.T) {
		// Four replicas race through the same pass: each tenant once.
		replicas := make([]*insight.Server, 4)
		for i := range replicas {
			replicas[i] = insight.NewServer(b.pool, b.clock.Now)
		}
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			total int
		)
		for _, r := range replicas {
			wg.Add(1)
			go func() {
				defer wg.Done()
				n, err := r.RefreshDue(ctx, every)
				assertNoError(t, err)
				mu.Lock()
				total += n
				mu.Unlock()
			}()
		}
		wg.Wait()
		require.Equal(t, 2, total)
		require.Equal(t, 1, b.rounds(t, f.t))
		require.Equal(t, 1, b.rounds(t, f.z))

		// Not due again until the interval has passed.
		n, err := b.server.RefreshDue(ctx, every)
		require.NoError(t, err)
		require.Zero(t, n)
		b.clock.Advance(every)
		n, err = b.server.RefreshDue(ctx, every)
		require.NoError(t, err)
		require.Equal(t, 2, n)
	})

	t.Run("NewPurchasesShowAfterTheNextRound", func(t *testing.T) {
		// u4 (A) had C first. Two more customers buy A with D: A has 6
		// buyers, D 3, A-D 3 co-buyers: 3/sqrt(6*3) = 0.7071, above C's
		// 2/sqrt(6*2) = 0.5774. Lists change only when a round runs.
		for _, c := range b.newCustomers(t, f.t, 2) {
			b.buy(t, f.t, c, now, "A", "D")
		}
		require.Equal(t, "C", b.recommend(t, f.t, f.u[4], 1).GetRecommendations()[0].GetSku(), "stale until refreshed")
		b.clock.Advance(every)
		n, err := b.server.RefreshDue(ctx, every)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		got := b.recommend(t, f.t, f.u[4], 2)
		requireRecommendations(t, []*customerv1.Recommendation{
			together("D", "A", 3, 3, 0.7071, "bought with A by 3 customers"),
			together("C", "A", 2, 2, 0.5774, "bought with A by 2 customers"),
		}, got)
	})

	t.Run("RunRefreshRefreshesNewTenantsAndStops", func(t *testing.T) {
		require.Error(t, b.server.RunRefresh(ctx, 0), "interval must be positive")
		// A tenant's first purchase: the loop's first pass enrols it and
		// refreshes it at once.
		tenant := uuid.New()
		c := b.newCustomers(t, tenant, 1)[0]
		b.buy(t, tenant, c, now, "N")
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- b.server.RunRefresh(cctx, every) }()
		require.Eventually(t, func() bool {
			return len(b.recommend(t, tenant, b.newCustomers(t, tenant, 1)[0], 0).GetRecommendations()) == 1
		}, 10*time.Second, 10*time.Millisecond)
		cancel()
		require.NoError(t, <-done)
	})
}

func (b *testBundle) rounds(t *testing.T, tenant uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT rounds FROM recommendation_schedule WHERE tenant_id = $1`, tenant).Scan(&n))
	return n
}

// assertNoError is require.NoError for goroutines (FailNow must run on the
// test's goroutine).
func assertNoError(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("unexpected error: %v", err)
	}
}
