package natsx_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
)

// fakeServer speaks just enough of the NATS client protocol (INFO, then
// PONG for every PING) to let nats.go connect, claiming any version, which
// the real embedded server cannot do. It hangs up on the first dropFirst
// connections, as a server that is not up yet would. It returns its URL and
// a counter of accepted connections.
func fakeServer(t testing.TB, version string, dropFirst int) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		accepted atomic.Int32
		wg       sync.WaitGroup
		mu       sync.Mutex
		conns    []net.Conn
		closed   bool
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	addr := ln.Addr().(*net.TCPAddr)
	info := fmt.Sprintf(`INFO {"server_id":"FAKE","server_name":"fake","version":%q,"go":"go1.26.8","host":"127.0.0.1","port":%d,"headers":true,"max_payload":1048576,"proto":1}`+"\r\n", version, addr.Port)

	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed by cleanup
			}
			if int(accepted.Add(1)) <= dropFirst {
				_ = c.Close()
				continue
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				if _, err := c.Write([]byte(info)); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.HasPrefix(line, "PING") {
						if _, err := c.Write([]byte("PONG\r\n")); err != nil {
							return
						}
					}
				}
			})
		}
	})
	return "nats://" + addr.String(), &accepted
}

func TestCheckServer(t *testing.T) {
	t.Parallel()

	t.Run("RefusesAFake2_9_10", func(t *testing.T) {
		t.Parallel()
		url, _ := fakeServer(t, "2.9.10", 0)
		nc, err := nats.Connect(url, nats.NoReconnect())
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		require.Equal(t, "2.9.10", nc.ConnectedServerVersion())
		require.ErrorIs(t, natsx.CheckServer(nc), natsx.ErrServerTooOld)
	})

	t.Run("AcceptsTheEmbeddedServer", func(t *testing.T) {
		t.Parallel()
		nc, _ := natstest.Connect(t, natstest.Start(t))
		require.NoError(t, natsx.CheckServer(nc))
	})

	t.Run("RefusesAClosedConnection", func(t *testing.T) {
		t.Parallel()
		url, _ := fakeServer(t, "2.15.2", 0)
		nc, err := nats.Connect(url, nats.NoReconnect())
		require.NoError(t, err)
		nc.Close()
		require.ErrorContains(t, natsx.CheckServer(nc), "not connected")
	})
}

func TestConnect(t *testing.T) {
	t.Parallel()

	t.Run("RefusesAnOldServer", func(t *testing.T) {
		t.Parallel()
		url, _ := fakeServer(t, "2.9.10", 0)
		nc, js, err := natsx.Connect(t.Context(), natsx.Config{URL: url})
		require.ErrorIs(t, err, natsx.ErrServerTooOld)
		require.Nil(t, nc)
		require.Nil(t, js)
	})

	t.Run("WaitsForAServerThatIsNotUpYet", func(t *testing.T) {
		t.Parallel()
		// Reconnect waits grow 250 ms, 500 ms, …: three refusals take
		// about a second.
		url, accepted := fakeServer(t, "2.15.2", 3)
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		nc, js, err := natsx.Connect(ctx, natsx.Config{URL: url, Name: "rapport-test"})
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		require.NotNil(t, js)
		require.True(t, nc.IsConnected())
		require.GreaterOrEqual(t, accepted.Load(), int32(4))
		require.Equal(t, "rapport-test", nc.Opts.Name)
		require.Equal(t, -1, nc.Opts.MaxReconnect, "reconnects must be unlimited")
		require.True(t, nc.Opts.RetryOnFailedConnect)
	})

	t.Run("GivesUpWhenContextEnds", func(t *testing.T) {
		t.Parallel()
		url, _ := fakeServer(t, "2.15.2", 1<<30)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		nc, _, err := natsx.Connect(ctx, natsx.Config{URL: url})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Nil(t, nc)
	})

	t.Run("RequiresAURL", func(t *testing.T) {
		t.Parallel()
		_, _, err := natsx.Connect(t.Context(), natsx.Config{})
		require.ErrorContains(t, err, "empty url")
	})

	t.Run("RejectsABadURL", func(t *testing.T) {
		t.Parallel()
		_, _, err := natsx.Connect(t.Context(), natsx.Config{URL: "nats://[::1"})
		require.Error(t, err)
	})

	t.Run("SetsDefaults", func(t *testing.T) {
		t.Parallel()
		s := natstest.Start(t)
		nc, _, err := natsx.Connect(t.Context(), natsx.Config{URL: s.ClientURL()})
		require.NoError(t, err)
		t.Cleanup(nc.Close)
		require.Equal(t, natsx.DefaultName, nc.Opts.Name)
		require.Equal(t, natsx.DefaultDrainTimeout, nc.Opts.DrainTimeout)
		// The connection drains cleanly, as `rapport serve` does on SIGTERM.
		require.NoError(t, nc.Drain())
		require.Eventually(t, nc.IsClosed, 10*time.Second, 10*time.Millisecond)
	})
}
