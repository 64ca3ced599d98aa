package pgdbtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

func TestClosePool(t *testing.T) {
	t.Parallel()

	t.Run("ReturnsOnceEveryConnectionIsBack", func(t *testing.T) {
		t.Parallel()
		pool := Open(t, pgdb.Config{URL: AdminURL(), Schema: "pgdbtest"})
		conn, err := pool.Acquire(t.Context())
		require.NoError(t, err)
		require.NoError(t, conn.Ping(t.Context()))
		conn.Release()
		hijacked, err := pool.Acquire(t.Context())
		require.NoError(t, err)
		require.NoError(t, hijacked.Hijack().Close(t.Context()))
		require.NoError(t, closeWithin(pool, 10*time.Second))
	})

	t.Run("FailsWithWhereALeakedConnectionWasAcquired", func(t *testing.T) {
		t.Parallel()
		pool := Open(t, pgdb.Config{URL: AdminURL(), Schema: "pgdbtest"})
		leaked := leakConnection(t, pool)

		err := closeWithin(pool, 500*time.Millisecond)
		require.Error(t, err)
		msg := err.Error()
		t.Log(msg)
		require.Contains(t, msg, "pgdbtest: pool.Close blocked: a connection was acquired and never released")
		require.Contains(t, msg, "1 connection(s) acquired")
		require.Contains(t, msg, "pgdbtest.leakConnection", "the acquisition site")
		require.Contains(t, msg, "close_test.go:", "the acquisition site's line")
		require.Contains(t, msg, "github.com/jackc/puddle/v2.(*Pool", "the blocked Close's goroutine")

		// Releasing the connection lets the background Close finish; Close
		// again waits for it.
		leaked.Release()
		closed := make(chan struct{})
		go func() { pool.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not finish once the connection was released")
		}
	})
}

// leakConnection acquires a connection and keeps it; its name is what the
// report must point at.
func leakConnection(t *testing.T, pool *pgxpool.Pool) *pgxpool.Conn {
	conn, err := pool.Acquire(context.Background())
	require.NoError(t, err)
	return conn
}
