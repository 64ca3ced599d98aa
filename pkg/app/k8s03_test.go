package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rapporthq/rapport/pkg/app"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// K8S-03: Postgres is cut by Toxiproxy, then restored. Readiness ("") must
// follow it within two check intervals each way, /readyz must say which check
// fails, and liveness must stay SERVING the whole time: a dependency blip makes
// the pod unready, it never gets it restarted.
func TestK8S03ReadinessFollowsPostgres(t *testing.T) {
	t.Parallel()

	const (
		interval = 200 * time.Millisecond
		// The check must give up well inside an interval, or a hanging
		// connection (the timeout toxic) would stretch the rounds.
		checkTimeout = 150 * time.Millisecond
		// Two periods, as K8S-03 demands, plus slack for the race detector
		// and a loaded machine.
		bound = 2*interval + 300*time.Millisecond
	)

	faults := []struct {
		name    string
		cut     func(t testing.TB, p *toxiproxy.Proxy)
		restore func(t testing.TB, p *toxiproxy.Proxy)
	}{
		{
			// The proxy stops listening and closes every open connection:
			// Postgres is gone, connections are refused.
			name:    "ProxyDisabled",
			cut:     func(_ testing.TB, p *toxiproxy.Proxy) { p.Stop() },
			restore: func(t testing.TB, p *toxiproxy.Proxy) { require.NoError(t, p.Start()) },
		},
		{
			// Connections stay open but Postgres never answers: the check
			// must time out rather than hang readiness.
			name: "TimeoutToxic",
			cut: func(t testing.TB, p *toxiproxy.Proxy) {
				addToxic(t, p, `{"name":"cut","type":"timeout","stream":"downstream","attributes":{"timeout":0}}`)
			},
			restore: func(t testing.TB, p *toxiproxy.Proxy) {
				require.NoError(t, p.Toxics.RemoveToxic(context.Background(), "cut"))
			},
		},
		{
			// Every answer from Postgres arrives as a TCP reset.
			name: "ResetPeerToxic",
			cut: func(t testing.TB, p *toxiproxy.Proxy) {
				addToxic(t, p, `{"name":"cut","type":"reset_peer","stream":"downstream","attributes":{"timeout":0}}`)
			},
			restore: func(t testing.TB, p *toxiproxy.Proxy) {
				require.NoError(t, p.Toxics.RemoveToxic(context.Background(), "cut"))
			},
		},
	}

	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()

			proxy := startPostgresProxy(t)
			pool := poolVia(t, proxy.Listen)

			hs := health.NewServer()
			h := app.NewHealth(hs, app.HealthConfig{Interval: interval, Timeout: checkTimeout})
			h.AddCheck("postgres", pool.Ping)
			runHealth(t, h)

			client := serveHealthGRPC(t, hs)
			base := serveHealthHTTP(t, h)

			// Liveness is probed all along, as the kubelet would; each probe
			// also samples readiness, so the count shows it ran during the cut.
			probes := probeLiveness(t, client)

			require.Eventually(t, func() bool {
				return servingStatus(ctx, client, "") == healthpb.HealthCheckResponse_SERVING
			}, 10*time.Second, 10*time.Millisecond, "readiness never became SERVING with Postgres up")
			code, _ := get(t, base+"/readyz")
			require.Equal(t, http.StatusOK, code)

			cutAt := time.Now()
			probes.cut.Store(true)
			f.cut(t, proxy)
			require.Eventually(t, func() bool {
				return servingStatus(ctx, client, "") == healthpb.HealthCheckResponse_NOT_SERVING
			}, bound, 5*time.Millisecond, "readiness did not turn NOT_SERVING within 2 intervals of the cut")
			notReadyAfter := time.Since(cutAt)

			code, body := get(t, base+"/readyz")
			require.Equal(t, http.StatusServiceUnavailable, code, body)
			var ready struct {
				Status  string   `json:"status"`
				Failing []string `json:"failing"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &ready), body)
			require.Equal(t, "not ready", ready.Status)
			require.Equal(t, []string{"postgres"}, ready.Failing)
			require.NotContains(t, body, "127.0.0.1", "/readyz must name checks, not echo their errors")
			code, _ = get(t, base+"/healthz")
			require.Equal(t, http.StatusOK, code, "/healthz must not depend on Postgres")
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, client, app.LivenessService))

			// Stay cut for a few more rounds, so liveness is probed while
			// the checks keep failing.
			require.Eventually(t, func() bool { return probes.duringOutage() >= 10 }, 5*time.Second, 10*time.Millisecond)

			restoredAt := time.Now()
			f.restore(t, proxy)
			require.Eventually(t, func() bool {
				return servingStatus(ctx, client, "") == healthpb.HealthCheckResponse_SERVING
			}, bound, 5*time.Millisecond, "readiness did not return to SERVING within 2 intervals of the restore")
			readyAfter := time.Since(restoredAt)
			code, body = get(t, base+"/readyz")
			require.Equal(t, http.StatusOK, code, body)

			total, outage, failures := probes.stop()
			require.Zero(t, failures, "liveness must be SERVING throughout")
			require.Positive(t, outage)
			t.Logf("chaos: test=K8S-03/%s faults=1 interval=%s not_ready_after=%s ready_after=%s liveness_probes=%d liveness_probes_during_outage=%d liveness_failures=%d",
				f.name, interval, notReadyAfter.Round(time.Millisecond), readyAfter.Round(time.Millisecond), total, outage, failures)
		})
	}
}

// startPostgresProxy runs an in-process Toxiproxy in front of the test
// Postgres on a 127.0.0.1:0 listener; the proxy's Listen is its bound address.
func startPostgresProxy(t testing.TB) *toxiproxy.Proxy {
	t.Helper()
	u, err := url.Parse(pgdbtest.AdminURL())
	require.NoError(t, err)
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	proxy := toxiproxy.NewProxy(srv, "postgres", "127.0.0.1:0", u.Host)
	require.NoError(t, proxy.Start())
	t.Cleanup(proxy.Stop)
	return proxy
}

func addToxic(t testing.TB, p *toxiproxy.Proxy, spec string) {
	t.Helper()
	_, err := p.Toxics.AddToxicJson(strings.NewReader(spec))
	require.NoError(t, err)
}

// poolVia opens a service-shaped pool on the test server's maintenance
// database, dialling through addr.
func poolVia(t testing.TB, addr string) *pgxpool.Pool {
	t.Helper()
	u, err := url.Parse(pgdbtest.AdminURL())
	require.NoError(t, err)
	u.Host = addr
	pool, err := pgdb.Open(context.Background(), pgdb.Config{URL: u.String(), Schema: "k8s03"})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// runHealth runs h's check loop until the test ends.
func runHealth(t testing.TB, h *app.Health) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// serveHealthGRPC serves hs with app.ServeGRPC on a 127.0.0.1:0 listener and
// returns a health client dialled to it.
func serveHealthGRPC(t testing.TB, hs *health.Server) healthpb.HealthClient {
	t.Helper()
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	addr := serveGRPC(t, srv, 5*time.Second)
	return healthpb.NewHealthClient(dial(t, addr))
}

// serveGRPC serves srv on a bound 127.0.0.1:0 listener until the test ends.
func serveGRPC(t testing.TB, srv *grpc.Server, grace time.Duration) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- app.ServeGRPC(ctx, srv, lis, grace) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return lis.Addr().String()
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// serveHealthHTTP serves /healthz and /readyz with app.ServeHTTP on a
// 127.0.0.1:0 listener and returns the base URL.
func serveHealthHTTP(t testing.TB, h *app.Health) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle("/healthz", h.LiveHandler())
	mux.Handle("/readyz", h.ReadyHandler())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { done <- app.ServeHTTP(ctx, srv, lis, 5*time.Second) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return "http://" + lis.Addr().String()
}

func get(t testing.TB, u string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// servingStatus asks the health service for service's status; an error
// counts as UNKNOWN.
func servingStatus(ctx context.Context, c healthpb.HealthClient, service string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	resp, err := c.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

type livenessProbes struct {
	stopc chan struct{}
	done  chan struct{}
	cut   atomic.Bool // set while the fault is injected

	mu       sync.Mutex
	total    int
	outage   int // probes taken during the cut while readiness was NOT_SERVING
	failures int // liveness probes that were not SERVING
}

// probeLiveness polls liveness (and samples readiness) every 10 ms until
// stop, like a kubelet with a very short period.
func probeLiveness(t testing.TB, c healthpb.HealthClient) *livenessProbes {
	t.Helper()
	p := &livenessProbes{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-p.stopc:
				return
			case <-tick.C:
			}
			live := servingStatus(context.Background(), c, app.LivenessService)
			ready := servingStatus(context.Background(), c, "")
			p.mu.Lock()
			p.total++
			if live != healthpb.HealthCheckResponse_SERVING {
				p.failures++
			}
			if p.cut.Load() && ready == healthpb.HealthCheckResponse_NOT_SERVING {
				p.outage++
			}
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *livenessProbes) duringOutage() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.outage
}

// stop ends the probing (idempotently) and returns the counts.
func (p *livenessProbes) stop() (total, outage, failures int) {
	select {
	case <-p.stopc:
	default:
		close(p.stopc)
	}
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total, p.outage, p.failures
}
