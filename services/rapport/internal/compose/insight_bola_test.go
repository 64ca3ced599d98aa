package compose

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// insightCases are the InsightService rows of the cross-tenant matrix, over
// gRPC (see consentCases for why). Tenant Y's customer buys, then X asks:
// X never sees Y's customer, counts or purchases, and Y's own call sees
// them, so no case passes by being empty.
func insightCases(b *testBundle) map[string]func(t *testing.T, w world) {
	p := customerv1.NewPurchaseServiceClient(b.grpcConn)
	in := customerv1.NewInsightServiceClient(b.grpcConn)
	bought := time.Now().UTC().Add(-time.Hour)
	month := bought.Format("2006-01")
	buy := func(t *testing.T, token, customerID string) {
		t.Helper()
		_, err := p.RecordPurchase(authCtx(token), &customerv1.RecordPurchaseRequest{CustomerId: customerID,
			Purchase: &customerv1.Purchase{OrderReference: "order-" + uuid.NewString()[:8],
				Items: []*customerv1.PurchaseItem{
					{Sku: "tea-1", Name: "Tea", Quantity: 1, UnitPrice: eur(450), Category: "tea"},
					{Sku: "cup-1", Name: "Cup", Quantity: 1, UnitPrice: eur(900), Category: "cups"},
				},
				TotalAmount: eur(1350), Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
				PurchaseTime: timestamppb.New(bought)}})
		require.NoError(t, err)
	}
	refresh := func(t *testing.T, token string) *customerv1.RefreshRecommendationsResponse {
		t.Helper()
		r, err := in.RefreshRecommendations(authCtx(token), &customerv1.RefreshRecommendationsRequest{})
		require.NoError(t, err)
		return r
	}
	metrics := func(t *testing.T, token string) *customerv1.CustomerMetrics {
		t.Helper()
		m, err := in.GetCustomerMetrics(authCtx(token), &customerv1.GetCustomerMetricsRequest{
			StartTime: timestamppb.New(bought.Add(-24 * time.Hour)), EndTime: timestamppb.New(bought.Add(time.Hour))})
		require.NoError(t, err)
		return m.GetTotal()
	}
	cohort := func(t *testing.T, token string) int64 {
		t.Helper()
		r, err := in.GetRetentionReport(authCtx(token), &customerv1.GetRetentionReportRequest{StartMonth: month, EndMonth: month})
		require.NoError(t, err)
		require.Len(t, r.GetCohorts(), 1)
		return r.GetCohorts()[0].GetSize()
	}
	return map[string]func(t *testing.T, w world){
		customerv1.InsightService_ListRecommendations_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			refresh(t, w.y)
			_, err := in.ListRecommendations(authCtx(w.x), &customerv1.ListRecommendationsRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			_, err = in.ListRecommendations(authCtx(w.y), &customerv1.ListRecommendationsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err, "Y reaches its own customer: the case is not vacuous")
		},
		customerv1.InsightService_RefreshRecommendations_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			x := refresh(t, w.x)
			require.Zero(t, x.GetItems(), "X's refresh counts X's purchases only (none)")
			require.Equal(t, int64(2), refresh(t, w.y).GetItems(), "Y's counts its two items")
		},
		customerv1.InsightService_GetRetentionReport_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			require.Zero(t, cohort(t, w.x), "X's cohorts hold none of Y's customers")
			require.Equal(t, int64(1), cohort(t, w.y))
		},
		customerv1.InsightService_GetCustomerMetrics_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			require.Zero(t, metrics(t, w.x).GetActiveCustomers(), "X's metrics count none of Y's customers")
			require.Equal(t, int64(1), metrics(t, w.y).GetActiveCustomers())
		},
	}
}
