package grpcx_test

import (
	"context"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
)

type failure struct {
	method    string
	code      codes.Code
	requestID string
	principal any
}

// TestOnAuthFailure: every refusal by authentication or authorization is
// reported once, with the method, the request id and (for authorization)
// the principal; successes, public calls and other errors are not.
func TestOnAuthFailure(t *testing.T) {
	t.Parallel()
	var (
		mu   sync.Mutex
		seen []failure
	)
	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		AuthFunc: authenticate,
		Authorize: func(_ context.Context, m string) error {
			if m == customerv1.CustomerService_LookupCustomers_FullMethodName {
				return status.Error(codes.PermissionDenied, "permission denied")
			}
			return nil
		},
		OnAuthFailure: func(ctx context.Context, m string, err error) {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, failure{method: m, code: status.Code(err), requestID: grpcx.RequestID(ctx),
				principal: ctx.Value(principalKey{})})
		},
	})
	require.NoError(t, err)
	customerv1.RegisterCustomerServiceServer(srv.Server, customers{})
	conn := serve(t, srv)
	client := customerv1.NewCustomerServiceClient(conn)

	// No token, then a bad one: UNAUTHENTICATED, reported.
	anon := metadata.AppendToOutgoingContext(context.Background(), grpcx.RequestIDHeader, "req-1")
	_, err = client.GetCustomer(anon, &customerv1.GetCustomerRequest{Id: "x"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	bad := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer wrong", grpcx.RequestIDHeader, "req-2")
	_, err = client.GetCustomer(bad, &customerv1.GetCustomerRequest{Id: "x"})
	require.Equal(t, codes.Unauthenticated, status.Code(err))
	// A good token without the right: PERMISSION_DENIED, reported.
	_, err = client.LookupCustomers(authed(t, grpcx.RequestIDHeader, "req-3"), &customerv1.LookupCustomersRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	// Not reported: a success, a handler's own error, a public call.
	_, err = client.CreateCustomer(authed(t), create("ok"))
	require.NoError(t, err)
	_, err = client.CreateCustomer(authed(t), create("not-found"))
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []failure{
		{method: customerv1.CustomerService_GetCustomer_FullMethodName, code: codes.Unauthenticated, requestID: "req-1"},
		{method: customerv1.CustomerService_GetCustomer_FullMethodName, code: codes.Unauthenticated, requestID: "req-2"},
		{method: customerv1.CustomerService_LookupCustomers_FullMethodName, code: codes.PermissionDenied, requestID: "req-3", principal: principal},
	}, seen)
}
