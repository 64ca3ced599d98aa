// Package compose builds a running Rapport from a Config: the targets it
// names, on one gRPC server and one HTTP server, with their pools,
// migrations, JetStream streams, relays and the gateway. `rapport serve`
// runs it, and end-to-end tests boot the very same composition on :0.
//
// Start order: listeners (so a :0 port is known), NATS (embedded when no URL
// is set), pools and migrations, services, servers. Stop order is the
// reverse, under one deadline: readiness turns 503, serving continues for
// ShutdownDelay, the HTTP and gRPC servers drain, relays stop, NATS drains,
// pools close.
package compose

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/rapporthq/rapport/pkg/apikey"
	"github.com/rapporthq/rapport/pkg/app"
	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/embedded"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/ratelimit"
	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/gateway"
	"github.com/rapporthq/rapport/services/loyalty"
	"github.com/rapporthq/rapport/services/survey"
	"github.com/rapporthq/rapport/services/ticket"
)

// DevTenantID is the tenant of development tokens minted by `make run` and
// `rapport token` when none is given.
const DevTenantID = "00000000-0000-4000-8000-000000000001"

// runner is what every service offers the composer.
type runner interface {
	Register(grpc.ServiceRegistrar)
	Run(ctx context.Context) error
}

// serviceDef describes a service target.
type serviceDef struct {
	migrations func() fs.FS
	build      func(context.Context, service.Deps, service.Config, Config) (runner, error)
}

var services = map[string]serviceDef{
	customer.Name: {customer.Migrations,
		func(ctx context.Context, d service.Deps, c service.Config, cfg Config) (runner, error) {
			key, err := cfg.CustomerMasterKey()
			if err != nil {
				return nil, err
			}
			return customer.New(ctx, d, customer.Config{Config: c, MasterKey: key, Outreach: cfg.Outreach,
				CareSchedule: cfg.CareSchedule, SegmentRecompute: cfg.SegmentRecompute,
				RecommendationRefresh: cfg.RecommendationRefresh, StreamReplicas: cfg.NATSReplicas})
		}},
	ticket.Name: {ticket.Migrations,
		func(ctx context.Context, d service.Deps, c service.Config, _ Config) (runner, error) {
			return ticket.New(ctx, d, c)
		}},
	loyalty.Name: {loyalty.Migrations,
		func(ctx context.Context, d service.Deps, c service.Config, _ Config) (runner, error) {
			return loyalty.New(ctx, d, c)
		}},
	survey.Name: {survey.Migrations,
		func(ctx context.Context, d service.Deps, c service.Config, _ Config) (runner, error) {
			return survey.New(ctx, d, c)
		}},
}

// named is a background task.
type named struct {
	name string
	run  func(context.Context) error
}

// Options are what tests and main may pass besides Config.
type Options struct {
	// GRPCListener and HTTPListener, when set, are used instead of binding
	// Config's addresses (tests pass 127.0.0.1:0 listeners).
	GRPCListener net.Listener
	HTTPListener net.Listener
	// RelayPollInterval overrides the relays' poll interval (tests).
	RelayPollInterval time.Duration
	// HealthInterval overrides how often readiness is checked (tests).
	HealthInterval time.Duration
	// GatewayInMemory makes the gateway reach this process's gRPC server
	// over an in-memory connection instead of loopback TCP (all mode only).
	// Both pass the same server and interceptors; the benchmark compares them.
	GatewayInMemory bool
}

// System is a built, not yet serving, Rapport process.
type System struct {
	cfg     Config
	logger  *slog.Logger
	grpcLis net.Listener
	httpLis net.Listener
	grpc    *grpcx.Server
	http    *http.Server
	health  *app.Health
	runners map[string]runner
	// background is platform work beside the services (API-key bookkeeping).
	background []named
	closers    []func()
	// memLis serves the gRPC server in memory for the gateway, when asked.
	memLis *bufconn.Listener
	// NATSURL is the JetStream server in use (the embedded one's when
	// Config.NATSURL is empty); empty when no service target runs.
	NATSURL string
}

// GRPCAddr is the bound gRPC address.
func (s *System) GRPCAddr() string { return s.grpcLis.Addr().String() }

// HTTPAddr is the bound HTTP address.
func (s *System) HTTPAddr() string { return s.httpLis.Addr().String() }

// Health exposes readiness (tests and probes).
func (s *System) Health() *app.Health { return s.health }

func (s *System) onClose(f func()) { s.closers = append(s.closers, f) }

// Close releases everything Build acquired, in reverse order. Run calls it;
// call it only when Run is never called.
func (s *System) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
	s.closers = nil
}

// Build connects, migrates and wires cfg's targets. On error everything
// acquired so far is released.
func Build(ctx context.Context, cfg Config, logger *slog.Logger, opts Options) (sys *System, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &System{cfg: cfg, logger: logger, runners: map[string]runner{}}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()

	if s.grpcLis = opts.GRPCListener; s.grpcLis == nil {
		if s.grpcLis, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
			return nil, fmt.Errorf("listen gRPC on %s: %w", cfg.GRPCAddr, err)
		}
	}
	s.onClose(func() { _ = s.grpcLis.Close() })
	if s.httpLis = opts.HTTPListener; s.httpLis == nil {
		if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("listen HTTP on %s: %w", cfg.HTTPAddr, err)
		}
	}
	s.onClose(func() { _ = s.httpLis.Close() })

	stopTracing, err := setupTracing(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.onClose(stopTracing)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	verifier, err := newVerifier(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	// API keys live in the platform schema "access"; every process that
	// serves gRPC verifies them, so every process opens this pool.
	accessPool, err := openAndMigrate(ctx, cfg, apikey.Schema, apikey.Migrations(), logger)
	if err != nil {
		return nil, err
	}
	s.onClose(accessPool.Close)
	keys := apikey.NewVerifier(accessPool, apikey.VerifierConfig{Logger: logger.With("component", "apikey")})
	s.background = append(s.background, named{"apikey-verifier", keys.Run})
	keyWork, err := service.NewRelay(apikey.Schema, service.Deps{Pool: accessPool, Logger: logger.With("component", "access")}, service.Config{})
	if err != nil {
		return nil, err
	}
	s.background = append(s.background, named{"access-maintenance", keyWork.Run})
	// Refused calls (no or bad credentials, a role without the method) are
	// recorded in access.auth_failures, off the call's path.
	authFailures := apikey.NewAuthFailureLog(accessPool, apikey.AuthFailureLogConfig{Logger: logger.With("component", "auth-failures")})
	s.background = append(s.background, named{"auth-failures", authFailures.Run})
	authFunc := apikey.AuthFunc(verifier.AuthFunc(), keys)
	policy := &authz.Policy{}
	limiter := ratelimit.New(cfg.RateLimit.limiterConfig())
	if err := reg.Register(limiter); err != nil {
		return nil, fmt.Errorf("rate limiter metrics: %w", err)
	}
	s.grpc, err = grpcx.NewServer(grpcx.ServerConfig{
		Logger:        logger.With("component", "grpc"),
		Registerer:    reg,
		Authorize:     policy.Authorize,
		RateLimit:     limiter.UnaryServerInterceptor(ratelimit.KeyFromPrincipal),
		OnAuthFailure: authFailures.Record,
		AuthFunc: func(ctx context.Context) (context.Context, error) {
			ctx, err := authFunc(ctx)
			if err == nil {
				if p, ok := authn.FromContext(ctx); ok {
					grpcx.SetLogTenant(ctx, p.TenantID)
				}
			}
			return ctx, err
		},
	})
	if err != nil {
		return nil, fmt.Errorf("grpc server: %w", err)
	}
	hc := app.HealthConfig{Interval: opts.HealthInterval, Logger: logger.With("component", "health")}
	s.health = app.NewHealth(s.grpc.Health, hc)
	s.health.AddCheck("postgres:"+apikey.Schema, func(ctx context.Context) error { return accessPool.Ping(ctx) })
	if cfg.Runs(gateway.Name) {
		// API keys are managed through the gateway's process.
		apikey.NewServer(accessPool, apikey.ServerConfig{Logger: logger.With("component", "access")}).Register(s.grpc)
	}

	// Services: NATS first (their relays publish to it), then a pool per
	// service schema, migrated, then the service itself.
	var js jetstream.JetStream
	var svcNames []string
	for _, t := range cfg.TargetList() {
		if _, ok := services[t]; ok {
			svcNames = append(svcNames, t)
		}
	}
	if len(svcNames) > 0 {
		nc, jsc, err := s.connectNATS(ctx)
		if err != nil {
			return nil, err
		}
		js = jsc
		s.health.AddCheck("nats", func(context.Context) error {
			if st := nc.Status(); st != nats.CONNECTED {
				return fmt.Errorf("nats %s", st)
			}
			return nil
		})
	}
	for _, name := range svcNames {
		def := services[name]
		pool, err := openAndMigrate(ctx, cfg, name, def.migrations(), logger)
		if err != nil {
			return nil, err
		}
		s.onClose(pool.Close)
		s.health.AddCheck("postgres:"+name, func(ctx context.Context) error { return pool.Ping(ctx) })
		if _, err := natsx.EnsureStream(ctx, js, name, cfg.NATSReplicas); err != nil {
			return nil, fmt.Errorf("stream for %s: %w", name, err)
		}
		r, err := def.build(ctx, service.Deps{
			Pool: pool, JetStream: js, Logger: logger.With("service", name), Registerer: reg,
		}, service.Config{RelayPollInterval: opts.RelayPollInterval}, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s.New: %w", name, err)
		}
		r.Register(s.grpc)
		s.runners[name] = r
	}
	// Every registered API reports readiness under its own name too.
	for name := range s.grpc.GetServiceInfo() {
		if name != "grpc.health.v1.Health" {
			s.health.FollowReadiness(name)
		}
	}

	mux := http.NewServeMux()
	mux.Handle("GET /healthz", s.health.LiveHandler())
	mux.Handle("GET /readyz", s.health.ReadyHandler())
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if cfg.Runs(gateway.Name) {
		if (opts.GatewayInMemory || cfg.GatewayInMemory) && cfg.Upstream.Customer == "" {
			s.memLis = bufconn.Listen(1 << 20)
		}
		gw, err := s.buildGateway(ctx)
		if err != nil {
			return nil, err
		}
		mux.Handle("/", gw)
	}
	s.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	return s, nil
}

func newVerifier(ctx context.Context, cfg Config, logger *slog.Logger) (*authn.Verifier, error) {
	ac := authn.Config{Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience,
		JWKSFile: cfg.Auth.JWKSFile, JWKSURL: cfg.Auth.JWKSURL, Logger: logger.With("component", "authn")}
	if cfg.Auth.Dev {
		key, err := DevKey(cfg)
		if err != nil {
			return nil, err
		}
		ac.JWKSFile = key.JWKSPath()
	}
	v, err := authn.NewVerifier(ctx, ac)
	if err != nil {
		return nil, fmt.Errorf("authn.NewVerifier: %w", err)
	}
	return v, nil
}

// DevKey loads (or creates) the development signing key under DataDir.
func DevKey(cfg Config) (*authn.DevKey, error) {
	k, err := authn.LoadOrCreateDevKey(filepath.Join(cfg.DataDir, "dev-keys"))
	if err != nil {
		return nil, fmt.Errorf("development key: %w", err)
	}
	return k, nil
}

func (s *System) connectNATS(ctx context.Context) (*nats.Conn, jetstream.JetStream, error) {
	url := s.cfg.NATSURL
	if url == "" {
		srv, err := embedded.Start(embedded.Config{
			StoreDir: filepath.Join(s.cfg.DataDir, "nats"),
			Logger:   s.logger.With("component", "nats-server"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("embedded NATS: %w", err)
		}
		s.onClose(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = embedded.Shutdown(ctx, srv)
		})
		url = clientURL(srv)
	}
	s.NATSURL = url
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	nc, js, err := natsx.Connect(cctx, natsx.Config{URL: url, Name: "rapport", Logger: s.logger.With("component", "nats")})
	if err != nil {
		return nil, nil, fmt.Errorf("connect NATS: %w", err)
	}
	s.onClose(func() { _ = nc.Drain() })
	return nc, js, nil
}

func clientURL(srv *server.Server) string { return srv.ClientURL() }

func openAndMigrate(ctx context.Context, cfg Config, schema string, migrations fs.FS, logger *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := pgdb.Open(ctx, pgdb.Config{URL: cfg.DatabaseURL, Schema: schema, MaxConns: cfg.DatabaseMaxConns})
	if err != nil {
		return nil, fmt.Errorf("%s database: %w", schema, err)
	}
	if err := pgdb.Migrate(ctx, pool, migrations, logger); err != nil {
		pool.Close()
		return nil, fmt.Errorf("%s migrations: %w", schema, err)
	}
	return pool, nil
}

// Migrate applies the migrations of the platform's access schema and of
// cfg's service targets, and returns.
func Migrate(ctx context.Context, cfg Config, logger *slog.Logger) error {
	pool, err := openAndMigrate(ctx, cfg, apikey.Schema, apikey.Migrations(), logger)
	if err != nil {
		return err
	}
	pool.Close()
	for _, t := range cfg.TargetList() {
		def, ok := services[t]
		if !ok {
			continue
		}
		pool, err := openAndMigrate(ctx, cfg, t, def.migrations(), logger)
		if err != nil {
			return err
		}
		pool.Close()
	}
	return nil
}

func (s *System) buildGateway(ctx context.Context) (http.Handler, error) {
	addr := s.cfg.Upstream.Customer
	if addr == "" {
		if !s.cfg.Runs(customer.Name) {
			return nil, errors.New("gateway: RAPPORT_UPSTREAM_CUSTOMER is required when the customer target runs elsewhere")
		}
		// All mode: dial our own gRPC server over loopback, like any client,
		// so REST calls pass the same interceptors as gRPC calls.
		addr = s.GRPCAddr()
	}
	dialOpts := []grpc.DialOption{}
	if s.memLis != nil {
		addr = "passthrough:///in-memory"
		dialOpts = append(dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return s.memLis.DialContext(ctx)
		}))
	}
	conn, err := grpc.NewClient(addr, append(dialOpts,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Spread calls over every address the name resolves to (a headless
		// Service in Kubernetes), not one pod per gateway.
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))...)
	if err != nil {
		return nil, fmt.Errorf("gateway: dial %s: %w", addr, err)
	}
	s.onClose(func() { _ = conn.Close() })
	// AccessService is on this process's own server (the gateway target
	// registers it), so in all mode it shares the connection; otherwise the
	// gateway dials itself.
	access := conn
	if s.cfg.Upstream.Customer != "" {
		if access, err = s.dialSelf(); err != nil {
			return nil, err
		}
	}
	gw, err := gateway.New(ctx, gateway.Deps{Customer: conn, Access: access, Logger: s.logger.With("component", "gateway")},
		gateway.Config{CORSAllowedOrigins: s.cfg.CORSAllowedOrigins})
	if err != nil {
		return nil, err
	}
	return gw, nil
}

// dialSelf connects to this process's own gRPC server over loopback. It is
// called only when the customer target runs elsewhere, and then there is no
// in-memory listener (Build makes one only for a gateway without an
// upstream).
func (s *System) dialSelf() (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()))
	if err != nil {
		return nil, fmt.Errorf("gateway: dial own server: %w", err)
	}
	s.onClose(func() { _ = conn.Close() })
	return conn, nil
}

// Run serves until ctx ends or a part fails, then stops everything in order
// and releases it. It returns the first failure, or nil after a clean stop.
func (s *System) Run(ctx context.Context) error {
	defer s.Close()
	failed := make(chan error, len(s.runners)+len(s.background)+4)
	var servers, workers sync.WaitGroup
	serveCtx, stopServing := context.WithCancel(context.WithoutCancel(ctx))
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServing()
	defer stopWork()
	start := func(wg *sync.WaitGroup, name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				failed <- fmt.Errorf("%s: %w", name, err)
			}
		})
	}

	start(&workers, "health", func() error { return s.health.Run(workCtx) })
	for name, r := range s.runners {
		start(&workers, name, func() error { return r.Run(workCtx) })
	}
	for _, bg := range s.background {
		start(&workers, bg.name, func() error { return bg.run(workCtx) })
	}
	grace := s.cfg.ShutdownGrace
	start(&servers, "grpc", func() error { return app.ServeGRPC(serveCtx, s.grpc.Server, s.grpcLis, grace) })
	if s.memLis != nil {
		// The same server on a second listener; GracefulStop above stops it too.
		start(&servers, "grpc-in-memory", func() error {
			if err := s.grpc.Serve(s.memLis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
				return err
			}
			return nil
		})
	}
	start(&servers, "http", func() error { return app.ServeHTTP(serveCtx, s.http, s.httpLis, grace) })
	s.logger.Info("rapport serving", "targets", s.cfg.TargetList(), "grpc", s.GRPCAddr(), "http", s.HTTPAddr())

	var first error
	select {
	case <-ctx.Done():
	case first = <-failed:
		s.logger.Error("stopping: a part failed", "error", first.Error())
	}
	s.health.Shutdown()
	if first == nil && s.cfg.ShutdownDelay > 0 {
		select {
		case <-time.After(s.cfg.ShutdownDelay):
		case first = <-failed:
		}
	}
	stopServing()
	servers.Wait()
	stopWork()
	done := make(chan struct{})
	go func() { workers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		s.logger.Error("workers did not stop within the grace period", "grace", grace)
	}
	errs := []error{first}
	for {
		select {
		case err := <-failed:
			errs = append(errs, err)
			continue
		default:
		}
		break
	}
	s.logger.Info("rapport stopped")
	return errors.Join(errs...)
}
