package insight_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/insight"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

// now is the fake clock's start: 2026-05-10, so the fixture's months
// January to April 2026 are over and May has begun.
var now = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

type testBundle struct {
	pool    *pgxpool.Pool
	clock   *grpcxtest.Clock
	server  *insight.Server
	insight customerv1.InsightServiceClient
}

func setup(tb testing.TB) *testBundle {
	tb.Helper()
	b := &testBundle{pool: pgdbtest.NewPool(tb, spec), clock: grpcxtest.NewClock(now)}
	b.server = insight.NewServer(b.pool, b.clock.Now)
	conn := grpcxtest.Serve(tb, b.server.Register)
	b.insight = customerv1.NewInsightServiceClient(conn)
	return b
}

// newCustomers inserts n customers of tenant directly and returns their ids.
func (b *testBundle) newCustomers(tb testing.TB, tenant uuid.UUID, n int) []uuid.UUID {
	tb.Helper()
	return customertest.Insert(tb, b.pool, tenant, n, customertest.Options{})
}

// buy stores a purchase of the skus (one line each, category "cat-<sku>"
// in lower case) at t, straight into purchase's tables: the fixture needs
// exact times, and recording is the purchase package's business.
func (b *testBundle) buy(tb testing.TB, tenant, customerID uuid.UUID, t time.Time, skus ...string) {
	tb.Helper()
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7())
	_, err := b.pool.Exec(ctx, `
		INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel, currency_code,
		                       total_amount_minor, purchase_time, request_hash, create_time)
		VALUES ($1, $2, $3, $4, 'online', 'USD', 1000, $5, '\x00', $5)`, tenant, id, customerID, id.String(), t)
	require.NoError(tb, err)
	if len(skus) == 0 {
		skus = []string{"SKU-DEFAULT"}
	}
	cats := make([]string, len(skus))
	for i, s := range skus {
		cats[i] = "cat-" + strings.ToLower(s)
	}
	_, err = b.pool.Exec(ctx, `
		INSERT INTO purchase_items (tenant_id, purchase_id, line, sku, name, category, quantity, currency_code, unit_price_minor)
		SELECT $1, $2, s.line, s.sku, 'item', s.category, 1, 'USD', 100
		FROM unnest($3::text[], $4::text[]) WITH ORDINALITY AS s(sku, category, line)`, tenant, id, skus, cats)
	require.NoError(tb, err)
}

// setSegment stores a customer's current segment as the RFM recompute
// would (only segment matters here; the scores are placeholders).
func (b *testBundle) setSegment(tb testing.TB, tenant, customerID uuid.UUID, segment string) {
	tb.Helper()
	_, err := b.pool.Exec(context.Background(), `
		INSERT INTO customer_segments (tenant_id, customer_id, segment, recency_score, frequency_score, monetary_score,
		    last_purchase_time, frequency, monetary_minor, monetary_currency, basis, segment_version, segment_changed,
		    segment_change_time, update_time)
		VALUES ($1, $2, $3, 3, 3, 3, $4, 1, 1000, 'USD', 1, 1, true, $4, $4)
		ON CONFLICT (tenant_id, customer_id) DO UPDATE SET segment = excluded.segment`, tenant, customerID, segment, now)
	require.NoError(tb, err)
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

func utc(y int, m time.Month, d, h, mi, s int) time.Time {
	return time.Date(y, m, d, h, mi, s, 0, time.UTC)
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }
