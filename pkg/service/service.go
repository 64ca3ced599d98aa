// Package service is what every Rapport service is given and what runs beside
// its API: the dependencies struct the rapport binary fills, and the outbox
// relay that publishes the service's events. It keeps the four services'
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
}

// Relay publishes a service's outbox.
type Relay struct {
	name  string
	relay *outbox.Relay
}

// NewRelay returns the relay of service name.
func NewRelay(name string, deps Deps, cfg Config) (*Relay, error) {
	if deps.Pool == nil {
		return nil, errors.New(name + ": Deps.Pool is required")
	}
	r := &Relay{name: name}
	if deps.JetStream == nil {
		return r, nil
	}
	logger := deps.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r.relay = outbox.NewRelay(deps.Pool, deps.JetStream, outbox.RelayConfig{
		Source:       "rapport/" + name,
		PollInterval: cfg.RelayPollInterval,
		Logger:       logger.With("component", "outbox-relay"),
		Registerer:   deps.Registerer,
	})
	return r, nil
}

// Run publishes until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	if r.relay == nil {
		<-ctx.Done()
		return nil
	}
	if err := r.relay.Run(ctx); err != nil {
		return fmt.Errorf("%s outbox relay: %w", r.name, err)
	}
	return nil
}

// Lag reports the relay's backlog, for readiness and alerts.
func (r *Relay) Lag(ctx context.Context) (pending int64, oldest time.Duration, err error) {
	if r.relay == nil {
		return 0, 0, nil
	}
	return r.relay.Lag(ctx)
}
