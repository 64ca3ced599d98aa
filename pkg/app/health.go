// Package app owns a process's lifecycle: readiness checks and the health
// endpoints built on them (/healthz, /readyz, the gRPC health service), and
// serving gRPC and HTTP listeners until the context ends, then stopping them
// gracefully under a deadline.
//
// Liveness never depends on Postgres or NATS: a dependency blip must make the
// process unready, not get it restarted.
package app

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// LivenessService is the gRPC health service name Kubernetes' liveness probe
// asks for; it reflects the process only. The empty name is readiness.
const LivenessService = "liveness"

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Health tracks readiness from a set of named checks, run on an interval, and
// publishes the result to a gRPC health server and the HTTP handlers.
type Health struct {
	grpc     *health.Server
	interval time.Duration
	timeout  time.Duration
	logger   *slog.Logger

	mu       sync.Mutex
	checks   map[string]Check
	services []string // gRPC service names that follow readiness
	failing  map[string]string
	ready    bool
	stopping bool
}

// HealthConfig configures NewHealth; zero values are defaults.
type HealthConfig struct {
	Interval time.Duration // how often checks run; 0 means 2 s
	Timeout  time.Duration // per check; 0 means 1 s
	Logger   *slog.Logger
}

// NewHealth returns a Health that publishes to hs. Until the first round of
// checks passes, everything but liveness is NOT_SERVING.
func NewHealth(hs *health.Server, cfg HealthConfig) *Health {
	if cfg.Interval == 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Health{grpc: hs, interval: cfg.Interval, timeout: cfg.Timeout, logger: cfg.Logger,
		checks: map[string]Check{}, failing: map[string]string{}}
	if hs != nil {
		hs.SetServingStatus(LivenessService, healthpb.HealthCheckResponse_SERVING)
		hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	return h
}

// AddCheck registers a readiness check under a name shown in /readyz.
func (h *Health) AddCheck(name string, c Check) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.checks[name] = c
}

// FollowReadiness makes a gRPC service's health status follow readiness.
func (h *Health) FollowReadiness(service string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.services = append(h.services, service)
	h.publishLocked()
}

// Run checks readiness every interval until ctx ends.
func (h *Health) Run(ctx context.Context) error {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.CheckNow(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// CheckNow runs every check once and publishes the result.
func (h *Health) CheckNow(ctx context.Context) {
	h.mu.Lock()
	checks := make(map[string]Check, len(h.checks))
	for n, c := range h.checks {
		checks[n] = c
	}
	h.mu.Unlock()

	failing := map[string]string{}
	var wg sync.WaitGroup
	var fmu sync.Mutex
	for name, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, h.timeout)
			defer cancel()
			if err := c(cctx); err != nil {
				fmu.Lock()
				failing[name] = err.Error()
				fmu.Unlock()
			}
		})
	}
	wg.Wait()

	h.mu.Lock()
	defer h.mu.Unlock()
	for name := range failing {
		if _, was := h.failing[name]; !was {
			h.logger.Warn("readiness check failing", "check", name)
		}
	}
	for name := range h.failing {
		if _, is := failing[name]; !is {
			h.logger.Info("readiness check recovered", "check", name)
		}
	}
	h.failing = failing
	h.ready = len(failing) == 0
	h.publishLocked()
}

// Shutdown marks the process not ready for good: load balancers stop sending
// work while in-flight calls finish. Liveness stays SERVING.
func (h *Health) Shutdown() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stopping = true
	h.publishLocked()
}

// Ready reports the last published readiness.
func (h *Health) Ready() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready && !h.stopping
}

func (h *Health) publishLocked() {
	if h.grpc == nil {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if h.ready && !h.stopping {
		st = healthpb.HealthCheckResponse_SERVING
	}
	h.grpc.SetServingStatus("", st)
	for _, s := range h.services {
		h.grpc.SetServingStatus(s, st)
	}
}

// LiveHandler answers /healthz: 200 while the process can answer at all.
func (h *Health) LiveHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
}

// ReadyHandler answers /readyz: 200 when every check passed, else 503 with
// the names of the failing checks (not their errors, which can name hosts).
func (h *Health) ReadyHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		ready := h.ready && !h.stopping
		failing := make([]string, 0, len(h.failing))
		for n := range h.failing {
			failing = append(failing, n)
		}
		stopping := h.stopping
		h.mu.Unlock()
		sort.Strings(failing)
		body := map[string]any{"status": "ready"}
		code := http.StatusOK
		if !ready {
			code = http.StatusServiceUnavailable
			body = map[string]any{"status": "not ready", "failing": failing, "stopping": stopping}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
}
