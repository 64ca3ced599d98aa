package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/rapporthq/rapport/pkg/app"
)

const followerService = "rapport.customer.v1.CustomerService"

type healthBundle struct {
	health *app.Health
	client healthpb.HealthClient
	base   string // /healthz and /readyz server
}

// setupHealth serves a Health over real gRPC and HTTP servers; checks are
// only run by CheckNow, so each step is deterministic.
func setupHealth(t *testing.T, cfg app.HealthConfig) *healthBundle {
	t.Helper()
	hs := health.NewServer()
	h := app.NewHealth(hs, cfg)
	return &healthBundle{health: h, client: serveHealthGRPC(t, hs), base: serveHealthHTTP(t, h)}
}

// switchable is a check whose result the test sets.
type switchable struct{ err atomic.Pointer[error] }

func (s *switchable) fail(err error) { s.err.Store(&err) }
func (s *switchable) pass()          { s.err.Store(nil) }
func (s *switchable) check(context.Context) error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

type readyzBody struct {
	Status   string   `json:"status"`
	Failing  []string `json:"failing"`
	Stopping bool     `json:"stopping"`
}

func readyz(t *testing.T, base string) (int, readyzBody, string) {
	t.Helper()
	code, body := get(t, base+"/readyz")
	var rb readyzBody
	require.NoError(t, json.Unmarshal([]byte(body), &rb), body)
	return code, rb, body
}

func TestHealth(t *testing.T) {
	t.Parallel()

	t.Run("StartsNotReadyButLive", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{})
		ctx := t.Context()
		b.health.AddCheck("postgres", func(context.Context) error { return nil })

		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, ""),
			"readiness must wait for the first round of checks")
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, app.LivenessService))
		require.False(t, b.health.Ready())
		code, _ := get(t, b.base+"/healthz")
		require.Equal(t, http.StatusOK, code)
		code, _, _ = readyz(t, b.base)
		require.Equal(t, http.StatusServiceUnavailable, code)
	})

	t.Run("ReadinessAndFollowersTrackTheChecks", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{})
		ctx := t.Context()
		var pg switchable
		b.health.AddCheck("postgres", pg.check)
		b.health.FollowReadiness(followerService)
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, followerService))

		b.health.CheckNow(ctx)
		require.True(t, b.health.Ready())
		for _, svc := range []string{"", followerService, app.LivenessService} {
			require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, svc), svc)
		}
		code, rb, _ := readyz(t, b.base)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "ready", rb.Status)

		pg.fail(errors.New("connection refused"))
		b.health.CheckNow(ctx)
		require.False(t, b.health.Ready())
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, ""))
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, followerService))
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, app.LivenessService),
			"liveness must never follow a dependency")

		pg.pass()
		b.health.CheckNow(ctx)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, ""))
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, followerService))
	})

	t.Run("ReadyzNamesFailingChecksNotTheirErrors", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{})
		ctx := t.Context()
		b.health.AddCheck("postgres", func(context.Context) error {
			return errors.New("dial tcp 10.9.8.7:5432: connect: connection refused")
		})
		b.health.AddCheck("nats", func(context.Context) error { return errors.New("nats://10.9.8.7:4222 gone") })
		b.health.AddCheck("migrations", func(context.Context) error { return nil })
		b.health.CheckNow(ctx)

		code, rb, body := readyz(t, b.base)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, readyzBody{Status: "not ready", Failing: []string{"nats", "postgres"}}, rb)
		require.NotContains(t, body, "10.9.8.7", "/readyz must not echo check errors")
		code, _ = get(t, b.base+"/healthz")
		require.Equal(t, http.StatusOK, code)
	})

	t.Run("ShutdownIsForGoodAndKeepsLiveness", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{})
		ctx := t.Context()
		b.health.AddCheck("postgres", func(context.Context) error { return nil })
		b.health.FollowReadiness(followerService)
		b.health.CheckNow(ctx)

		// Watch readiness as a load balancer would; the first message is
		// the current status.
		watch, err := b.client.Watch(ctx, &healthpb.HealthCheckRequest{Service: ""})
		require.NoError(t, err)
		first, err := watch.Recv()
		require.NoError(t, err)
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, first.GetStatus())

		next := make(chan healthpb.HealthCheckResponse_ServingStatus, 1)
		go func() {
			resp, err := watch.Recv()
			if err != nil {
				close(next)
				return
			}
			next <- resp.GetStatus()
		}()
		start := time.Now()
		b.health.Shutdown()
		select {
		case st, ok := <-next:
			require.True(t, ok, "watch ended before reporting NOT_SERVING")
			require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, st)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "no NOT_SERVING after Shutdown")
		}
		// K8S-02: NOT_SERVING within 100 ms of SIGTERM.
		require.Less(t, time.Since(start), 100*time.Millisecond)

		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, followerService))
		require.Equal(t, healthpb.HealthCheckResponse_SERVING, servingStatus(ctx, b.client, app.LivenessService))
		code, rb, _ := readyz(t, b.base)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, readyzBody{Status: "not ready", Failing: []string{}, Stopping: true}, rb)
		code, _ = get(t, b.base+"/healthz")
		require.Equal(t, http.StatusOK, code)

		// Passing checks after Shutdown must not bring readiness back.
		b.health.CheckNow(ctx)
		require.False(t, b.health.Ready())
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, ""))
		require.Equal(t, healthpb.HealthCheckResponse_NOT_SERVING, servingStatus(ctx, b.client, followerService))
	})

	t.Run("TimeoutBoundsAHangingCheck", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{Timeout: 50 * time.Millisecond})
		ctx := t.Context()
		b.health.AddCheck("nats", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		done := make(chan struct{})
		go func() {
			b.health.CheckNow(ctx)
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			require.FailNow(t, "CheckNow hung on a check that waits for its context")
		}
		code, rb, _ := readyz(t, b.base)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Equal(t, []string{"nats"}, rb.Failing)
	})

	t.Run("RunRechecksOnTheIntervalUntilCancelled", func(t *testing.T) {
		t.Parallel()
		b := setupHealth(t, app.HealthConfig{Interval: 20 * time.Millisecond})
		var calls atomic.Int32
		var pg switchable
		b.health.AddCheck("postgres", func(ctx context.Context) error {
			calls.Add(1)
			return pg.check(ctx)
		})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- b.health.Run(ctx) }()

		require.Eventually(t, func() bool {
			return servingStatus(ctx, b.client, "") == healthpb.HealthCheckResponse_SERVING
		}, 5*time.Second, 5*time.Millisecond)
		pg.fail(errors.New("down"))
		require.Eventually(t, func() bool {
			return servingStatus(ctx, b.client, "") == healthpb.HealthCheckResponse_NOT_SERVING
		}, 5*time.Second, 5*time.Millisecond, "Run did not recheck")
		require.GreaterOrEqual(t, calls.Load(), int32(2))

		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			require.FailNow(t, "Run did not return after its context ended")
		}
	})
}
