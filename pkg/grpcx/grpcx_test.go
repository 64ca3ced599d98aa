package grpcx_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

const (
	goodToken = "good-token"
	principal = "alice"
	tenant    = "tenant-a"
	// marker stands for personal data or internals that must never reach a
	// client.
	marker = "SECRETMARKER"
)

type principalKey struct{}

// authenticate accepts only goodToken; the principal goes into the context
// and the tenant into the access log, as the real verifier does.
func authenticate(ctx context.Context) (context.Context, error) {
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, err
	}
	if tok != goodToken {
		return nil, status.Error(codes.Unauthenticated, "invalid token")
	}
	grpcx.SetLogTenant(ctx, tenant)
	return context.WithValue(ctx, principalKey{}, principal), nil
}

// customers is a test service. CreateCustomer's display_name picks what it
// does; otherwise it echoes what it saw: the request id field as the id, the
// principal as the display name.
type customers struct {
	customerv1.UnimplementedCustomerServiceServer
}

func (customers) CreateCustomer(ctx context.Context, req *customerv1.CreateCustomerRequest) (*customerv1.Customer, error) {
	switch req.GetCustomer().GetDisplayName() {
	case "panic":
		panic("boom: " + marker)
	case "raw-error":
		return nil, errors.New(`insert customer: relation "` + marker + `" does not exist`)
	case "not-found":
		return nil, fmt.Errorf("load customer %s: %w", marker, pgdb.ErrNotFound)
	case "wrapped-refusal":
		return nil, fmt.Errorf("redeem for %s: %w", marker,
			grpcx.FailedPrecondition("INSUFFICIENT_POINTS", "not enough points"))
	case "block":
		<-ctx.Done()
		return nil, ctx.Err()
	}
	p, _ := ctx.Value(principalKey{}).(string)
	return &customerv1.Customer{Id: req.GetRequestId(), DisplayName: p}, nil
}

type testBundle struct {
	conn     *grpc.ClientConn
	client   customerv1.CustomerServiceClient
	health   healthpb.HealthClient
	logs     *grpcxtest.LogBuffer
	registry *prometheus.Registry
}

type serverOpts struct {
	defaultTimeout time.Duration
	// authorize replaces the allow-all authorizer most tests use.
	authorize func(ctx context.Context, fullMethod string) error
}

// setup serves grpcx.NewServer with the test service on a 127.0.0.1:0
// listener and dials it.
func setup(t *testing.T, opts *serverOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &serverOpts{}
	}
	logs := &grpcxtest.LogBuffer{}
	reg := prometheus.NewRegistry()
	authorize := opts.authorize
	if authorize == nil {
		authorize = func(context.Context, string) error { return nil }
	}
	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		Logger:         slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		AuthFunc:       authenticate,
		Authorize:      authorize,
		Registerer:     reg,
		DefaultTimeout: opts.defaultTimeout,
	})
	require.NoError(t, err)
	customerv1.RegisterCustomerServiceServer(srv.Server, customers{})
	conn := serve(t, srv)
	return &testBundle{
		conn:     conn,
		client:   customerv1.NewCustomerServiceClient(conn),
		health:   healthpb.NewHealthClient(conn),
		logs:     logs,
		registry: reg,
	}
}

// serve serves srv on a 127.0.0.1:0 listener until the test ends and
// returns a connection to it.
func serve(t *testing.T, srv *grpcx.Server) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-served)
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// authed returns a context carrying the good token and the given metadata
// pairs.
func authed(t testing.TB, kv ...string) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return metadata.AppendToOutgoingContext(ctx, append([]string{"authorization", "Bearer " + goodToken}, kv...)...)
}

func create(name string) *customerv1.CreateCustomerRequest {
	return &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{DisplayName: name}}
}

func badRequest(t testing.TB, err error) *errdetails.BadRequest {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			return br
		}
	}
	require.FailNow(t, "no google.rpc.BadRequest in the status", "%v", err)
	return nil
}

func errorInfo(t testing.TB, err error) *errdetails.ErrorInfo {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei
		}
	}
	require.FailNow(t, "no google.rpc.ErrorInfo in the status", "%v", err)
	return nil
}

func fields(br *errdetails.BadRequest) []string {
	var out []string
	for _, v := range br.GetFieldViolations() {
		out = append(out, v.GetField())
	}
	return out
}

// handled returns grpc_server_handled_total for a CustomerService method and
// code.
func handled(t testing.TB, reg *prometheus.Registry, method, code string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "grpc_server_handled_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["grpc_method"] == method && labels["grpc_code"] == code {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func TestServer(t *testing.T) {
	t.Parallel()

	t.Run("ValidationNamesTheFieldWithoutEchoingTheValue", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := create("Ada")
		req.Customer.Email = "not-an-email-" + marker
		_, err := b.client.CreateCustomer(authed(t), req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		br := badRequest(t, err)
		require.Equal(t, []string{"customer.email"}, fields(br))
		require.NotEmpty(t, br.GetFieldViolations()[0].GetDescription())
		require.NotContains(t, br.GetFieldViolations()[0].GetDescription(), marker)
		require.NotContains(t, status.Convert(err).Message(), marker)
		require.Contains(t, status.Convert(err).Message(), "customer.email")
	})

	t.Run("ValidationReportsEveryBrokenField", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := create("Ada")
		req.Customer.Email = "nope"
		req.Customer.Phone = "12"
		_, err := b.client.CreateCustomer(authed(t), req)
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.ElementsMatch(t, []string{"customer.email", "customer.phone"}, fields(badRequest(t, err)))
		require.Contains(t, status.Convert(err).Message(), "(and 1 more)")
	})

	t.Run("MissingOrBadTokenIsUnauthenticatedButHealthIsPublic", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx := t.Context()

		_, err := b.client.CreateCustomer(ctx, create("Ada"))
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

		bad := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer forged")
		_, err = b.client.CreateCustomer(bad, create("Ada"))
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

		// Authentication runs before validation: an anonymous caller learns
		// nothing about request shapes.
		invalid := create("Ada")
		invalid.Customer.Email = "nope"
		_, err = b.client.CreateCustomer(ctx, invalid)
		require.Equal(t, codes.Unauthenticated, status.Code(err), "%v", err)

		resp, err := b.health.Check(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err, "/grpc.health.v1.Health/Check must work without a token")
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.GetStatus())

		watch, err := b.health.Watch(ctx, &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		first, err := watch.Recv()
		require.NoError(t, err, "/grpc.health.v1.Health/Watch must work without a token")
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())
	})

	t.Run("AuthFuncPrincipalReachesTheHandlerAndTenantTheAccessLog", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		resp, err := b.client.CreateCustomer(authed(t, grpcx.RequestIDHeader, "req-principal"), create("Ada"))
		require.NoError(t, err)
		require.Equal(t, principal, resp.GetDisplayName())

		var line map[string]any
		require.Eventually(t, func() bool {
			for _, l := range b.logs.Lines(t, "finished call") {
				if l["request_id"] == "req-principal" {
					line = l
					return true
				}
			}
			return false
		}, 5*time.Second, 5*time.Millisecond, "no access-log line for the call")
		require.Equal(t, tenant, line["tenant"])
		require.Equal(t, "OK", line["grpc.code"])
		require.Equal(t, "CreateCustomer", line["grpc.method"])
	})

	t.Run("IdempotencyKeyMetadataFillsRequestID", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		key := uuid.NewString()
		resp, err := b.client.CreateCustomer(authed(t, grpcx.IdempotencyKeyMetadata, key), create("Ada"))
		require.NoError(t, err)
		require.Equal(t, key, resp.GetId(), "the handler must see the key as request_id")

		// The same value in both places is one key, not a conflict.
		req := create("Ada")
		req.RequestId = key
		resp, err = b.client.CreateCustomer(authed(t, grpcx.IdempotencyKeyMetadata, key), req)
		require.NoError(t, err)
		require.Equal(t, key, resp.GetId())
	})

	t.Run("IdempotencyKeyConflictingWithRequestIDIsRefused", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := create("Ada")
		req.RequestId = uuid.NewString()
		_, err := b.client.CreateCustomer(authed(t, grpcx.IdempotencyKeyMetadata, uuid.NewString()), req)
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Equal(t, []string{"request_id"}, fields(badRequest(t, err)))

		// Two keys are ambiguous.
		_, err = b.client.CreateCustomer(authed(t,
			grpcx.IdempotencyKeyMetadata, uuid.NewString(), grpcx.IdempotencyKeyMetadata, uuid.NewString()), create("Ada"))
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Equal(t, []string{"request_id"}, fields(badRequest(t, err)))

		// A key that is no UUID is validated like the field it fills.
		_, err = b.client.CreateCustomer(authed(t, grpcx.IdempotencyKeyMetadata, "not-a-uuid"), create("Ada"))
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Equal(t, []string{"request_id"}, fields(badRequest(t, err)))
	})

	t.Run("UnknownErrorIsGenericInternalAndLoggedWithTheRequestID", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.CreateCustomer(authed(t, grpcx.RequestIDHeader, "req-raw"), create("raw-error"))
		require.Equal(t, codes.Internal, status.Code(err), "%v", err)
		require.Equal(t, "internal error", status.Convert(err).Message())
		require.NotContains(t, err.Error(), marker)

		lines := b.logs.Lines(t, "internal error")
		require.Len(t, lines, 1)
		require.Equal(t, "req-raw", lines[0]["request_id"])
		require.Contains(t, lines[0]["error"], marker, "the cause must reach the log")
		// Metrics and the access log see the code the client saw.
		require.Equal(t, 1.0, handled(t, b.registry, "CreateCustomer", "Internal"))
	})

	t.Run("DatabaseKindsMapWithoutLeakingTheirContext", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.CreateCustomer(authed(t), create("not-found"))
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		require.NotContains(t, err.Error(), marker)
		require.Empty(t, b.logs.Lines(t, "internal error"), "a known kind is not an internal error")
	})

	t.Run("WrappedStatusKeepsItsCodeDetailsAndOwnMessage", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.CreateCustomer(authed(t), create("wrapped-refusal"))
		require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
		require.Equal(t, "not enough points", status.Convert(err).Message(),
			"the handler's wrapping context must not reach the client")
		require.Equal(t, "INSUFFICIENT_POINTS", errorInfo(t, err).GetReason())
	})

	t.Run("PanicIsInternalAndTheServerKeepsServing", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.CreateCustomer(authed(t, grpcx.RequestIDHeader, "req-panic"), create("panic"))
		require.Equal(t, codes.Internal, status.Code(err), "%v", err)
		require.Equal(t, "internal error", status.Convert(err).Message())
		require.NotContains(t, err.Error(), marker)

		lines := b.logs.Lines(t, "panic in handler")
		require.Len(t, lines, 1)
		require.Contains(t, lines[0]["panic"], marker)
		require.Equal(t, "req-panic", lines[0]["request_id"], "the panic must be logged with the call's request id")

		resp, err := b.client.CreateCustomer(authed(t), create("Ada"))
		require.NoError(t, err, "the server must survive a panicking handler")
		require.Equal(t, principal, resp.GetDisplayName())
	})

	t.Run("RequestIDIsEchoedOrReplaced", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		call := func(kv ...string) string {
			var header metadata.MD
			_, err := b.client.CreateCustomer(authed(t, kv...), create("Ada"), grpc.Header(&header))
			require.NoError(t, err)
			ids := header.Get(grpcx.RequestIDHeader)
			require.Len(t, ids, 1)
			return ids[0]
		}

		require.Equal(t, "req-123.a_b", call(grpcx.RequestIDHeader, "req-123.a_b"))

		for _, bad := range []string{"has spaces", "semi;colon", strings.Repeat("x", 65)} {
			got := call(grpcx.RequestIDHeader, bad)
			require.NotEqual(t, bad, got)
			id, err := uuid.Parse(got)
			require.NoError(t, err, "a malformed id is replaced by a fresh UUID, got %q", got)
			require.Equal(t, uuid.Version(7), id.Version())
		}

		generated := call()
		_, err := uuid.Parse(generated)
		require.NoError(t, err)
		require.NotEqual(t, generated, call(), "each call gets its own id")

		// Errors carry the id too, so a client can quote it.
		var header metadata.MD
		_, err = b.client.CreateCustomer(authed(t, grpcx.RequestIDHeader, "req-err"), create("raw-error"), grpc.Header(&header))
		require.Error(t, err)
		require.Equal(t, []string{"req-err"}, header.Get(grpcx.RequestIDHeader))
	})

	t.Run("CallsWithoutADeadlineGetTheDefault", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &serverOpts{defaultTimeout: 100 * time.Millisecond})
		// The client sets no deadline; it cancels, rather than hang, if the
		// server applies none.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+goodToken)
		errc := make(chan error, 1)
		go func() {
			_, err := b.client.CreateCustomer(ctx, create("block"))
			errc <- err
		}()
		select {
		case err := <-errc:
			require.Equal(t, codes.DeadlineExceeded, status.Code(err), "%v", err)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "a call without a deadline ran unbounded")
		}
	})
}

func TestAuthorization(t *testing.T) {
	t.Parallel()

	t.Run("RefusalStopsTheCallBeforeValidation", func(t *testing.T) {
		t.Parallel()
		var seen []string
		var mu sync.Mutex
		b := setup(t, &serverOpts{authorize: func(_ context.Context, m string) error {
			mu.Lock()
			defer mu.Unlock()
			seen = append(seen, m)
			return status.Error(codes.PermissionDenied, "permission denied")
		}})
		// An invalid request: refused as PERMISSION_DENIED, not
		// INVALID_ARGUMENT, so a caller without the role learns nothing.
		_, err := b.client.CreateCustomer(authed(t), &customerv1.CreateCustomerRequest{RequestId: "x"})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{customerv1.CustomerService_CreateCustomer_FullMethodName}, seen)
	})

	t.Run("UnknownMethodsAreDeniedNotRevealed", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		err := b.conn.Invoke(authed(t), "/rapport.customer.v1.CustomerService/DropAllCustomers",
			&customerv1.GetCustomerRequest{}, &customerv1.Customer{})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
		err = b.conn.Invoke(authed(t), "/rapport.billing.v1.BillingService/Charge",
			&customerv1.GetCustomerRequest{}, &customerv1.Customer{})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})

	t.Run("NilAuthorizeDeniesEverything", func(t *testing.T) {
		t.Parallel()
		srv, err := grpcx.NewServer(grpcx.ServerConfig{AuthFunc: authenticate})
		require.NoError(t, err)
		customerv1.RegisterCustomerServiceServer(srv.Server, customers{})
		conn := serve(t, srv)
		_, err = customerv1.NewCustomerServiceClient(conn).GetCustomer(authed(t), &customerv1.GetCustomerRequest{Id: "0195f3c0-0000-7000-8000-000000000001"})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})
}
