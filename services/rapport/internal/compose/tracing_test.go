package compose

import (
	"context"
	"encoding/hex"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// collector is an OTLP trace receiver: the real protocol, in the test.
type collector struct {
	coltrace.UnimplementedTraceServiceServer
	mu     sync.Mutex
	spans  []string
	traces map[string][]string // trace id (hex) -> span names
}

func (c *collector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s.GetName())
				if c.traces == nil {
					c.traces = map[string][]string{}
				}
				id := hex.EncodeToString(s.GetTraceId())
				c.traces[id] = append(c.traces[id], s.GetName())
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

func (c *collector) trace(id string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.traces[id]...)
}

func (c *collector) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.spans...)
}

func TestTracesReachAnOTLPCollector(t *testing.T) {
	col := &collector{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer()
	coltrace.RegisterTraceServiceServer(srv, col)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	cfg := Config{Targets: "customer", DatabaseURL: "postgres://x@127.0.0.1:1/x", NATSReplicas: 1, DataDir: t.TempDir(),
		GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0", LogLevel: "info", ShutdownGrace: time.Second,
		Auth:         AuthConfig{Issuer: "i", Audience: "a", Dev: true},
		OTLPEndpoint: "http://" + lis.Addr().String(), TraceSampleRatio: 1,
		RateLimit: RateLimitConfig{TenantRPS: 1, TenantBurst: 1, PrincipalRPS: 1, PrincipalBurst: 1}}
	require.NoError(t, cfg.Validate())
	stop, err := setupTracing(context.Background(), cfg)
	require.NoError(t, err)

	// A traced call: a gRPC server with the stats handler grpcx installs,
	// called by a client with the one the gateway uses.
	b := setup(t)
	_, err = customerv1.NewCustomerServiceClient(b.grpcConn).GetCustomer(authCtx(b.token(t, tenantA, "tracer")),
		&customerv1.GetCustomerRequest{Id: "0195f3c0-0000-7000-8000-0000000000ff"})
	require.Error(t, err, "not found, but traced all the same")

	// A REST call that carries a caller's trace continues it: the gateway's
	// span and the gRPC server's span join the caller's trace id.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	r := b.call(t, http.MethodGet, "/v1/customers", b.token(t, tenantA, "tracer"),
		map[string]string{"traceparent": "00-" + traceID + "-00f067aa0ba902b7-01"}, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	stop() // flushes the batch
	require.Subset(t, col.trace(traceID), []string{"GET /v1/", "rapport.customer.v1.CustomerService/ListCustomers"},
		"the caller's trace continues through the gateway into the service")

	require.Contains(t, col.names(), "rapport.customer.v1.CustomerService/GetCustomer")

	bad := cfg
	bad.OTLPEndpoint = "collector:4317"
	require.ErrorContains(t, bad.Validate(), "OTEL_EXPORTER_OTLP_ENDPOINT")
}
