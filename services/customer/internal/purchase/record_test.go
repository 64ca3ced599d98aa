package purchase_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
)

func TestRecordPurchase(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)

	purchases := func(tb testing.TB, tenant uuid.UUID) int {
		tb.Helper()
		return b.count(tb, `SELECT count(*) FROM purchases WHERE tenant_id = $1`, tenant)
	}

	t.Run("RecordsPurchaseItemsAndEvent", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		in := &customerv1.Purchase{
			OrderReference: "ORD-1001",
			Items: []*customerv1.PurchaseItem{
				{Sku: "BOOT-42", Name: "Walking boots", Quantity: 1, UnitPrice: usd(12_900), Category: "shoes"},
				{Sku: "SOCK-3", Name: "Wool socks", Quantity: 3, UnitPrice: usd(900), Category: "apparel/socks"},
			},
			TotalAmount:  usd(14_999),
			Channel:      customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE,
			PurchaseTime: timestamppb.New(t0.Add(-days(2))),
		}
		got := b.record(t, tenant, c, in)

		require.NotEmpty(t, got.GetId())
		require.Equal(t, c.String(), got.GetCustomerId())
		require.Equal(t, "ORD-1001", got.GetOrderReference())
		require.True(t, proto.Equal(usd(14_999), got.GetTotalAmount()))
		require.Equal(t, customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE, got.GetChannel())
		require.Equal(t, t0.Add(-days(2)), got.GetPurchaseTime().AsTime())
		require.Equal(t, t0, got.GetCreateTime().AsTime())
		require.Len(t, got.GetItems(), 2)
		require.True(t, proto.Equal(in.GetItems()[1], got.GetItems()[1]), "items come back in order, as given")

		read, err := b.purchases.GetPurchase(as(tenant, "marketer"), &customerv1.GetPurchaseRequest{CustomerId: c.String(), Id: got.GetId()})
		require.NoError(t, err)
		require.True(t, proto.Equal(got, read), "GetPurchase returns what RecordPurchase did")

		evs := b.events(t, tenant, purchase.SubjectPurchaseRecorded)
		require.Len(t, evs, 1)
		require.Equal(t, "purchase", evs[0].AggregateType)
		require.Equal(t, got.GetId(), evs[0].AggregateID)
		require.Equal(t, int64(1), evs[0].AggregateVersion)
		ev := &customerv1.PurchaseRecorded{}
		require.NoError(t, proto.Unmarshal(evs[0].Payload, ev))
		want := &customerv1.PurchaseRecorded{
			TenantId: tenant.String(), PurchaseId: got.GetId(), CustomerId: c.String(), AggregateVersion: 1,
			OccurredAt: timestamppb.New(t0), OrderReference: "ORD-1001", TotalAmount: usd(14_999),
			Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE, PurchaseTime: timestamppb.New(t0.Add(-days(2))),
			Items: []*customerv1.PurchaseRecorded_Item{
				{Sku: "BOOT-42", Category: "shoes", Quantity: 1, UnitPrice: usd(12_900)},
				{Sku: "SOCK-3", Category: "apparel/socks", Quantity: 3, UnitPrice: usd(900)},
			},
		}
		require.True(t, proto.Equal(want, ev), "event:\n%v\nwant:\n%v", ev, want)
		require.NotContains(t, string(evs[0].Payload), "Walking boots", "item names stay out of events")

		// The purchase placed the customer in a segment, with its event.
		seg := b.segment(t, tenant, c)
		require.Equal(t, customerv1.Segment_SEGMENT_POTENTIAL, seg.GetSegment())
		require.Len(t, b.segmentEvents(t, tenant), 1)
	})

	t.Run("PurchaseTimeDefaultsToNow", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		got := b.record(t, tenant, c, newPurchase("ORD-NOW", 100))
		require.Equal(t, t0, got.GetPurchaseTime().AsTime())
	})

	// IDEM-01: 50 concurrent calls with one request id record one purchase,
	// publish one event, and all get the same response.
	t.Run("ConcurrentSameRequestIDRecordsOnce", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		req := &customerv1.RecordPurchaseRequest{
			CustomerId: c.String(), Purchase: newPurchase("ORD-IDEM", 5_000), RequestId: uuid.NewString(),
		}
		const n = 50
		var (
			wg    sync.WaitGroup
			resps [n]*customerv1.Purchase
			errs  [n]error
		)
		for i := range n {
			wg.Go(func() { resps[i], errs[i] = b.purchases.RecordPurchase(as(tenant, "service"), req) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i], "call %d", i)
			require.True(t, proto.Equal(resps[0], resps[i]), "response %d differs:\n%v\n%v", i, resps[0], resps[i])
		}
		require.Equal(t, 1, purchases(t, tenant))
		require.Len(t, b.events(t, tenant, purchase.SubjectPurchaseRecorded), 1)
		require.Len(t, b.segmentEvents(t, tenant), 1)
	})

	t.Run("SameRequestIDOtherPayloadIsRefused", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		rid := uuid.NewString()
		_, err := b.purchases.RecordPurchase(as(tenant), &customerv1.RecordPurchaseRequest{
			CustomerId: c.String(), Purchase: newPurchase("ORD-A", 100), RequestId: rid})
		require.NoError(t, err)
		_, err = b.purchases.RecordPurchase(as(tenant), &customerv1.RecordPurchaseRequest{
			CustomerId: c.String(), Purchase: newPurchase("ORD-B", 100), RequestId: rid})
		requireFieldViolation(t, err, "request_id")
		require.Equal(t, 1, purchases(t, tenant))
	})

	// The order reference is a business key: a new request id (a replay
	// after the key expired, another importer) gets the first purchase.
	t.Run("SameOrderReferenceReturnsFirstPurchase", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		p := at(newPurchase("ORD-BK", 2_500), t0.Add(-days(1)))
		first := b.record(t, tenant, c, p)
		for range 3 {
			again, err := b.purchases.RecordPurchase(as(tenant, "service"), &customerv1.RecordPurchaseRequest{
				CustomerId: c.String(), Purchase: p, RequestId: uuid.NewString()})
			require.NoError(t, err)
			require.True(t, proto.Equal(first, again), "replay:\n%v\nfirst:\n%v", again, first)
		}
		require.Equal(t, 1, purchases(t, tenant))
		require.Len(t, b.events(t, tenant, purchase.SubjectPurchaseRecorded), 1)
	})

	t.Run("SameOrderReferenceOtherPurchaseIsAlreadyExists", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c, other := b.newCustomer(t, tenant), b.newCustomer(t, tenant)
		b.record(t, tenant, c, newPurchase("ORD-DUP", 2_500))
		for name, req := range map[string]*customerv1.RecordPurchaseRequest{
			"OtherAmount":   {CustomerId: c.String(), Purchase: newPurchase("ORD-DUP", 2_501)},
			"OtherCustomer": {CustomerId: other.String(), Purchase: newPurchase("ORD-DUP", 2_500)},
			"OtherTime":     {CustomerId: c.String(), Purchase: at(newPurchase("ORD-DUP", 2_500), t0)},
			"WithRequestID": {CustomerId: c.String(), Purchase: newPurchase("ORD-DUP", 1), RequestId: uuid.NewString()},
		} {
			_, err := b.purchases.RecordPurchase(as(tenant), req)
			st := status.Convert(err)
			require.Equal(t, codes.AlreadyExists, st.Code(), "%s: %v", name, err)
			require.Contains(t, st.Message(), "purchase.order_reference", name)
			var info *errdetails.ErrorInfo
			for _, d := range st.Details() {
				if i, ok := d.(*errdetails.ErrorInfo); ok {
					info = i
				}
			}
			require.NotNil(t, info, name)
			require.Equal(t, purchase.ReasonOrderReferenceUsed, info.GetReason())
			require.Equal(t, "purchase.order_reference", info.GetMetadata()["field"])
		}
		require.Equal(t, 1, purchases(t, tenant))
		require.Len(t, b.events(t, tenant, purchase.SubjectPurchaseRecorded), 1)
	})

	// Concurrent replays of one order with different request ids: one
	// purchase; the same purchase for all; no duplicate event.
	t.Run("ConcurrentSameOrderReferenceRecordsOnce", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		p := newPurchase("ORD-RACE", 700)
		const n = 20
		var (
			wg  sync.WaitGroup
			ids sync.Map
		)
		for range n {
			wg.Go(func() {
				got, err := b.purchases.RecordPurchase(as(tenant, "service"), &customerv1.RecordPurchaseRequest{
					CustomerId: c.String(), Purchase: p, RequestId: uuid.NewString()})
				if err != nil {
					ids.Store("error: "+err.Error(), true)
					return
				}
				ids.Store(got.GetId(), true)
			})
		}
		wg.Wait()
		var got []any
		ids.Range(func(k, _ any) bool { got = append(got, k); return true })
		require.Len(t, got, 1, "every call got the one purchase: %v", got)
		require.Equal(t, 1, purchases(t, tenant))
		require.Len(t, b.events(t, tenant, purchase.SubjectPurchaseRecorded), 1)
	})

	// A customer's purchases take turns (the customer's lock), so each
	// one's segment recompute sees all the others before it: the stored
	// frequency ends at the number of purchases, not at a stale count.
	t.Run("ConcurrentPurchasesOfOneCustomerAllCount", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		const n = 12
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				_, err := b.purchases.RecordPurchase(as(tenant, "service"), &customerv1.RecordPurchaseRequest{
					CustomerId: c.String(), Purchase: newPurchase(fmt.Sprintf("ORD-C-%d", i), 10_000)})
				assertNoError(t, err)
			})
		}
		wg.Wait()
		got := b.segment(t, tenant, c)
		require.Equal(t, int64(n), got.GetFrequency())
		require.Equal(t, int64(n*10_000), got.GetMonetary().GetAmountMinor())
		require.Equal(t, important, got.GetSegment())
		b.requireEventChains(t, tenant)
	})

	t.Run("OtherTenantsCustomerIsNotFound", func(t *testing.T) {
		t.Parallel()
		tenant, intruder := uuid.New(), uuid.New()
		c := b.newCustomer(t, tenant)
		_, err := b.purchases.RecordPurchase(as(intruder), &customerv1.RecordPurchaseRequest{
			CustomerId: c.String(), Purchase: newPurchase("ORD-X", 100)})
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		_, err = b.purchases.RecordPurchase(as(tenant), &customerv1.RecordPurchaseRequest{
			CustomerId: uuid.NewString(), Purchase: newPurchase("ORD-X", 100)})
		require.Equal(t, codes.NotFound, status.Code(err), "unknown customer: %v", err)
		require.Zero(t, purchases(t, tenant)+purchases(t, intruder))
		require.Zero(t, b.count(t, `SELECT count(*) FROM outbox WHERE tenant_id = ANY($1)`, []uuid.UUID{tenant, intruder}))
	})

	t.Run("RolesAreChecked", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		for _, role := range []string{"analyst", "marketer", "supervisor"} {
			_, err := b.purchases.RecordPurchase(as(tenant, role), &customerv1.RecordPurchaseRequest{
				CustomerId: c.String(), Purchase: newPurchase("ORD-R-"+role, 100)})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		}
		for _, role := range []string{"admin", "agent", "service"} {
			_, err := b.purchases.RecordPurchase(as(tenant, role), &customerv1.RecordPurchaseRequest{
				CustomerId: c.String(), Purchase: newPurchase("ORD-R-"+role, 100)})
			require.NoError(t, err, role)
		}
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		cases := []struct {
			name  string
			edit  func(r *customerv1.RecordPurchaseRequest)
			field string
		}{
			{"LowerCaseCurrency", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.TotalAmount.CurrencyCode = "usd"
			}, "purchase.total_amount.currency_code"},
			{"NoCurrency", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.TotalAmount.CurrencyCode = ""
			}, "purchase.total_amount.currency_code"},
			{"NegativeTotal", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.TotalAmount.AmountMinor = -1
			}, "purchase.total_amount"},
			{"NegativeUnitPrice", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Items[0].UnitPrice.AmountMinor = -100
			}, "purchase.items[0].unit_price"},
			{"ItemInOtherCurrency", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Items[0].UnitPrice.CurrencyCode = "EUR"
			}, "purchase.items[0].unit_price.currency_code"},
			{"NoTotal", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.TotalAmount = nil
			}, "purchase.total_amount"},
			{"NoItems", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Items = nil
			}, "purchase.items"},
			{"ZeroQuantity", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Items[0].Quantity = 0
			}, "purchase.items[0].quantity"},
			{"EmptySKU", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Items[0].Sku = ""
			}, "purchase.items[0].sku"},
			{"NoChannel", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Channel = customerv1.PurchaseChannel_PURCHASE_CHANNEL_UNSPECIFIED
			}, "purchase.channel"},
			{"UnknownChannel", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.Channel = 99
			}, "purchase.channel"},
			{"NoOrderReference", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.OrderReference = ""
			}, "purchase.order_reference"},
			{"OrderReferenceWithNewline", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.OrderReference = "ORD\n1"
			}, "purchase.order_reference"},
			{"FuturePurchaseTime", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase.PurchaseTime = timestamppb.New(t0.Add(days(1)))
			}, "purchase.purchase_time"},
			{"CustomerIDNotUUID", func(r *customerv1.RecordPurchaseRequest) {
				r.CustomerId = "42"
			}, "customer_id"},
			{"RequestIDNotUUID", func(r *customerv1.RecordPurchaseRequest) {
				r.RequestId = "retry-1"
			}, "request_id"},
			{"NoPurchase", func(r *customerv1.RecordPurchaseRequest) {
				r.Purchase = nil
			}, "purchase"},
		}
		for i, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				req := &customerv1.RecordPurchaseRequest{CustomerId: c.String(), Purchase: newPurchase(fmt.Sprintf("ORD-BAD-%d", i), 100)}
				tc.edit(req)
				_, err := b.purchases.RecordPurchase(as(tenant), req)
				requireFieldViolation(t, err, tc.field)
			})
		}
		// The parallel cases finish before the parent's cleanup runs.
		t.Cleanup(func() { require.Zero(t, purchases(t, tenant), "no refused request recorded anything") })
	})

	t.Run("LargeAmountsAreExact", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.newCustomer(t, tenant)
		p := newPurchase("ORD-BIG", 1_000_000_000_000_000)
		p.TotalAmount = &typev1.Money{CurrencyCode: "JPY", AmountMinor: 1_000_000_000_000_000}
		p.Items[0].UnitPrice = &typev1.Money{CurrencyCode: "JPY", AmountMinor: 0}
		got := b.record(t, tenant, c, p)
		require.Equal(t, int64(1_000_000_000_000_000), got.GetTotalAmount().GetAmountMinor())
		require.Equal(t, "JPY", got.GetTotalAmount().GetCurrencyCode())
	})
}

func TestGetPurchase(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant, intruder := uuid.New(), uuid.New()
	c, other := b.newCustomer(t, tenant), b.newCustomer(t, tenant)
	p := b.record(t, tenant, c, newPurchase("ORD-G", 100))

	t.Run("OtherTenantIsNotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.purchases.GetPurchase(as(intruder), &customerv1.GetPurchaseRequest{CustomerId: c.String(), Id: p.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})
	t.Run("OtherCustomerIsNotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.purchases.GetPurchase(as(tenant), &customerv1.GetPurchaseRequest{CustomerId: other.String(), Id: p.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})
	t.Run("AnalystIsDenied", func(t *testing.T) {
		t.Parallel()
		_, err := b.purchases.GetPurchase(as(tenant, "analyst"), &customerv1.GetPurchaseRequest{CustomerId: c.String(), Id: p.GetId()})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
	t.Run("BadIDNamesTheField", func(t *testing.T) {
		t.Parallel()
		_, err := b.purchases.GetPurchase(as(tenant), &customerv1.GetPurchaseRequest{CustomerId: c.String(), Id: "x"})
		requireFieldViolation(t, err, "id")
	})
}

func TestListPurchases(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	c, other := b.newCustomer(t, tenant), b.newCustomer(t, tenant)
	// Seven purchases with distinct times given out of order, and two at
	// the same instant (the id breaks the tie).
	offsets := []int{5, 1, 7, 3, 3, 2, 6}
	for i, d := range offsets {
		b.record(t, tenant, c, at(newPurchase(fmt.Sprintf("ORD-L-%d", i), int64(100*(i+1))), t0.Add(-days(d))))
	}
	b.record(t, tenant, other, newPurchase("ORD-OTHER", 100))

	list := func(tb testing.TB, req *customerv1.ListPurchasesRequest) (*customerv1.ListPurchasesResponse, error) {
		tb.Helper()
		return b.purchases.ListPurchases(as(tenant, "supervisor"), req)
	}

	t.Run("NewestFirstAcrossPages", func(t *testing.T) {
		t.Parallel()
		var (
			all []*customerv1.Purchase
			tok string
		)
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			resp, err := list(t, &customerv1.ListPurchasesRequest{CustomerId: c.String(), PageSize: 2, PageToken: tok})
			require.NoError(t, err)
			require.LessOrEqual(t, len(resp.GetPurchases()), 2)
			all = append(all, resp.GetPurchases()...)
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		require.Len(t, all, len(offsets))
		seen := map[string]bool{}
		for i, p := range all {
			require.Equal(t, c.String(), p.GetCustomerId())
			require.False(t, seen[p.GetId()], "purchase %s twice", p.GetId())
			seen[p.GetId()] = true
			require.Len(t, p.GetItems(), 1, "items come with each purchase")
			if i > 0 {
				prev := all[i-1]
				require.False(t, p.GetPurchaseTime().AsTime().After(prev.GetPurchaseTime().AsTime()), "newest first")
				if p.GetPurchaseTime().AsTime().Equal(prev.GetPurchaseTime().AsTime()) {
					require.Less(t, p.GetId(), prev.GetId(), "ties by id, descending")
				}
			}
		}
	})

	t.Run("OnePageHasNoToken", func(t *testing.T) {
		t.Parallel()
		resp, err := list(t, &customerv1.ListPurchasesRequest{CustomerId: c.String()})
		require.NoError(t, err)
		require.Len(t, resp.GetPurchases(), len(offsets))
		require.Empty(t, resp.GetNextPageToken())
	})

	t.Run("TokenOfAnotherCustomerIsRefused", func(t *testing.T) {
		t.Parallel()
		resp, err := list(t, &customerv1.ListPurchasesRequest{CustomerId: c.String(), PageSize: 1})
		require.NoError(t, err)
		_, err = list(t, &customerv1.ListPurchasesRequest{CustomerId: other.String(), PageToken: resp.GetNextPageToken()})
		requireFieldViolation(t, err, "page_token")
		_, err = list(t, &customerv1.ListPurchasesRequest{CustomerId: c.String(), PageToken: "bm9wZQ"})
		requireFieldViolation(t, err, "page_token")
	})

	t.Run("NegativePageSizeNamesTheField", func(t *testing.T) {
		t.Parallel()
		_, err := list(t, &customerv1.ListPurchasesRequest{CustomerId: c.String(), PageSize: -1})
		requireFieldViolation(t, err, "page_size")
	})

	t.Run("OtherTenantIsNotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.purchases.ListPurchases(as(uuid.New()), &customerv1.ListPurchasesRequest{CustomerId: c.String()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})

	t.Run("CustomerWithoutPurchasesIsEmpty", func(t *testing.T) {
		t.Parallel()
		none := b.newCustomer(t, tenant)
		resp, err := b.purchases.ListPurchases(as(tenant), &customerv1.ListPurchasesRequest{CustomerId: none.String()})
		require.NoError(t, err)
		require.Empty(t, resp.GetPurchases())
	})
}

// TestRecordPurchaseForMergedOrErasedCustomer: a purchase for a customer
// merged into another is refused with the one to use instead, and nothing
// is stored; an erased customer is not found.
func TestRecordPurchaseForMergedOrErasedCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	tenant := uuid.New()
	ids := b.newCustomers(t, tenant, 3)
	primary, source, erased := ids[0], ids[1], ids[2]
	_, err := b.pool.Exec(ctx, `UPDATE customers SET merged_into = $2, merge_time = now() WHERE tenant_id = $1 AND id = $3`,
		tenant, primary, source)
	require.NoError(t, err)
	_, err = b.pool.Exec(ctx, `UPDATE customers SET erase_time = now(), display_name_sealed = '', email_sealed = NULL, email_bidx = NULL,
		phone_sealed = NULL, phone_bidx = NULL WHERE tenant_id = $1 AND id = $2`, tenant, erased)
	require.NoError(t, err)
	in := func(ref string) *customerv1.Purchase {
		return &customerv1.Purchase{OrderReference: ref, TotalAmount: usd(500),
			Items:        []*customerv1.PurchaseItem{{Sku: "A", Quantity: 1, UnitPrice: usd(500)}},
			Channel:      customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
			PurchaseTime: timestamppb.New(t0.Add(-time.Hour))}
	}

	_, err = b.purchases.RecordPurchase(as(tenant, "agent"), &customerv1.RecordPurchaseRequest{
		CustomerId: source.String(), Purchase: in("ORD-M")})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
	var info *errdetails.ErrorInfo
	for _, d := range status.Convert(err).Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			info = i
		}
	}
	require.NotNil(t, info)
	require.Equal(t, "CUSTOMER_MERGED", info.GetReason())
	require.Equal(t, primary.String(), info.GetMetadata()["merged_into"])

	_, err = b.purchases.RecordPurchase(as(tenant, "agent"), &customerv1.RecordPurchaseRequest{
		CustomerId: erased.String(), Purchase: in("ORD-E")})
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)

	require.Zero(t, b.count(t, `SELECT count(*) FROM purchases WHERE tenant_id = $1`, tenant), "nothing stored")
	require.Empty(t, b.events(t, tenant, purchase.SubjectPurchaseRecorded))
	b.record(t, tenant, primary, in("ORD-P")) // the primary still takes purchases
}
