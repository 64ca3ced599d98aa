package care_test

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
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/care"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

// tick is the schedule interval the tests pass: each RunDue after the
// clock moved runs every tenant again.
const tick = time.Second

type testBundle struct {
	pool   *pgxpool.Pool
	clock  *grpcxtest.Clock
	sealer *pii.Sealer
	server *care.Server
	client customerv1.CareServiceClient
	tenant uuid.UUID
}

type setupOpts struct {
	now time.Time // zero: 2026-06-01 00:00 UTC
}

func setup(tb testing.TB, opts *setupOpts) *testBundle {
	tb.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	now := opts.now
	if now.IsZero() {
		now = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	}
	b := &testBundle{pool: pgdbtest.NewPool(tb, spec), clock: grpcxtest.NewClock(now), tenant: uuid.New()}
	master, err := pii.GenerateMasterKey()
	require.NoError(tb, err)
	b.sealer, err = pii.New(b.pool, pii.Config{MasterKey: master})
	require.NoError(tb, err)
	b.server = b.newServer()
	conn := grpcxtest.Serve(tb, b.server.Register)
	b.client = customerv1.NewCareServiceClient(conn)
	return b
}

// newServer is another replica on the same database and clock.
func (b *testBundle) newServer() *care.Server {
	return care.NewServer(b.pool, b.sealer, b.clock.Now)
}

// as is an admin of the bundle's tenant.
func (b *testBundle) as(roles ...string) context.Context { return grpcxtest.As(b.tenant, roles...) }

// customerOpts describe a customer inserted directly.
type customerOpts struct {
	zone    string    // time_zone
	birth   [2]int    // month, day; zero: none
	created time.Time // zero: 2020-01-01
	tenant  uuid.UUID // zero: the bundle's
}

// newCustomers inserts n customers like o, each with a data key, and
// returns their ids.
func (b *testBundle) newCustomers(tb testing.TB, n int, o customerOpts) []uuid.UUID {
	tb.Helper()
	if o.tenant == uuid.Nil {
		o.tenant = b.tenant
	}
	if o.created.IsZero() {
		o.created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return customertest.Insert(tb, b.pool, o.tenant, n, customertest.Options{TimeZone: o.zone, Created: o.created,
		BirthMonth: o.birth[0], BirthDay: o.birth[1], Sealer: b.sealer})
}

func (b *testBundle) newCustomer(tb testing.TB, o customerOpts) uuid.UUID {
	tb.Helper()
	return b.newCustomers(tb, 1, o)[0]
}

// settings updates the bundle's tenant's settings (mask: the fields named).
func (b *testBundle) settings(tb testing.TB, st *customerv1.CareSettings, paths ...string) *customerv1.CareSettings {
	tb.Helper()
	got, err := b.client.UpdateCareSettings(b.as(), &customerv1.UpdateCareSettingsRequest{
		Settings: st, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	require.NoError(tb, err)
	return got
}

// runDue runs one scheduler pass at the clock's time.
func (b *testBundle) runDue(tb testing.TB) {
	tb.Helper()
	_, err := b.server.RunDue(context.Background(), tick)
	require.NoError(tb, err)
}

// at sets the clock and runs a pass.
func (b *testBundle) at(tb testing.TB, t time.Time) {
	tb.Helper()
	b.clock.Set(t)
	b.runDue(tb)
}

// dueEvents returns the CareDue events of tenant in the outbox, in order.
func (b *testBundle) dueEvents(tb testing.TB, tenant uuid.UUID) []*customerv1.CareDue {
	tb.Helper()
	rows, err := b.pool.Query(context.Background(), `
		SELECT aggregate_id, payload FROM outbox WHERE tenant_id = $1 AND subject = $2 ORDER BY seq`,
		tenant, care.SubjectCareDue)
	require.NoError(tb, err)
	defer rows.Close()
	var out []*customerv1.CareDue
	for rows.Next() {
		var (
			agg     string
			payload []byte
		)
		require.NoError(tb, rows.Scan(&agg, &payload))
		ev := &customerv1.CareDue{}
		require.NoError(tb, proto.Unmarshal(payload, ev))
		require.Equal(tb, ev.GetOccasionId(), agg, "aggregate id is the occasion id")
		out = append(out, ev)
	}
	require.NoError(tb, rows.Err())
	return out
}

func (b *testBundle) count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// occasions lists a customer's occasions through the API.
func (b *testBundle) occasions(tb testing.TB, customerID uuid.UUID) []*customerv1.CareOccasion {
	tb.Helper()
	got, err := b.client.ListCareOccasions(b.as(), &customerv1.ListCareOccasionsRequest{CustomerId: customerID.String(), PageSize: 500})
	require.NoError(tb, err)
	return got.GetOccasions()
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

func requireCode(tb testing.TB, err error, code codes.Code) {
	tb.Helper()
	require.Equal(tb, code, status.Code(err), "error: %v", err)
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}
