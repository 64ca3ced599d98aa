package timeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/timeline"
)

// specs are the customer schema and, for the projection tests, the schemas
// of the services whose events the timeline consumes: only their platform
// tables (the outbox), so their events are published by the real relay.
var specs = []pgdbtest.Spec{
	{Schema: customer.Name, Migrations: customer.Migrations()},
	{Schema: "ticket"}, {Schema: "loyalty"}, {Schema: "survey"},
}

// start is the fake clock's first reading.
var start = time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)

type testBundle struct {
	dbURL  string
	pool   *pgxpool.Pool // customer schema
	sealer *pii.Sealer
	clock  *grpcxtest.Clock
	client customerv1.TimelineServiceClient
	server *timeline.Server
	tenant uuid.UUID // a fresh tenant per bundle
}

func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{dbURL: pgdbtest.NewDatabase(t, specs...), clock: grpcxtest.NewClock(start), tenant: uuid.New()}
	b.pool = pgdbtest.Pool(t, b.dbURL, customer.Name)
	key, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	b.sealer, err = pii.New(b.pool, pii.Config{MasterKey: key})
	require.NoError(t, err)
	b.server = timeline.NewServer(b.pool, b.sealer, b.clock.Now)
	conn := grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) { b.server.Register(r) })
	b.client = customerv1.NewTimelineServiceClient(conn)
	return b
}

// agent is a call context of tenant's agent "agent-7".
func agent(tenant uuid.UUID) context.Context {
	return grpcxtest.AsSubject(tenant, "agent-7", "agent")
}

// newCustomers inserts n customers of tenant directly, each with its data
// key, and returns their ids.
func (b *testBundle) newCustomers(tb testing.TB, tenant uuid.UUID, n int) []uuid.UUID {
	tb.Helper()
	return customertest.Insert(tb, b.pool, tenant, n, customertest.Options{Sealer: b.sealer})
}

func (b *testBundle) newCustomer(tb testing.TB, tenant uuid.UUID) uuid.UUID {
	tb.Helper()
	return b.newCustomers(tb, tenant, 1)[0]
}

// erase destroys the customer's data key, as EraseCustomer does.
func (b *testBundle) erase(tb testing.TB, tenant, id uuid.UUID) {
	tb.Helper()
	_, err := b.pool.Exec(context.Background(), "DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2", tenant, id)
	require.NoError(tb, err)
}

// count returns how many timeline entries the customer has in the table.
func (b *testBundle) count(tb testing.TB, tenant, customerID uuid.UUID) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM interactions WHERE tenant_id = $1 AND customer_id = $2", tenant, customerID).Scan(&n))
	return n
}

// badFields returns the fields an InvalidArgument error names.
func badFields(tb testing.TB, err error) []string {
	tb.Helper()
	require.Equal(tb, codes.InvalidArgument, status.Code(err), "%v", err)
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				out = append(out, v.GetField())
			}
		}
	}
	if len(out) == 0 {
		// protovalidate's own violations, before the domain's.
		out = append(out, status.Convert(err).Message())
	}
	return out
}
