package purchase_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

// t0 is the fake clock's start: a fixed instant, so day boundaries in the
// RFM tests are exact.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	pool      *pgxpool.Pool
	clock     *grpcxtest.Clock
	server    *purchase.Server
	purchases customerv1.PurchaseServiceClient
	segments  customerv1.SegmentServiceClient
}

type setupOpts struct {
	pool *pgxpool.Pool // nil: a fresh database
}

func setup(tb testing.TB, opts *setupOpts) *testBundle {
	tb.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	b := &testBundle{pool: opts.pool, clock: grpcxtest.NewClock(t0)}
	if b.pool == nil {
		b.pool = pgdbtest.NewPool(tb, spec)
	}
	b.server = purchase.NewServer(b.pool, b.clock.Now)
	conn := grpcxtest.Serve(tb, b.server.Register)
	b.purchases = customerv1.NewPurchaseServiceClient(conn)
	b.segments = customerv1.NewSegmentServiceClient(conn)
	return b
}

// as is an outgoing context for a caller of tenant holding roles (admin if
// none are given).
func as(tenant uuid.UUID, roles ...string) context.Context { return grpcxtest.As(tenant, roles...) }

// newCustomers inserts n customers of tenant directly and returns their ids.
func (b *testBundle) newCustomers(tb testing.TB, tenant uuid.UUID, n int) []uuid.UUID {
	tb.Helper()
	return customertest.Insert(tb, b.pool, tenant, n, customertest.Options{})
}

func (b *testBundle) newCustomer(tb testing.TB, tenant uuid.UUID) uuid.UUID {
	tb.Helper()
	return b.newCustomers(tb, tenant, 1)[0]
}

// event is an outbox row.
type event struct {
	Subject          string
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	Payload          []byte
}

// events returns tenant's outbox rows with subject, in outbox order.
func (b *testBundle) events(tb testing.TB, tenant uuid.UUID, subject string) []event {
	tb.Helper()
	rows, err := b.pool.Query(context.Background(), `
		SELECT subject, aggregate_type, aggregate_id, aggregate_version, payload FROM outbox
		WHERE tenant_id = $1 AND subject = $2 ORDER BY seq`, tenant, subject)
	require.NoError(tb, err)
	defer rows.Close()
	var out []event
	for rows.Next() {
		var e event
		require.NoError(tb, rows.Scan(&e.Subject, &e.AggregateType, &e.AggregateID, &e.AggregateVersion, &e.Payload))
		out = append(out, e)
	}
	require.NoError(tb, rows.Err())
	return out
}

func (b *testBundle) segmentEvents(tb testing.TB, tenant uuid.UUID) []*customerv1.SegmentChanged {
	tb.Helper()
	var out []*customerv1.SegmentChanged
	for _, e := range b.events(tb, tenant, purchase.SubjectSegmentChanged) {
		ev := &customerv1.SegmentChanged{}
		require.NoError(tb, proto.Unmarshal(e.Payload, ev))
		require.Equal(tb, ev.GetAggregateVersion(), e.AggregateVersion)
		require.Equal(tb, ev.GetCustomerId(), e.AggregateID)
		out = append(out, ev)
	}
	return out
}

func (b *testBundle) count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func usd(minor int64) *typev1.Money { return &typev1.Money{CurrencyCode: "USD", AmountMinor: minor} }

// newPurchase is a valid one-line purchase of total minor units of USD.
func newPurchase(ref string, total int64) *customerv1.Purchase {
	return &customerv1.Purchase{
		OrderReference: ref,
		Items: []*customerv1.PurchaseItem{{
			Sku: "SKU-1", Name: "Walking boots", Quantity: 1, UnitPrice: usd(total), Category: "shoes",
		}},
		TotalAmount: usd(total),
		Channel:     customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
	}
}

// at sets a purchase's time.
func at(p *customerv1.Purchase, t time.Time) *customerv1.Purchase {
	p.PurchaseTime = timestamppb.New(t)
	return p
}

// record records a purchase and requires success.
func (b *testBundle) record(tb testing.TB, tenant, customerID uuid.UUID, p *customerv1.Purchase) *customerv1.Purchase {
	tb.Helper()
	got, err := b.purchases.RecordPurchase(as(tenant, "agent"), &customerv1.RecordPurchaseRequest{
		CustomerId: customerID.String(), Purchase: p,
	})
	require.NoError(tb, err)
	return got
}

func (b *testBundle) segment(tb testing.TB, tenant, customerID uuid.UUID) *customerv1.CustomerSegment {
	tb.Helper()
	got, err := b.segments.GetCustomerSegment(as(tenant), &customerv1.GetCustomerSegmentRequest{CustomerId: customerID.String()})
	require.NoError(tb, err)
	return got
}

func (b *testBundle) recomputeAll(tb testing.TB, tenant uuid.UUID) *customerv1.RecomputeSegmentsResponse {
	tb.Helper()
	got, err := b.segments.RecomputeSegments(as(tenant), &customerv1.RecomputeSegmentsRequest{})
	require.NoError(tb, err)
	return got
}

// requireFieldViolation requires an INVALID_ARGUMENT naming field.
func requireFieldViolation(tb testing.TB, err error, field string) {
	tb.Helper()
	st := status.Convert(err)
	require.Equal(tb, codes.InvalidArgument, st.Code(), "error: %v", err)
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(tb, fields, field, "violations of %v", err)
}

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }
