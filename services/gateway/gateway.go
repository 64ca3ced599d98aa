// Package gateway is Rapport's REST edge: grpc-gateway handlers for every
// service, dialled to the gRPC server as an ordinary client, so REST calls
// pass the same interceptors (authentication, validation, idempotency,
// logging) as gRPC calls. It also serves the OpenAPI document.
//
// It never registers handlers in-process (Register…HandlerServer): that path
// skips the interceptor chain.
package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/openapi"
	"github.com/rapporthq/rapport/pkg/ratelimit"
	"github.com/rapporthq/rapport/services/gateway/docs"
)

// Name is the gateway's target name.
const Name = "gateway"

// IdempotencyKeyHeader is the HTTP header mapped onto a request's request_id.
const IdempotencyKeyHeader = "Idempotency-Key"

// Config tunes the gateway; zero values are defaults.
type Config struct {
	// MaxBodyBytes bounds a request body; 0 means 1 MiB.
	MaxBodyBytes int64
	// Timeout is the deadline given to every upstream call; 0 means 30 s.
	Timeout time.Duration
	// CORSAllowedOrigins may call the API from browsers; empty: none.
	CORSAllowedOrigins []string
}

// Deps are the gateway's upstream connections, one per service (in all mode
// the same loopback connection to the process's own gRPC server).
type Deps struct {
	Customer *grpc.ClientConn
	Access   *grpc.ClientConn // AccessService (API keys)
	Logger   *slog.Logger
}

// Gateway is an http.Handler for /v1/… and /openapi.json.
type Gateway struct {
	handler http.Handler
}

// New builds the gateway's routes.
func New(ctx context.Context, deps Deps, cfg Config) (*Gateway, error) {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(incomingHeader),
		runtime.WithOutgoingHeaderMatcher(outgoingHeader),
		runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
			Marshaler: &runtime.JSONPb{
				MarshalOptions: protojson.MarshalOptions{EmitUnpopulated: true},
				// Unknown fields are refused, not dropped: a misspelt or
				// forbidden field (tenant_id, version) gets a 400 instead of
				// silently doing nothing.
				UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
			},
		}),
	)
	if deps.Customer == nil {
		return nil, fmt.Errorf("gateway: no upstream connection for %s", customerv1.CustomerService_ServiceDesc.ServiceName)
	}
	// In this order: grpc-gateway tries the pattern registered last first,
	// and CustomerService's GET /v1/customers/{id} (no verb) also matches
	// /v1/customers/{id}:export and :checkContact, so it must come first.
	for _, svc := range []struct {
		name     string
		register func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error
	}{
		{"customer", customerv1.RegisterCustomerServiceHandler},
		{"consent", customerv1.RegisterConsentServiceHandler},
		{"purchase", customerv1.RegisterPurchaseServiceHandler},
		{"segment", customerv1.RegisterSegmentServiceHandler},
		{"timeline", customerv1.RegisterTimelineServiceHandler},
		{"care", customerv1.RegisterCareServiceHandler},
		{"outreach", customerv1.RegisterOutreachServiceHandler},
		{"insight", customerv1.RegisterInsightServiceHandler},
		{"privacy", customerv1.RegisterPrivacyServiceHandler},
	} {
		if err := svc.register(ctx, mux, deps.Customer); err != nil {
			return nil, fmt.Errorf("gateway: register %s: %w", svc.name, err)
		}
	}
	if deps.Access == nil {
		return nil, fmt.Errorf("gateway: no upstream connection for %s", accessv1.AccessService_ServiceDesc.ServiceName)
	}
	if err := accessv1.RegisterAccessServiceHandler(ctx, mux, deps.Access); err != nil {
		return nil, fmt.Errorf("gateway: register access: %w", err)
	}

	routes := http.NewServeMux()
	routes.Handle("GET /openapi.json", openapi.Handler())
	// Both paths: with only "/docs/", the mux would answer /docs with a redirect.
	docsPage := docs.Handler()
	routes.Handle("/docs", docsPage)
	routes.Handle("/docs/", docsPage)
	routes.Handle("/v1/", limitBody(cfg.MaxBodyBytes, withTimeout(cfg.Timeout, mux)))
	// otelhttp continues a caller's trace (traceparent) into the gRPC call,
	// so one trace spans the edge and the service.
	traced := otelhttp.NewHandler(routes, "gateway",
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return r.Method + " " + r.Pattern }))
	return &Gateway{handler: CORS(cfg.CORSAllowedOrigins, traced)}, nil
}

// ServeHTTP implements http.Handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// incomingHeader forwards the headers the server reads: Authorization is
// forwarded by grpc-gateway itself; these are ours.
func incomingHeader(key string) (string, bool) {
	switch textproto.CanonicalMIMEHeaderKey(key) {
	case IdempotencyKeyHeader:
		return grpcx.IdempotencyKeyMetadata, true
	case "X-Request-Id":
		return grpcx.RequestIDHeader, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// outgoingHeader exposes the request id as X-Request-Id and the rate-limit
// fields (Retry-After, RateLimit-*); other response metadata is gRPC
// transport detail and stays inside.
func outgoingHeader(key string) (string, bool) {
	if strings.EqualFold(key, grpcx.RequestIDHeader) {
		return "X-Request-Id", true
	}
	return ratelimit.HTTPHeader(key)
}

// limitBody answers 413 to bodies declared larger than max, and cuts off
// bodies that turn out larger while being read.
func limitBody(max int64, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > max {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			_, _ = fmt.Fprintf(w, `{"code":8,"message":"request body larger than %d bytes","details":[]}`+"\n", max)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, max)
		next.ServeHTTP(w, r)
	})
}

// withTimeout gives every upstream call a deadline.
func withTimeout(d time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}
