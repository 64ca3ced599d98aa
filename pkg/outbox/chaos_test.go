package outbox

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/outbox/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

var seedFlag = flag.Uint64("seed", 0, "seed of OUTBOX-02's writers; 0 picks one (replay a failure with -args -seed=N)")

// chaosSeed returns -seed, or a fresh seed, and logs it either way.
func chaosSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed=%d (replay with -args -seed=%d)", seed, seed)
	return seed
}

// writerLoad is OUTBOX-02's workload: writers commit transactions that each
// bump a widget's version under its row lock and write the matching event,
// then sleep a random 0–maxSleep before COMMIT, so transactions commit in
// an order unrelated to the order their rows took seq numbers.
type writerLoad struct {
	writers, txPerWriter, widgets int
	maxSleep                      time.Duration
	seed                          uint64
}

// prepare creates the widgets.
func (l writerLoad) prepare(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	_, err := pool.Exec(t.Context(),
		"INSERT INTO widgets (id) SELECT 'widget-' || g FROM generate_series(0, $1 - 1) g", l.widgets)
	require.NoError(t, err)
}

// run runs the writers; it returns the ids of the committed events and how
// many transactions were attempted. It may run outside the test's
// goroutine: failures are reported with t.Errorf.
func (l writerLoad) run(t *testing.T, pool *pgxpool.Pool) (committed []uuid.UUID, attempted int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range l.writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(l.seed, uint64(w))) //nolint:gosec // a replayable workload, not a secret
			for range l.txPerWriter {
				widget := "widget-" + strconv.Itoa(rng.IntN(l.widgets))
				pause := time.Duration(rng.Int64N(int64(l.maxSleep) + 1))
				id, err := bumpWidget(t.Context(), pool, widget, pause)
				if err != nil {
					t.Errorf("writer %d: %v", w, err)
					return
				}
				mu.Lock()
				committed = append(committed, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return committed, l.writers * l.txPerWriter
}

// bumpWidget is one writer transaction: lock the widget by bumping its
// version, write the event of that version, pause, commit.
func bumpWidget(ctx context.Context, pool *pgxpool.Pool, widget string, pause time.Duration) (uuid.UUID, error) {
	var id uuid.UUID
	err := pgdb.InTx(ctx, pool, func(tx pgx.Tx) error {
		var version int64
		if err := tx.QueryRow(ctx,
			"UPDATE widgets SET version = version + 1 WHERE id = $1 RETURNING version", widget).Scan(&version); err != nil {
			return fmt.Errorf("bump %s: %w", widget, err)
		}
		e := testEvent(widget, version)
		id = e.ID
		if err := Write(ctx, tx, e); err != nil {
			return err
		}
		// The workload's pause before COMMIT, holding the row lock; not a
		// synchronisation.
		time.Sleep(pause)
		return nil
	})
	return id, err
}

// forceOutOfOrderCommit makes one commit out of seq order for sure: A
// inserts its event first (lower seq) and stays open; B inserts and commits;
// A commits only once passed(B's seq) reports that the relay under test has
// dealt with B. It returns A's and B's event ids.
func forceOutOfOrderCommit(t *testing.T, pool *pgxpool.Pool, passed func(c *assert.CollectT, bSeq int64) bool) (a, b uuid.UUID) {
	t.Helper()
	ctx := t.Context()
	txA, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = txA.Rollback(context.WithoutCancel(ctx)) }()
	ea := testEvent("forced-a", 1)
	require.NoError(t, Write(ctx, txA, ea))

	eb := testEvent("forced-b", 1)
	require.NoError(t, pgdb.InTx(ctx, pool, func(tx pgx.Tx) error { return Write(ctx, tx, eb) }))
	var seqA, seqB int64
	require.NoError(t, txA.QueryRow(ctx, "SELECT seq FROM outbox WHERE id = $1", ea.ID).Scan(&seqA))
	require.NoError(t, pool.QueryRow(ctx, "SELECT seq FROM outbox WHERE id = $1", eb.ID).Scan(&seqB))
	require.Less(t, seqA, seqB)

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.True(c, passed(c, seqB), "the relay has not reached B yet")
	}, waitFor, waitTick)
	require.NoError(t, txA.Commit(ctx))
	return ea.ID, eb.ID
}

// OUTBOX-02: concurrent writers whose transactions commit out of seq order.
func TestOUTBOX02(t *testing.T) {
	t.Parallel()
	seed := chaosSeed(t)

	t.Run("RelayPublishesEveryCommittedEventOnceInAggregateOrder", func(t *testing.T) {
		t.Parallel()
		load := writerLoad{writers: 8, txPerWriter: 300, widgets: 24, maxSleep: 50 * time.Millisecond, seed: seed}
		b := setup(t, &setupOpts{maxConns: int32(load.writers) + 4})
		load.prepare(t, b.pool)
		b.startRelay(t, b.pool, relayConfig(t)) // polls every 10 ms

		committed, attempted := load.run(t, b.pool)
		waitDrained(t, b.pool)
		got := b.readStream(t)

		counts := streamIDs(got)
		want := make(map[uuid.UUID]bool, len(committed))
		lost := 0
		for _, id := range committed {
			want[id] = true
			if counts[id] == 0 {
				lost++
			}
		}
		duplicated, violations := 0, 0
		for id, n := range counts {
			duplicated += n - 1
			if !want[id] {
				violations++ // published but never committed
			}
		}
		last := map[string]int64{}
		for _, e := range got {
			if e.version <= last[e.aggregateID] {
				violations++ // an aggregate's version went backwards or repeated
			}
			last[e.aggregateID] = e.version
		}
		t.Logf("chaos: test=OUTBOX-02 seed=%d attempted=%d acknowledged=%d lost=%d duplicated=%d invariant_violations=%d",
			seed, attempted, len(committed), lost, duplicated, violations)

		// The run must have committed out of seq order, or it proved
		// nothing a cursor relay would fail: count events stored after an
		// event with a higher seq.
		seqs := map[uuid.UUID]int64{}
		rows, err := b.pool.Query(t.Context(), "SELECT id, seq FROM outbox")
		require.NoError(t, err)
		for rows.Next() {
			var id uuid.UUID
			var seq int64
			require.NoError(t, rows.Scan(&id, &seq))
			seqs[id] = seq
		}
		require.NoError(t, rows.Err())
		var maxSeq int64
		inversions := 0
		for _, e := range got {
			if s := seqs[e.id]; s < maxSeq {
				inversions++
			} else {
				maxSeq = s
			}
		}
		t.Logf("events published after a higher seq (out-of-order commits): %d", inversions)

		require.Equal(t, attempted, len(committed), "acknowledged")
		require.Zero(t, lost, "lost")
		require.Zero(t, duplicated, "duplicated")
		require.Zero(t, violations, "invariant_violations")
		require.Len(t, got, attempted)
		require.Positive(t, inversions, "the workload produced no out-of-order commit")
	})

	t.Run("RelayPublishesARowCommittedAfterAHigherSeqWasPublished", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.startRelay(t, b.pool, relayConfig(t))
		a, bID := forceOutOfOrderCommit(t, b.pool, func(c *assert.CollectT, seqB int64) bool {
			var published bool
			err := b.pool.QueryRow(t.Context(),
				"SELECT published_at IS NOT NULL FROM outbox WHERE seq = $1", seqB).Scan(&published)
			require.NoError(c, err)
			return published
		})
		waitDrained(t, b.pool)
		got := b.readStream(t)
		requireExactlyOnce(t, []uuid.UUID{a, bID}, got)
		require.Equal(t, []uuid.UUID{bID, a}, []uuid.UUID{got[0].id, got[1].id}, "B, then A once it committed")
	})

	// The negative control: the same workload against a relay that keeps a
	// seq cursor must lose events, or this test could not catch that bug.
	t.Run("NaiveCursorRelayMissesCommittedEvents", func(t *testing.T) {
		t.Parallel()
		load := writerLoad{writers: 4, txPerWriter: 40, widgets: 8, maxSleep: 50 * time.Millisecond, seed: seed}
		b := setup(t, &setupOpts{maxConns: int32(load.writers) + 4})
		naive := &cursorRelay{pool: b.pool, js: b.js}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- naive.run(ctx) }()
		t.Cleanup(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitFor):
				// Fail rather than hang: the pool's Close, next, would
				// wait for its connection.
				t.Errorf("the naive relay did not stop within %s:\n%s", waitFor, goroutinesIn("outbox.(*cursorRelay)"))
			}
		})

		load.prepare(t, b.pool)
		var committed []uuid.UUID
		var wg sync.WaitGroup
		wg.Go(func() { committed, _ = load.run(t, b.pool) })
		forcedA, forcedB := forceOutOfOrderCommit(t, b.pool, func(_ *assert.CollectT, seqB int64) bool {
			return naive.cursor.Load() >= seqB
		})
		wg.Wait()
		committed = append(committed, forcedA, forcedB)

		var maxSeq int64
		require.NoError(t, b.pool.QueryRow(t.Context(), "SELECT max(seq) FROM outbox").Scan(&maxSeq))
		require.Eventually(t, func() bool { return naive.cursor.Load() >= maxSeq }, waitFor, waitTick,
			"the naive relay reaches the last seq")

		counts := streamIDs(b.readStream(t))
		missed := map[uuid.UUID]bool{}
		for _, id := range committed {
			if counts[id] == 0 {
				missed[id] = true
			}
		}
		t.Logf("negative control: the seq-cursor relay missed %d of %d committed events (seed=%d)",
			len(missed), len(committed), seed)
		require.True(t, missed[forcedA], "the cursor relay published the event committed behind its cursor")
	})
}

// cursorRelay is the bug the Relay avoids, kept as a fixture: it publishes
// rows with seq > cursor and advances the cursor past them, so a row that
// commits after a higher seq was read is never published (Watermill #311).
type cursorRelay struct {
	pool   *pgxpool.Pool
	js     jetstream.JetStream
	cursor atomic.Int64
}

func (c *cursorRelay) run(ctx context.Context) error {
	for {
		rows, err := c.pool.Query(ctx, `SELECT id, tenant_id, subject, event_type, aggregate_type,
				aggregate_id, aggregate_version, payload, occurred_at, seq
			FROM outbox WHERE seq > $1 ORDER BY seq LIMIT 100`, c.cursor.Load())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		var batch []dbgen.OutboxPendingRow
		var seqs []int64
		for rows.Next() {
			var r dbgen.OutboxPendingRow
			var seq int64
			if err := rows.Scan(&r.ID, &r.TenantID, &r.Subject, &r.EventType, &r.AggregateType,
				&r.AggregateID, &r.AggregateVersion, &r.Payload, &r.OccurredAt, &seq); err != nil {
				rows.Close()
				return err
			}
			batch = append(batch, r)
			seqs = append(seqs, seq)
		}
		rows.Close()
		if err := rows.Err(); err != nil && ctx.Err() == nil {
			return err
		}
		for i, r := range batch {
			if _, err := c.js.PublishMsg(ctx, newMessage(testSource, r), jetstream.WithMsgID(r.ID.String())); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			c.cursor.Store(seqs[i])
		}
		if !sleep(ctx, 10*time.Millisecond) {
			return nil
		}
	}
}
