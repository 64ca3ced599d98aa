package embedded_test

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/embedded"
)

func start(t testing.TB, cfg embedded.Config) *server.Server {
	t.Helper()
	s, err := embedded.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func TestStart(t *testing.T) {
	t.Parallel()

	t.Run("RunsJetStreamOnLoopbackWithSyncAlways", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		s := start(t, embedded.Config{StoreDir: dir})

		addr, ok := s.Addr().(*net.TCPAddr)
		require.True(t, ok)
		require.True(t, addr.IP.IsLoopback(), "listening on %s", addr)
		require.NotEqual(t, server.DEFAULT_PORT, addr.Port, "port 0 must mean a random port")
		require.True(t, s.JetStreamEnabled())
		js := s.JetStreamConfig()
		require.True(t, js.SyncAlways)
		require.Equal(t, filepath.Join(dir, server.JetStreamStoreDir), js.StoreDir)

		ctx := t.Context()
		nc, jsc, err := natsx.Connect(ctx, natsx.Config{URL: s.ClientURL()})
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		_, err = natsx.EnsureStream(ctx, jsc, "ticket", 1)
		require.NoError(t, err)
	})

	t.Run("AcceptsLoopbackHosts", func(t *testing.T) {
		t.Parallel()
		for _, host := range []string{"127.0.0.1", "127.0.0.2", "localhost", "::1"} {
			s, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Host: host})
			if err != nil {
				// ::1 may be missing in a container; only the host
				// check matters here.
				require.NotContains(t, err.Error(), "not loopback", host)
				continue
			}
			require.NoError(t, embedded.Shutdown(t.Context(), s))
		}
	})

	t.Run("RefusesNonLoopbackHosts", func(t *testing.T) {
		t.Parallel()
		for _, host := range []string{"0.0.0.0", "::", "10.1.2.3", "192.168.0.10", "nats.example.com", "127.0.0.1.example.com"} {
			_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Host: host})
			require.ErrorContains(t, err, "not loopback", host)
		}
	})

	t.Run("RequiresAStoreDir", func(t *testing.T) {
		t.Parallel()
		_, err := embedded.Start(embedded.Config{})
		require.ErrorContains(t, err, "empty store dir")
	})

	t.Run("RejectsABadPort", func(t *testing.T) {
		t.Parallel()
		for _, port := range []int{-1, 65536} {
			_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: port})
			require.ErrorContains(t, err, "bad port")
		}
	})

	t.Run("ReportsWhyJetStreamCannotStart", func(t *testing.T) {
		t.Parallel()
		file := filepath.Join(t.TempDir(), "not-a-dir")
		require.NoError(t, os.WriteFile(file, nil, 0o600))
		begin := time.Now()
		_, err := embedded.Start(embedded.Config{StoreDir: file})
		require.ErrorContains(t, err, "JetStream")
		require.Less(t, time.Since(begin), embedded.DefaultReadyTimeout/2, "failed by timing out")
	})

	t.Run("ReportsAPortInUse", func(t *testing.T) {
		t.Parallel()
		first := start(t, embedded.Config{StoreDir: t.TempDir()})
		port := first.Addr().(*net.TCPAddr).Port
		begin := time.Now()
		_, err := embedded.Start(embedded.Config{StoreDir: t.TempDir(), Port: port})
		require.ErrorContains(t, err, "listening")
		require.Less(t, time.Since(begin), embedded.DefaultReadyTimeout/2, "failed by timing out")
	})

	t.Run("LogsThroughSlog", func(t *testing.T) {
		t.Parallel()
		var buf lockedBuffer
		start(t, embedded.Config{StoreDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&buf, nil))})
		out := buf.String()
		require.Contains(t, out, "component=nats-server")
		require.Contains(t, out, "Server is ready")
	})
}

func TestShutdown(t *testing.T) {
	t.Parallel()

	s := start(t, embedded.Config{StoreDir: t.TempDir()})
	nc, _, err := natsx.Connect(t.Context(), natsx.Config{URL: s.ClientURL()})
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	require.NoError(t, nc.Drain())
	require.NoError(t, embedded.Shutdown(t.Context(), s))
	require.False(t, s.Running())
	// Idempotent, so a deferred stop after an explicit one is harmless.
	require.NoError(t, embedded.Shutdown(t.Context(), s))
}

// lockedBuffer is written by the server's goroutines and read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Clone(b.buf.String())
}
