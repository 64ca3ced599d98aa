package compose

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
)

func eur(minor int64) *typev1.Money { return &typev1.Money{CurrencyCode: "EUR", AmountMinor: minor} }

// purchaseCases are the PurchaseService and SegmentService rows of the
// cross-tenant matrix, over gRPC (see consentCases for why).
func purchaseCases(b *testBundle) map[string]func(t *testing.T, w world) {
	p := customerv1.NewPurchaseServiceClient(b.grpcConn)
	sg := customerv1.NewSegmentServiceClient(b.grpcConn)
	buy := func(t *testing.T, token, customerID string) *customerv1.Purchase {
		t.Helper()
		got, err := p.RecordPurchase(authCtx(token), &customerv1.RecordPurchaseRequest{CustomerId: customerID,
			Purchase: flowPurchase("order-"+uuid.NewString()[:8], time.Now().Add(-time.Hour))})
		require.NoError(t, err)
		return got
	}
	return map[string]func(t *testing.T, w world){
		customerv1.PurchaseService_RecordPurchase_FullMethodName: func(t *testing.T, w world) {
			_, err := p.RecordPurchase(authCtx(w.x), &customerv1.RecordPurchaseRequest{CustomerId: w.yCustomer.GetId(),
				Purchase: &customerv1.Purchase{OrderReference: "order-x",
					Items:       []*customerv1.PurchaseItem{{Sku: "tea-1", Name: "Tea", Quantity: 1, UnitPrice: eur(450), Category: "tea"}},
					TotalAmount: eur(450), Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
					PurchaseTime: timestamppb.Now()}})
			notFound(t, err)
			l, err := p.ListPurchases(authCtx(w.y), &customerv1.ListPurchasesRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, l.GetPurchases(), "X's attempt recorded nothing on Y's customer")
		},
		customerv1.PurchaseService_GetPurchase_FullMethodName: func(t *testing.T, w world) {
			bought := buy(t, w.y, w.yCustomer.GetId())
			_, err := p.GetPurchase(authCtx(w.x), &customerv1.GetPurchaseRequest{CustomerId: w.yCustomer.GetId(), Id: bought.GetId()})
			notFound(t, err)
		},
		customerv1.PurchaseService_ListPurchases_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			_, err := p.ListPurchases(authCtx(w.x), &customerv1.ListPurchasesRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.SegmentService_GetCustomerSegment_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			_, err := sg.GetCustomerSegment(authCtx(w.x), &customerv1.GetCustomerSegmentRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.SegmentService_ListCustomersBySegment_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			for _, seg := range []customerv1.Segment{customerv1.Segment_SEGMENT_IMPORTANT, customerv1.Segment_SEGMENT_ORDINARY,
				customerv1.Segment_SEGMENT_POTENTIAL, customerv1.Segment_SEGMENT_AT_RISK, customerv1.Segment_SEGMENT_LOST} {
				l, err := sg.ListCustomersBySegment(authCtx(w.x), &customerv1.ListCustomersBySegmentRequest{Segment: seg})
				require.NoError(t, err)
				require.Empty(t, l.GetCustomers(), "X lists none of Y's customers in %s", seg)
			}
		},
		customerv1.SegmentService_GetSegmentSettings_FullMethodName: func(t *testing.T, w world) {
			_, err := sg.UpdateSegmentSettings(authCtx(w.y), &customerv1.UpdateSegmentSettingsRequest{
				Settings: &customerv1.SegmentSettings{WindowDays: 123}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"window_days"}}})
			require.NoError(t, err)
			xs, err := sg.GetSegmentSettings(authCtx(w.x), &customerv1.GetSegmentSettingsRequest{})
			require.NoError(t, err)
			require.NotEqual(t, int32(123), xs.GetWindowDays(), "X reads its own settings")
		},
		customerv1.SegmentService_UpdateSegmentSettings_FullMethodName: func(t *testing.T, w world) {
			before, err := sg.GetSegmentSettings(authCtx(w.y), &customerv1.GetSegmentSettingsRequest{})
			require.NoError(t, err)
			_, err = sg.UpdateSegmentSettings(authCtx(w.x), &customerv1.UpdateSegmentSettingsRequest{
				Settings: &customerv1.SegmentSettings{WindowDays: 77}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"window_days"}}})
			require.NoError(t, err)
			after, err := sg.GetSegmentSettings(authCtx(w.y), &customerv1.GetSegmentSettingsRequest{})
			require.NoError(t, err)
			require.Equal(t, before.GetWindowDays(), after.GetWindowDays(), "X's change left Y's settings alone")
		},
		customerv1.SegmentService_RecomputeSegments_FullMethodName: func(t *testing.T, w world) {
			buy(t, w.y, w.yCustomer.GetId())
			r, err := sg.RecomputeSegments(authCtx(w.x), &customerv1.RecomputeSegmentsRequest{})
			require.NoError(t, err)
			require.Zero(t, r.GetCustomersSegmented(), "X's recompute covers X's customers only (none)")
		},
	}
}
