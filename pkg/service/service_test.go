package service_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/pkg/service"
)

func TestRelayReapsExpiredIdempotencyKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: "svc"})
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	insert := func(requestID string, at time.Time) {
		_, err := pool.Exec(ctx, `INSERT INTO idempotency_keys
			(tenant_id, principal, request_id, method, request_hash, response, created_at)
			VALUES (gen_random_uuid(), 'p', $1, 'm', '\x00', '\x00', $2)`, requestID, at)
		require.NoError(t, err)
	}
	insert("00000000-0000-4000-8000-000000000001", now.Add(-49*time.Hour)) // expired
	insert("00000000-0000-4000-8000-000000000002", now.Add(-47*time.Hour)) // inside the TTL
	insert("00000000-0000-4000-8000-000000000003", now.Add(-25*time.Hour)) // inside a day

	// The default TTL is 48 h.
	r, err := service.NewRelay("svc", service.Deps{Pool: pool, Now: func() time.Time { return now }}, service.Config{})
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&n))
		return n == 2
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	var left []string
	rows, err := pool.Query(ctx, "SELECT request_id::text FROM idempotency_keys ORDER BY request_id")
	require.NoError(t, err)
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		left = append(left, s)
	}
	require.Equal(t, []string{"00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"}, left)

	// A TTL under a day is raised to a day: a key an hour old survives a
	// one-minute TTL, and one 25 h old does not.
	insert("00000000-0000-4000-8000-000000000004", now.Add(-time.Hour))
	short, err := service.NewRelay("svc", service.Deps{Pool: pool, Now: func() time.Time { return now }},
		service.Config{IdempotencyKeyTTL: time.Minute})
	require.NoError(t, err)
	runCtx, cancel = context.WithCancel(ctx)
	go func() { done <- short.Run(runCtx) }()
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM idempotency_keys").Scan(&n))
		return n == 1
	}, 10*time.Second, 20*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	var kept bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM idempotency_keys
		WHERE request_id = '00000000-0000-4000-8000-000000000004')`).Scan(&kept))
	require.True(t, kept, "a key younger than a day is never reaped")
}
