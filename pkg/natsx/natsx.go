// Package natsx owns how Rapport talks to NATS JetStream: the client
// connection and its reconnect policy, the subject and stream naming scheme,
// the stream and consumer configurations required by RELIABILITY.md §1.3, the
// CloudEvents header names, and the checks (NATS-05) that a server, stream or
// consumer obeys those rules.
//
// It must not import nats-server (that adds about 15 MB to every binary; the
// in-process server lives in natsx/embedded), must not publish or consume on
// anyone's behalf (the outbox relay and the consumers own that), and keeps no
// package state: every connection is created by Connect and owned by its
// caller.
package natsx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinServerVersion is the oldest nats-server Rapport accepts: 2.10.23 fixes
// nats-server #6888, a stream lost after `kill -9`.
const MinServerVersion = "2.10.23"

// ErrServerTooOld is returned by CheckServer (and so by Connect) for a server
// older than MinServerVersion.
var ErrServerTooOld = errors.New("nats server older than " + MinServerVersion)

// Defaults for the zero Config.
const (
	DefaultName             = "rapport"
	DefaultReconnectWaitMax = 10 * time.Second
	DefaultDrainTimeout     = 30 * time.Second

	// reconnectWaitMin is the first reconnect delay. Short, so a restarted
	// broker is found again quickly; the backoff doubles from here.
	reconnectWaitMin = 250 * time.Millisecond
	// A dead TCP peer (a partition, a vanished pod) is only noticed by
	// missing PONGs. The client default (2 min × 2) leaves a consumer stuck
	// for minutes; 10 s × 3 notices it within about 40 s.
	pingInterval = 10 * time.Second
	maxPingsOut  = 3
)

// Config says where and how to connect. The zero value of every field but URL
// means its default.
type Config struct {
	// URL is the server URL, or a comma-separated list of them. Required:
	// the binary's config decides the laptop default (or starts the
	// embedded server and passes its ClientURL).
	URL string
	// Name identifies the connection in server monitoring (connz), e.g.
	// "rapport-ticket". Default DefaultName.
	Name string
	// CredsFile is an optional NATS credentials file (JWT and seed).
	CredsFile string
	// Logger receives connection events: disconnects, reconnects, async
	// errors such as slow consumers. Nil discards them.
	Logger *slog.Logger
	// ReconnectWaitMax caps the exponential reconnect backoff. Default
	// DefaultReconnectWaitMax.
	ReconnectWaitMax time.Duration
	// DrainTimeout bounds conn.Drain(), which the caller runs on shutdown so
	// in-flight acks and publishes reach the server. Default
	// DefaultDrainTimeout; keep it inside the pod's grace period.
	DrainTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = DefaultName
	}
	if c.ReconnectWaitMax <= 0 {
		c.ReconnectWaitMax = DefaultReconnectWaitMax
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Connect dials NATS and returns the connection and a JetStream handle on it.
//
// It blocks until the first connection is up and the server passes
// CheckServer, or ctx ends: a broker that is still starting (Kubernetes
// starts pods in any order) is waited for instead of failing the process,
// and the caller bounds that wait with ctx. After that the connection
// reconnects forever with capped, jittered exponential backoff, because
// RELIABILITY.md §1.10 wants a broker outage to restart nothing; the outbox
// keeps events meanwhile.
//
// The caller owns the connection: Drain it on shutdown (acks in flight are
// flushed, subscriptions end, then it closes), Close it on error paths.
func Connect(ctx context.Context, cfg Config) (*nats.Conn, jetstream.JetStream, error) {
	if cfg.URL == "" {
		return nil, nil, errors.New("connect to nats: empty url")
	}
	cfg = cfg.withDefaults()
	log := cfg.Logger.With("nats_conn", cfg.Name)

	// Closed by the connected callback, which nats.go calls for the first
	// successful connection (at once or after retries); the Once keeps a
	// second call from panicking.
	connected := make(chan struct{})
	markConnected := sync.OnceFunc(func() { close(connected) })
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay(reconnectWaitMin, cfg.ReconnectWaitMax)),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DrainTimeout(cfg.DrainTimeout),
		nats.ConnectHandler(func(*nats.Conn) { markConnected() }),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("nats disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
		nats.LameDuckModeHandler(func(*nats.Conn) {
			log.Warn("nats server entering lame duck mode")
		}),
		// Replaces the default handler, which prints to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				log.Error("nats async error", "subject", sub.Subject, "error", err)
				return
			}
			log.Error("nats async error", "error", err)
		}),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}

	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		// With RetryOnFailedConnect only a bad URL or option gets here.
		return nil, nil, fmt.Errorf("connect to nats as %s: %w", cfg.Name, err)
	}
	select {
	case <-connected:
	case <-ctx.Done():
		last := nc.LastError()
		nc.Close()
		return nil, nil, fmt.Errorf("connect to nats as %s: %w", cfg.Name, errors.Join(ctx.Err(), last))
	}
	if err := CheckServer(nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect to nats as %s: %w", cfg.Name, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect to nats as %s: jetstream: %w", cfg.Name, err)
	}
	return nc, js, nil
}

// reconnectDelay returns the wait before reconnect round attempts: doubling
// from lo up to hi, with "equal jitter" (a random half) so that every pod
// does not knock on a restarted broker in the same instant.
func reconnectDelay(lo, hi time.Duration) nats.ReconnectDelayHandler {
	return func(attempts int) time.Duration {
		d := hi
		// attempts counts full passes over the server list, from 1. Past 30
		// doublings the shift would overflow; hi is long reached anyway.
		if attempts < 30 {
			d = min(hi, lo<<max(attempts-1, 0))
		}
		half := d / 2
		return half + rand.N(half+1)
	}
}

// CheckServer refuses a connection to a server older than MinServerVersion.
// Connect calls it; it is exported for readiness checks and tests.
func CheckServer(nc *nats.Conn) error {
	if nc == nil {
		return errors.New("check nats server: nil connection")
	}
	v := nc.ConnectedServerVersion()
	if v == "" {
		return errors.New("check nats server: not connected")
	}
	return checkServerVersion(v)
}

// checkServerVersion compares a semantic version ("2.10.23", "v2.11.0-RC.1",
// "2.12.1+build") with MinServerVersion. A pre-release of the minimum is
// older than the minimum, as semver orders it, so "2.10.23-beta" is refused.
func checkServerVersion(v string) error {
	got, pre, err := parseVersion(v)
	if err != nil {
		return fmt.Errorf("check nats server version %q: %w", v, err)
	}
	want, _, err := parseVersion(MinServerVersion)
	if err != nil {
		return fmt.Errorf("parse minimum nats server version: %w", err)
	}
	for i := range got {
		if got[i] != want[i] {
			if got[i] < want[i] {
				return fmt.Errorf("check nats server version %s: %w", v, ErrServerTooOld)
			}
			return nil
		}
	}
	if pre {
		return fmt.Errorf("check nats server version %s: %w", v, ErrServerTooOld)
	}
	return nil
}

// parseVersion splits "[v]MAJOR.MINOR.PATCH[-pre][+build]" and reports
// whether a pre-release part was present.
func parseVersion(v string) (core [3]int, pre bool, err error) {
	s := strings.TrimPrefix(v, "v")
	if i := strings.IndexByte(s, '+'); i >= 0 {
		s = s[:i]
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		s, pre = s[:i], true
	}
	parts := strings.Split(s, ".")
	if len(parts) != len(core) {
		return core, false, errors.New("want major.minor.patch")
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || p == "" || (len(p) > 1 && p[0] == '0') {
			return core, false, fmt.Errorf("bad number %q", p)
		}
		core[i] = n
	}
	return core, pre, nil
}
