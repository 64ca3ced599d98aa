// Package service is what every Rapport service is given and what runs beside
// its API: the dependencies struct the rapport binary fills, and the
// background work every service has (the outbox relay that publishes its
// events, the reaper of expired idempotency keys). It keeps the four services'
// public surfaces one shape: New(ctx, Deps, Config), Register, Run.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/outbox"
)

// Deps are what a service is given; it owns none of them.
type Deps struct {
	Pool       *pgxpool.Pool       // search_path = the service's schema
	JetStream  jetstream.JetStream // nil: events stay in the outbox (tests of the API alone)
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time // nil: time.Now
}

// Config tunes what every service runs; zero values are defaults.
type Config struct {
	RelayPollInterval time.Duration
	// IdempotencyKeyTTL is how long request ids are remembered; 0 means
	// 48 h, and less than 24 h is raised to 24 h (the API promises a day).
	IdempotencyKeyTTL time.Duration
}

// Relay is a service's background work: it publishes the outbox and reaps
// expired idempotency keys.
type Relay struct {
	name   string
	pool   *pgxpool.Pool
	ttl    time.Duration
	now    func() time.Time
	logger *slog.Logger
	relay  *outbox.Relay
}

// NewRelay returns the background work of service name.
func NewRelay(name string, deps Deps, cfg Config) (*Relay, error) {
	if deps.Pool == nil {
		return nil, errors.New(name + ": Deps.Pool is required")
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ttl := cfg.IdempotencyKeyTTL
	switch {
	case ttl == 0:
		ttl = 48 * time.Hour
	case ttl < 24*time.Hour:
		ttl = 24 * time.Hour
	}
	now := deps.Now
	if now == nil {
		now = time.Now
	}
	r := &Relay{name: name, pool: deps.Pool, ttl: ttl, now: now, logger: logger}
	if deps.JetStream == nil {
		return r, nil
	}
	r.relay = outbox.NewRelay(deps.Pool, deps.JetStream, outbox.RelayConfig{
		Source:       "rapport/" + name,
		PollInterval: cfg.RelayPollInterval,
		Logger:       logger,
		Registerer:   deps.Registerer,
	})
	return r, nil
}

// reapInterval paces the idempotency-key reaper; each replica reaps, which
// is harmless (a DELETE of the same expired rows).
const reapInterval = time.Hour

// Run publishes and reaps until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		r.reapLoop(ctx)
	}()
	defer func() { <-reaped }()
	if r.relay == nil {
		<-ctx.Done()
		return nil
	}
	if err := r.relay.Run(ctx); err != nil {
		return fmt.Errorf("%s outbox relay: %w", r.name, err)
	}
	return nil
}

func (r *Relay) reapLoop(ctx context.Context) {
	t := time.NewTicker(reapInterval)
	defer t.Stop()
	for {
		if n, err := idem.Reap(ctx, r.pool, r.now().Add(-r.ttl)); err != nil {
			if ctx.Err() == nil {
				r.logger.Warn("reap idempotency keys", "error", err.Error())
			}
		} else if n > 0 {
			r.logger.Info("reaped idempotency keys", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Lag reports the relay's backlog, for readiness and alerts.
func (r *Relay) Lag(ctx context.Context) (pending int64, oldest time.Duration, err error) {
	if r.relay == nil {
		return 0, 0, nil
	}
	return r.relay.Lag(ctx)
}
