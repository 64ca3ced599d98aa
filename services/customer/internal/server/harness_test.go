package server_test

import (
	"context"
	"strings"
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
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
	"github.com/rapporthq/rapport/services/customer/internal/server"
	"github.com/rapporthq/rapport/services/customer/internal/store"
)

// apiBundle serves CustomerService with the purchase and consent mergers
// wired, plus PurchaseService, SegmentService and ConsentService, through
// the real interceptor chain on a fresh database, with a fake clock.
type apiBundle struct {
	pool      *pgxpool.Pool
	clock     *grpcxtest.Clock
	sealer    *pii.Sealer
	tenant    uuid.UUID
	customers customerv1.CustomerServiceClient
	purchases customerv1.PurchaseServiceClient
	segments  customerv1.SegmentServiceClient
	consents  customerv1.ConsentServiceClient
}

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func newAPI(t *testing.T) *apiBundle {
	t.Helper()
	pool := pgdbtest.NewPool(t, spec)
	master, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	clock := grpcxtest.NewClock(testNow)
	sealer, err := pii.New(pool, pii.Config{MasterKey: master, Now: clock.Now})
	require.NoError(t, err)
	purchases := purchase.NewServer(pool, clock.Now)
	consents := consent.NewServer(pool, clock.Now)
	profiles := profile.NewService(store.New(sealer), clock.Now, purchases.Merger(), consents.Merger())
	api := server.New(pool, profiles, sealer)
	conn := grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) {
		customerv1.RegisterCustomerServiceServer(r, api)
		purchases.Register(r)
		consents.Register(r)
	})
	return &apiBundle{
		pool: pool, clock: clock, sealer: sealer, tenant: uuid.New(),
		customers: customerv1.NewCustomerServiceClient(conn),
		purchases: customerv1.NewPurchaseServiceClient(conn),
		segments:  customerv1.NewSegmentServiceClient(conn),
		consents:  customerv1.NewConsentServiceClient(conn),
	}
}

func (b *apiBundle) as() context.Context { return grpcxtest.As(b.tenant) }

func (b *apiBundle) create(t *testing.T, c *customerv1.Customer) *customerv1.Customer {
	t.Helper()
	got, err := b.customers.CreateCustomer(b.as(), &customerv1.CreateCustomerRequest{Customer: c})
	require.NoError(t, err)
	return got
}

func (b *apiBundle) get(t *testing.T, id string) *customerv1.Customer {
	t.Helper()
	got, err := b.customers.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: id})
	require.NoError(t, err)
	return got
}

// requireViolation checks err is INVALID_ARGUMENT naming field.
func requireViolation(t *testing.T, err error, field string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, st.Code(), "%v", err)
	fields := grpcxtest.ViolationFields(err)
	if len(fields) == 0 {
		require.Contains(t, st.Message(), field, "no BadRequest detail; the message must name the field")
		return
	}
	for _, f := range fields {
		// A map entry's path goes on with its key: external_refs["Shop"].
		if f == field || strings.HasPrefix(f, field+"[") {
			return
		}
	}
	require.Fail(t, "no violation names "+field, "%v", err)
}

// requireReason checks err has code and the ErrorInfo reason.
func requireReason(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, code, st.Code(), "%v", err)
	var got string
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			got = info.GetReason()
		}
	}
	require.Equal(t, reason, got, "%v", err)
}
