// Package grpcx builds Rapport's gRPC servers: one interceptor chain for every
// service, the error mapping every handler's error passes through once, and
// the gRPC health service.
//
// It must not know any service's messages; services register on the server it
// returns.
package grpcx

import (
	"context"
	"log/slog"
	"regexp"
	"runtime/debug"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"github.com/google/uuid"
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// RequestIDHeader carries the request id in gRPC metadata and HTTP headers.
const RequestIDHeader = "x-request-id"

// ServerConfig configures NewServer. Zero values are the defaults.
type ServerConfig struct {
	Logger *slog.Logger
	// AuthFunc authenticates a call and returns the context carrying its
	// principal. Nil refuses every call that is not public.
	AuthFunc auth.AuthFunc
	// Authorize decides whether the authenticated caller may call the
	// method; nil refuses every call that is not public. Unknown methods
	// are refused as PERMISSION_DENIED too, never revealed as unimplemented.
	Authorize func(ctx context.Context, fullMethod string) error
	// RateLimit runs after authorization; nil limits nothing.
	RateLimit grpc.UnaryServerInterceptor
	// Public reports methods that need no credentials (health checks).
	// Nil: only the gRPC health service is public.
	Public func(fullMethod string) bool
	// Registerer receives the server metrics; nil means none.
	Registerer prometheus.Registerer
	// DefaultTimeout bounds calls that arrive without a deadline; 0 means 30 s.
	DefaultTimeout time.Duration
	// MaxRecvMsgSize bounds a request; 0 means 4 MiB.
	MaxRecvMsgSize int
	// OnAuthFailure, when set, hears of every call that authentication
	// refused (UNAUTHENTICATED) or authorization refused
	// (PERMISSION_DENIED), before the refusal is returned: the audit log of
	// auth failures. ctx carries the request id (RequestID) and, for an
	// authorization refusal, the authenticated principal; err is the
	// refusal. It runs on the call's goroutine, so it must not block: hand
	// the record to a buffer. Other failures (UNAVAILABLE while keys cannot
	// be read, a cancelled call) are not auth failures and are not reported.
	OnAuthFailure func(ctx context.Context, fullMethod string, err error)
}

// Server is a gRPC server with its health service.
type Server struct {
	*grpc.Server
	Health *health.Server
}

// IsHealthMethod reports the gRPC health service's methods, which probes call
// without credentials.
func IsHealthMethod(fullMethod string) bool {
	return len(fullMethod) > len("/grpc.health.v1.Health/") &&
		fullMethod[:len("/grpc.health.v1.Health/")] == "/grpc.health.v1.Health/"
}

// NewServer returns a server with Rapport's interceptor chain. The order,
// outermost first:
//
//  1. request id: taken from x-request-id or made, echoed in the response
//     header, attached to every log line of the call. It runs outside
//     recovery so the panic log line carries the id too; it cannot panic.
//  2. recovery: a panic becomes INTERNAL and a logged stack, never a crash.
//  3. deadline: calls without one get DefaultTimeout, so nothing runs unbounded.
//  4. metrics: Prometheus counts and latency per method and code.
//  5. access log: one line per call with method, code, duration, request id
//     and tenant; never payloads, which can hold personal data.
//  6. error mapping: handler errors become statuses here, once, so the log
//     and the metrics above see the code the client sees; unknown errors are
//     logged with the request id and answered with a generic INTERNAL.
//  7. authentication: the principal from a verified token; health is public.
//     It runs before validation so an anonymous caller learns nothing about
//     the request shapes.
//  8. authorization: the principal's roles against the method's declared
//     rule (Authorize); default deny. Like authentication, before anything
//     looks at the request.
//  9. rate limit: per-tenant and per-principal token buckets; after
//     authorization so forbidden calls spend no budget, before idempotency
//     and validation so a throttled caller costs no further work;
//     RESOURCE_EXHAUSTED with retry-after (HTTP 429 with Retry-After).
//  10. idempotency key: the idempotency-key metadata (the gateway's
//     Idempotency-Key header) fills the request's request_id field.
//  11. validation: protovalidate rules of the request message; violations
//     return INVALID_ARGUMENT with a google.rpc.BadRequest naming each field.
//
// Tracing runs as an OpenTelemetry stats handler around all of it.
func NewServer(cfg ServerConfig) (*Server, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	public := cfg.Public
	if public == nil {
		public = IsHealthMethod
	}
	timeout := cfg.DefaultTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	maxRecv := cfg.MaxRecvMsgSize
	if maxRecv == 0 {
		maxRecv = 4 << 20
	}
	validator, err := protovalidate.New()
	if err != nil {
		return nil, err
	}
	authFunc := cfg.AuthFunc
	if authFunc == nil {
		authFunc = func(context.Context) (context.Context, error) {
			return nil, status.Error(codes.Unauthenticated, "authentication required")
		}
	}
	authorize := cfg.Authorize
	if authorize == nil {
		authorize = func(context.Context, string) error {
			return status.Error(codes.PermissionDenied, "permission denied")
		}
	}
	if hook := cfg.OnAuthFailure; hook != nil {
		authFunc, authorize = reportAuthFailures(authFunc, authorize, hook)
	}
	rateLimit := cfg.RateLimit
	if rateLimit == nil {
		rateLimit = func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(ctx, req)
		}
	}
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return !public(c.FullMethod())
	})

	metrics := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram())
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(metrics); err != nil {
			return nil, err
		}
	}
	accessLog := logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		logger.Log(ctx, slog.Level(lvl), msg, fields...)
	})
	logOpts := []logging.Option{
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(func(ctx context.Context) logging.Fields {
			ci := callInfoFrom(ctx)
			if ci == nil {
				return nil
			}
			return logging.Fields{"request_id", ci.requestID, "tenant", ci}
		}),
	}

	unary := []grpc.UnaryServerInterceptor{
		requestIDUnary,
		recovery.UnaryServerInterceptor(recovery.WithRecoveryHandlerContext(recoverFunc(logger))),
		deadlineUnary(timeout),
		metrics.UnaryServerInterceptor(),
		logging.UnaryServerInterceptor(accessLog, logOpts...),
		errorsUnary(logger),
		selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(authFunc), needsAuth),
		selector.UnaryServerInterceptor(authorizeUnary(authorize), needsAuth),
		selector.UnaryServerInterceptor(rateLimit, needsAuth),
		idempotencyKeyUnary,
		validateUnary(validator),
	}
	stream := []grpc.StreamServerInterceptor{
		recovery.StreamServerInterceptor(recovery.WithRecoveryHandlerContext(recoverFunc(logger))),
		metrics.StreamServerInterceptor(),
		logging.StreamServerInterceptor(accessLog, logOpts...),
		selector.StreamServerInterceptor(auth.StreamServerInterceptor(authFunc), needsAuth),
		selector.StreamServerInterceptor(authorizeStream(authorize), needsAuth),
	}
	srv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler()),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.ChainStreamInterceptor(stream...),
		grpc.MaxRecvMsgSize(maxRecv),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return status.Error(codes.PermissionDenied, "permission denied")
		}),
		// Clients hold one HTTP/2 connection for ever; capping its age makes
		// them reconnect and re-resolve now and then, so load spreads over
		// replicas that were added after the client connected.
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionAge:      5 * time.Minute,
			MaxConnectionAgeGrace: 30 * time.Second,
		}),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	return &Server{Server: srv, Health: hs}, nil
}

type callInfoKey struct{}

// callInfo is what the access log needs to know about a call. The log
// interceptor reads its fields when the call starts, before authentication;
// the tenant is filled in later, so it is logged through slog.LogValuer,
// which is resolved when the line is written.
type callInfo struct {
	requestID string
	tenant    atomic.Pointer[string]
}

func (c *callInfo) LogValue() slog.Value {
	if t := c.tenant.Load(); t != nil {
		return slog.StringValue(*t)
	}
	return slog.StringValue("")
}

func callInfoFrom(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// RequestID returns the call's request id.
func RequestID(ctx context.Context) string {
	if ci := callInfoFrom(ctx); ci != nil {
		return ci.requestID
	}
	return ""
}

// WithRequestID attaches a request id to ctx (for tests and background work).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, callInfoKey{}, &callInfo{requestID: id})
}

// SetLogTenant records the authenticated tenant for the call's access-log
// line; the authentication step calls it.
func SetLogTenant(ctx context.Context, tenant string) {
	if ci := callInfoFrom(ctx); ci != nil {
		ci.tenant.Store(&tenant)
	}
}

func requestIDUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	id := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(RequestIDHeader); len(v) > 0 && requestIDPattern.MatchString(v[0]) {
			id = v[0]
		}
	}
	if id == "" {
		id = uuid.Must(uuid.NewV7()).String()
	}
	_ = grpc.SetHeader(ctx, metadata.Pairs(RequestIDHeader, id))
	return h(WithRequestID(ctx, id), req)
}

// reportAuthFailures wraps authentication and authorization so that their
// refusals reach hook.
func reportAuthFailures(authFunc auth.AuthFunc, authorize func(context.Context, string) error,
	hook func(context.Context, string, error),
) (auth.AuthFunc, func(context.Context, string) error) {
	report := func(ctx context.Context, method string, err error, want codes.Code) {
		if status.Code(err) == want {
			hook(ctx, method, err)
		}
	}
	return func(ctx context.Context) (context.Context, error) {
			out, err := authFunc(ctx)
			if err != nil {
				method, _ := grpc.Method(ctx)
				report(ctx, method, err, codes.Unauthenticated)
			}
			return out, err
		}, func(ctx context.Context, method string) error {
			err := authorize(ctx, method)
			if err != nil {
				report(ctx, method, err, codes.PermissionDenied)
			}
			return err
		}
}

func authorizeUnary(authorize func(context.Context, string) error) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if err := authorize(ctx, info.FullMethod); err != nil {
			return nil, err
		}
		return h(ctx, req)
	}
}

func authorizeStream(authorize func(context.Context, string) error) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if err := authorize(ss.Context(), info.FullMethod); err != nil {
			return err
		}
		return h(srv, ss)
	}
}

func deadlineUnary(d time.Duration) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		return h(ctx, req)
	}
}

func errorsUnary(logger *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		resp, err := h(ctx, req)
		if err == nil {
			return resp, nil
		}
		st, internal := ToStatus(err)
		if internal {
			logger.ErrorContext(ctx, "internal error", "grpc.method", info.FullMethod,
				"request_id", RequestID(ctx), "error", err.Error())
		}
		return nil, st
	}
}

func validateUnary(v protovalidate.Validator) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if m, ok := req.(proto.Message); ok {
			if err := ValidationError(v.Validate(m)); err != nil {
				return nil, err
			}
		}
		return h(ctx, req)
	}
}

func recoverFunc(logger *slog.Logger) recovery.RecoveryHandlerFuncContext {
	return func(ctx context.Context, p any) error {
		logger.ErrorContext(ctx, "panic in handler", "request_id", RequestID(ctx),
			"panic", p, "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	}
}
