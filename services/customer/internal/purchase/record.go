package purchase

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store"
)

// maxClockSkew is how far ahead of the server's clock a purchase_time may
// be: the selling system's clock may run a little fast, never days.
const maxClockSkew = 5 * time.Minute

// purchaseAPI implements customerv1.PurchaseServiceServer.
type purchaseAPI struct {
	customerv1.UnimplementedPurchaseServiceServer
	s *Server
}

func (a *purchaseAPI) RecordPurchase(ctx context.Context, req *customerv1.RecordPurchaseRequest) (*customerv1.Purchase, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	p, err := purchaseFromRequest(req, now)
	if err != nil {
		return nil, toStatus(err)
	}
	p.TenantID, p.CustomerID = tenant, customerID
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.PurchaseService_RecordPurchase_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Purchase, error) {
		rec, err := a.s.record(ctx, tx, p, now)
		if err != nil {
			return nil, toStatus(err)
		}
		return purchaseToProto(rec), nil
	})
}

func (a *purchaseAPI) GetPurchase(ctx context.Context, req *customerv1.GetPurchaseRequest) (*customerv1.Purchase, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	p, err := a.s.store.Purchase(ctx, a.s.pool, tenant, customerID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(errPurchaseNotFound)
	}
	if err != nil {
		return nil, err
	}
	return purchaseToProto(p), nil
}

func (a *purchaseAPI) ListPurchases(ctx context.Context, req *customerv1.ListPurchasesRequest) (*customerv1.ListPurchasesResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	filter := "purchases:" + customerID.String()
	var after store.Cursor
	if tok := req.GetPageToken(); tok != "" {
		if after, err = decodePageToken(tok, filter); err != nil {
			return nil, toStatus(&fieldError{field: "page_token", reason: err.Error()})
		}
	}
	// A customer of another tenant is not found, not an empty list.
	ok, err := a.s.store.CustomerExists(ctx, a.s.pool, tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, toStatus(errCustomerNotFound)
	}
	rows, err := a.s.store.Purchases(ctx, a.s.pool, tenant, customerID, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListPurchasesResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.PurchaseTime, ID: last.ID})
	}
	for _, p := range rows {
		resp.Purchases = append(resp.Purchases, purchaseToProto(p))
	}
	return resp, nil
}

// record stores p with its event and updates the customer's segment, in tx.
// If the order reference is taken it returns the first purchase when p is
// the same purchase, errOrderReferenceUsed when it is not.
func (s *Server) record(ctx context.Context, tx pgx.Tx, p store.Purchase, now time.Time) (store.Purchase, error) {
	// The customer's lock orders its purchases, so this recompute sees
	// every purchase committed before (see PurchaseLockCustomer).
	exists, mergedInto, err := s.store.LockCustomer(ctx, tx, customerLockKey(p.TenantID, p.CustomerID), p.TenantID, p.CustomerID)
	if err != nil {
		return store.Purchase{}, err
	}
	if !exists {
		return store.Purchase{}, errCustomerNotFound
	}
	if mergedInto.Valid {
		// A purchase for a merged customer is refused, not redirected: the
		// caller holds a stale id and should learn the current one, which
		// the error carries.
		return store.Purchase{}, &customerMergedError{id: p.CustomerID, into: mergedInto.UUID}
	}
	rec, inserted, err := s.store.InsertPurchase(ctx, tx, p)
	if err != nil {
		return store.Purchase{}, err
	}
	if !inserted {
		first, err := s.store.PurchaseByOrderReference(ctx, tx, p.TenantID, p.OrderReference)
		if err != nil {
			return store.Purchase{}, err
		}
		if !bytes.Equal(first.RequestHash, p.RequestHash) {
			return store.Purchase{}, errOrderReferenceUsed
		}
		return first, nil
	}
	if err := s.store.AddToSchedule(ctx, tx, p.TenantID, now); err != nil {
		return store.Purchase{}, err
	}
	changes, err := s.recompute(ctx, tx, p.TenantID, p.CustomerID, now)
	if err != nil {
		return store.Purchase{}, err
	}
	events := append([]outbox.Event{purchaseRecorded(rec)}, segmentEvents(p.TenantID, changes, now)...)
	if err := outbox.Write(ctx, tx, events...); err != nil {
		return store.Purchase{}, fmt.Errorf("write purchase events: %w", err)
	}
	return rec, nil
}

// customerLockKey is the advisory lock serialising one customer's purchases.
func customerLockKey(tenantID, customerID uuid.UUID) int64 {
	return pgdb.LockKey("rapport.customer.purchase:" + tenantID.String() + ":" + customerID.String())
}

// purchaseFromRequest checks what protovalidate cannot (one currency per
// purchase, a purchase time not in the future) and builds the record.
func purchaseFromRequest(req *customerv1.RecordPurchaseRequest, now time.Time) (store.Purchase, error) {
	in := req.GetPurchase()
	currency := in.GetTotalAmount().GetCurrencyCode()
	p := store.Purchase{
		OrderReference:   in.GetOrderReference(),
		Channel:          channelName(in.GetChannel()),
		CurrencyCode:     currency,
		TotalAmountMinor: in.GetTotalAmount().GetAmountMinor(),
		PurchaseTime:     now,
		CreateTime:       now,
		RequestHash:      requestHash(req),
	}
	if p.Channel == "" {
		return store.Purchase{}, &fieldError{field: "purchase.channel", reason: "must be a known channel"}
	}
	if t := in.GetPurchaseTime(); t != nil {
		p.PurchaseTime = t.AsTime().UTC()
		if p.PurchaseTime.After(now.Add(maxClockSkew)) {
			return store.Purchase{}, &fieldError{field: "purchase.purchase_time", reason: "must not be in the future"}
		}
	}
	for i, it := range in.GetItems() {
		if c := it.GetUnitPrice().GetCurrencyCode(); c != currency {
			return store.Purchase{}, &fieldError{
				field:  fmt.Sprintf("purchase.items[%d].unit_price.currency_code", i),
				reason: "must be the purchase's currency (purchase.total_amount.currency_code)",
			}
		}
		p.Items = append(p.Items, store.Item{
			SKU: it.GetSku(), Name: it.GetName(), Category: it.GetCategory(),
			Quantity: it.GetQuantity(), UnitPriceMinor: it.GetUnitPrice().GetAmountMinor(),
		})
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.Purchase{}, fmt.Errorf("new purchase id: %w", err)
	}
	p.ID = id
	return p, nil
}

// requestHash fingerprints the purchase as the client described it: the
// customer and the purchase without its output-only fields. Two requests
// with equal fingerprints record the same purchase.
func requestHash(req *customerv1.RecordPurchaseRequest) []byte {
	p := proto.Clone(req.GetPurchase()).(*customerv1.Purchase)
	p.Id, p.CustomerId, p.CreateTime = "", "", nil
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p) // a valid message always marshals
	h := sha256.New()
	h.Write([]byte(strings.ToLower(req.GetCustomerId())))
	h.Write([]byte{0})
	h.Write(b)
	return h.Sum(nil)
}

func purchaseRecorded(p store.Purchase) outbox.Event {
	ev := &customerv1.PurchaseRecorded{
		TenantId: p.TenantID.String(), PurchaseId: p.ID.String(), CustomerId: p.CustomerID.String(),
		AggregateVersion: 1, OccurredAt: timestamppb.New(p.CreateTime),
		OrderReference: p.OrderReference, TotalAmount: money(p.CurrencyCode, p.TotalAmountMinor),
		Channel: channelValue(p.Channel), PurchaseTime: timestamppb.New(p.PurchaseTime),
	}
	for _, it := range p.Items {
		ev.Items = append(ev.Items, &customerv1.PurchaseRecorded_Item{
			Sku: it.SKU, Category: it.Category, Quantity: it.Quantity,
			UnitPrice: money(p.CurrencyCode, it.UnitPriceMinor),
		})
	}
	return outbox.Event{
		TenantID: p.TenantID.String(), Subject: SubjectPurchaseRecorded,
		AggregateType: aggregatePurchase, AggregateID: p.ID.String(), AggregateVersion: 1,
		Payload: ev, OccurredAt: p.CreateTime,
	}
}

func purchaseToProto(p store.Purchase) *customerv1.Purchase {
	out := &customerv1.Purchase{
		Id: p.ID.String(), CustomerId: p.CustomerID.String(), OrderReference: p.OrderReference,
		TotalAmount: money(p.CurrencyCode, p.TotalAmountMinor), Channel: channelValue(p.Channel),
		PurchaseTime: timestamppb.New(p.PurchaseTime), CreateTime: timestamppb.New(p.CreateTime),
	}
	for _, it := range p.Items {
		out.Items = append(out.Items, &customerv1.PurchaseItem{
			Sku: it.SKU, Name: it.Name, Quantity: it.Quantity,
			UnitPrice: money(p.CurrencyCode, it.UnitPriceMinor), Category: it.Category,
		})
	}
	return out
}

func money(currency string, minor int64) *typev1.Money {
	return &typev1.Money{CurrencyCode: currency, AmountMinor: minor}
}

// Channels are stored by their lower-case names: PURCHASE_CHANNEL_ONLINE is
// "online".
const channelPrefix = "PURCHASE_CHANNEL_"

func channelName(c customerv1.PurchaseChannel) string {
	if c == customerv1.PurchaseChannel_PURCHASE_CHANNEL_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.PurchaseChannel_name[int32(c)]; !ok {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(c.String(), channelPrefix))
}

func channelValue(name string) customerv1.PurchaseChannel {
	return customerv1.PurchaseChannel(customerv1.PurchaseChannel_value[channelPrefix+strings.ToUpper(name)])
}
