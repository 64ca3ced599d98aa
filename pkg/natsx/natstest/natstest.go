// Package natstest gives a test its own real NATS server with JetStream,
// in process, on a random loopback port, storing into t.TempDir(), and
// cleaned up by the test. It must only be imported from tests: it pulls in
// nats-server.
package natstest

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/embedded"
)

// connectTimeout bounds Connect's wait for a server that is already up.
const connectTimeout = 10 * time.Second

// Start starts an embedded server for t and shuts it down when t ends.
func Start(t testing.TB) *server.Server {
	t.Helper()
	return start(t, embedded.Config{StoreDir: t.TempDir()})
}

// Restart shuts s down and starts a new server on the same StoreDir and
// port, as a broker restart looks to a client: connections made to s
// reconnect to the new server by themselves, and what JetStream stored is
// recovered from disk. The new server is shut down when t ends.
func Restart(t testing.TB, s *server.Server) *server.Server {
	t.Helper()
	// StoreDir() is the JetStream directory, <StoreDir>/jetstream.
	jsDir := s.StoreDir()
	if filepath.Base(jsDir) != server.JetStreamStoreDir {
		t.Fatalf("natstest: restart: unexpected jetstream dir %q", jsDir)
	}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("natstest: restart: server address %v is not TCP", s.Addr())
	}
	s.Shutdown()
	s.WaitForShutdown()
	return start(t, embedded.Config{
		StoreDir: filepath.Dir(jsDir),
		Host:     addr.IP.String(),
		Port:     addr.Port,
	})
}

func start(t testing.TB, cfg embedded.Config) *server.Server {
	t.Helper()
	s, err := embedded.Start(cfg)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Connect connects to s through natsx.Connect, so tests use the same
// options as production, and closes the connection when t ends (before the
// server stops, as cleanups run last-in first-out).
func Connect(t testing.TB, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), connectTimeout)
	defer cancel()
	nc, js, err := natsx.Connect(ctx, natsx.Config{URL: s.ClientURL(), Name: "natstest"})
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}
