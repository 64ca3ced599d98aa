// Package embedded runs the real nats-server, with JetStream, inside the
// Rapport process. `rapport serve` starts it when RAPPORT_NATS_URL is empty,
// so a laptop needs no broker; tests start it through natstest.
//
// It owns the server's options that RELIABILITY.md §1.3 depends on: file
// storage under StoreDir with SyncAlways (fsync before every PubAck), and a
// loopback-only listener, because the server has no authentication. It must
// not be imported by service code: it adds about 15 MB to a binary, so only
// the all-in-one binary and tests import it. Clients talk to it like to any
// other server, through natsx.Connect and s.ClientURL().
//
// # Shutdown
//
// Stop in this order: drain the clients (nc.Drain, so in-flight acks and
// publishes reach the server), then call Shutdown, or s.Shutdown() followed
// by s.WaitForShutdown(). Shutdown closes client connections, stops
// JetStream and closes the store; it is idempotent. Because of SyncAlways,
// every acknowledged message is on disk before its PubAck, so even a process
// killed without Shutdown loses no acknowledged event; Shutdown only spares
// the next start the time it takes to recover the store.
package embedded

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Defaults for the zero Config.
const (
	DefaultHost         = "127.0.0.1"
	DefaultReadyTimeout = 10 * time.Second
	// serverName is fixed, not random: it names the JetStream node, which
	// stays the same across restarts on one StoreDir.
	serverName = "rapport-embedded"
)

// Config says where the server keeps its data and listens.
type Config struct {
	// StoreDir holds JetStream's files (under StoreDir/jetstream).
	// Required: the server's fallback is the system temp directory, which a
	// reboot empties.
	StoreDir string
	// Host to listen on, default DefaultHost. Only loopback addresses
	// (and "localhost") are accepted.
	Host string
	// Port to listen on; 0 picks a free one (read it from s.ClientURL()).
	Port int
	// Logger receives the server's log, tagged component=nats-server. Nil
	// keeps the server silent.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for the listener. Default
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Start starts the server and returns once it accepts connections with
// JetStream enabled. On error nothing is left running.
func Start(cfg Config) (*server.Server, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("start embedded nats: empty store dir")
	}
	if cfg.Host == "" {
		cfg.Host = DefaultHost
	}
	if !isLoopback(cfg.Host) {
		return nil, fmt.Errorf("start embedded nats: host %q is not loopback: the server has no authentication", cfg.Host)
	}
	port := cfg.Port
	switch {
	case port == 0:
		// The server reads Port 0 as its default, 4222; RANDOM_PORT asks
		// the kernel for a free one.
		port = server.RANDOM_PORT
	case port < 0 || port > 65535:
		return nil, fmt.Errorf("start embedded nats: bad port %d", cfg.Port)
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}

	opts := &server.Options{
		ServerName: serverName,
		Host:       cfg.Host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		// fsync every write before the PubAck. The default (every 2 min)
		// lost 131,418 of 930,005 acked messages to a simulated power loss
		// (nats-server #7564).
		SyncAlways: true,
		// The process owns signals: `rapport serve` turns SIGTERM into an
		// orderly stop of everything, this server last.
		NoSigs: true,
		NoLog:  cfg.Logger == nil,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start embedded nats: %w", err)
	}
	// Always set, even without a Logger: it records the fatal error that
	// makes Start give up, so the error says why.
	log := &logger{log: cfg.Logger}
	if log.log == nil {
		log.log = slog.New(slog.DiscardHandler)
	}
	log.log = log.log.With("component", "nats-server")
	s.SetLoggerV2(log, false, false, false)

	// Start enables JetStream and opens the listener before it returns. It
	// reports failures (an unusable StoreDir, a port in use) only by a fatal
	// log line and an early return, so that line is checked first: waiting
	// for readiness would only time out.
	s.Start()
	if msg := log.fatal(); msg != "" {
		stop(s)
		return nil, fmt.Errorf("start embedded nats: %s", msg)
	}
	if !s.ReadyForConnections(cfg.ReadyTimeout) {
		stop(s)
		return nil, fmt.Errorf("start embedded nats: not ready after %s", cfg.ReadyTimeout)
	}
	if !s.JetStreamEnabled() {
		stop(s)
		return nil, errors.New("start embedded nats: jetstream not enabled")
	}
	return s, nil
}

func stop(s *server.Server) {
	s.Shutdown()
	s.WaitForShutdown()
}

// Shutdown stops s as the package documentation describes, and returns
// early with ctx's error if ctx ends first (the stop goes on in the
// background), so `rapport serve` can keep its whole stop under one timeout.
func Shutdown(ctx context.Context, s *server.Server) error {
	done := make(chan struct{})
	go func() {
		stop(s)
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("shut down embedded nats: %w", ctx.Err())
	}
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// logger adapts the server's printf-style Logger to slog, and remembers the
// first fatal message for Start's error.
type logger struct {
	log *slog.Logger

	mu        sync.Mutex
	fatalText string
}

func (l *logger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatalText
}

func (l *logger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *logger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *logger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *logger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *logger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// Fatalf only logs: the server's own loggers exit the process here, and
// only main may do that. Start turns the failure into an error.
func (l *logger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatalText == "" {
		l.fatalText = msg
	}
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}
