package outbox

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

func TestRelay(t *testing.T) {
	t.Parallel()

	t.Run("PublishesCloudEventsHeadersAndPayload", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		at := time.Date(2026, 5, 4, 3, 2, 1, 987654000, time.UTC)
		e := Event{
			TenantID:         testTenant,
			Subject:          "rapport.outboxtest.customer.created",
			AggregateType:    "customer",
			AggregateID:      "0190b5c4-7d2e-7000-8000-0000000000bb",
			AggregateVersion: 3,
			Payload:          wrapperspb.String("hello"),
			OccurredAt:       at,
		}
		var id uuid.UUID
		require.NoError(t, pgdb.InTx(t.Context(), b.pool, func(tx pgx.Tx) error {
			// Write fills in the id on its copy; read it back.
			if err := Write(t.Context(), tx, e); err != nil {
				return err
			}
			return tx.QueryRow(t.Context(), "SELECT id FROM outbox").Scan(&id)
		}))
		b.startRelay(t, b.pool, relayConfig(t))
		waitDrained(t, b.pool)

		got := b.readStream(t)
		require.Len(t, got, 1)
		m := got[0].msg
		require.Equal(t, e.Subject, m.Subject)
		want := map[string]string{
			natsx.HeaderMsgID:       id.String(),
			natsx.HeaderSpecVersion: "1.0",
			natsx.HeaderID:          id.String(),
			natsx.HeaderType:        "google.protobuf.StringValue",
			natsx.HeaderSource:      testSource,
			natsx.HeaderTime:        "2026-05-04T03:02:01.987654Z",
			natsx.HeaderSubject:     e.AggregateID,
			natsx.HeaderContentType: "application/protobuf",
			natsx.HeaderTenant:      testTenant,
			HeaderAggregateType:     "customer",
			HeaderAggregateID:       e.AggregateID,
			HeaderAggregateVersion:  "3",
		}
		gotHeaders := make(map[string]string, len(m.Header))
		for k, v := range m.Header {
			require.Len(t, v, 1, "header %s", k)
			gotHeaders[k] = v[0]
		}
		require.Equal(t, want, gotHeaders)
		var payload wrapperspb.StringValue
		require.NoError(t, proto.Unmarshal(m.Data, &payload))
		require.Equal(t, "hello", payload.GetValue())
	})

	// OUTBOX-01: an event is published if and only if its transaction
	// committed.
	t.Run("OUTBOX01PublishesExactlyTheCommittedEvents", func(t *testing.T) {
		t.Parallel()
		const commands, workers = 1000, 4
		b := setup(t, &setupOpts{maxConns: workers + 4})
		b.startRelay(t, b.pool, relayConfig(t))

		var (
			mu        sync.Mutex
			committed []uuid.UUID
		)
		work := make(chan int)
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for i := range work {
					id, ok, err := orderCommand(t, b, i)
					if err != nil {
						t.Errorf("command %d: %v", i, err)
						continue
					}
					if ok {
						mu.Lock()
						committed = append(committed, id)
						mu.Unlock()
					}
				}
			})
		}
		for i := range commands {
			work <- i
		}
		close(work)
		wg.Wait()

		require.Len(t, committed, commands*7/10, "30% of the commands roll back")
		var widgets int
		require.NoError(t, b.pool.QueryRow(t.Context(), "SELECT count(*) FROM widgets").Scan(&widgets))
		require.Equal(t, len(committed), widgets, "business rows")
		waitDrained(t, b.pool)
		requireExactlyOnce(t, committed, b.readStream(t))
	})

	// OUTBOX-03: a relay that dies between PubAck and marking only
	// republishes, and the stream's duplicate window drops the copy.
	t.Run("OUTBOX03CrashBetweenPubAckAndMarkStoresEachEventOnce", func(t *testing.T) {
		t.Parallel()
		const events, crashes = 200, 20
		b := setup(t, nil)
		want := writeEvents(t, b.pool, "w", events)

		var (
			publishes atomic.Int64
			crashed   atomic.Int64
			lastCrash atomic.Value // uuid.UUID
		)
		errCrash := errors.New("killed after PubAck")
		cfg := relayConfig(t)
		cfg.BatchSize = 8
		cfg.afterPublish = func(id uuid.UUID) error {
			// Every 11th publish dies, until 20 deaths: a batch of 8 is
			// marked, the next dies after 3 PubAcks.
			if publishes.Add(1)%11 == 0 && crashed.Load() < crashes {
				crashed.Add(1)
				lastCrash.Store(id)
				return errCrash
			}
			return nil
		}

		for restart := 0; crashed.Load() < crashes; restart++ {
			rr := b.startRelay(t, b.pool, cfg)
			select {
			case err := <-rr.done:
				require.ErrorIs(t, err, errCrash, "restart %d", restart)
				close(rr.done)
			case <-time.After(waitFor):
				t.Fatalf("restart %d: relay did not crash within %s", restart, waitFor)
			}
			var published bool
			require.NoError(t, b.pool.QueryRow(t.Context(),
				"SELECT published_at IS NOT NULL FROM outbox WHERE id = $1", lastCrash.Load()).Scan(&published))
			require.False(t, published, "restart %d: an event acknowledged but not marked before the crash is marked", restart)
		}
		b.startRelay(t, b.pool, cfg)
		waitDrained(t, b.pool)

		require.EqualValues(t, crashes, crashed.Load())
		require.Greater(t, publishes.Load(), int64(events), "crashes made the relay republish")
		requireExactlyOnce(t, want, b.readStream(t))
	})

	t.Run("RetriesUntilTheStreamExistsWithoutMarkingAnything", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &setupOpts{noStream: true})
		want := writeEvents(t, b.pool, "w", 5)
		reg := prometheus.NewRegistry()
		cfg := relayConfig(t)
		cfg.Registerer = reg
		cfg.Logger = nil // the failures are expected; keep the output quiet
		b.startRelay(t, b.pool, cfg)

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			require.GreaterOrEqual(c, metricValue(c, reg, "rapport_outbox_publish_errors_total"), 2.0,
				"publish errors are counted and retried")
		}, waitFor, waitTick)
		var unpublished int
		require.NoError(t, b.pool.QueryRow(t.Context(),
			"SELECT count(*) FROM outbox WHERE published_at IS NULL").Scan(&unpublished))
		require.Equal(t, len(want), unpublished, "no row is marked while publishing fails")

		b.stream = b.ensureStream(t)
		waitDrained(t, b.pool)
		requireExactlyOnce(t, want, b.readStream(t))
		require.EqualValues(t, len(want), metricValue(t, reg, "rapport_outbox_published_total"))
	})

	t.Run("ReportsLagAndMetrics", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		reg := prometheus.NewRegistry()
		cfg := relayConfig(t)
		cfg.Registerer = reg
		r := NewRelay(b.pool, b.js, cfg)

		pending, oldest, err := r.Lag(t.Context())
		require.NoError(t, err)
		require.Zero(t, pending)
		require.Zero(t, oldest)

		writeEvents(t, b.pool, "w", 3)
		_, err = b.pool.Exec(t.Context(), "UPDATE outbox SET created_at = created_at - interval '90 seconds'")
		require.NoError(t, err)
		pending, oldest, err = r.Lag(t.Context())
		require.NoError(t, err)
		require.EqualValues(t, 3, pending)
		require.GreaterOrEqual(t, oldest, 90*time.Second)

		b.startRelay(t, b.pool, cfg)
		waitDrained(t, b.pool)
		require.EqualValues(t, 3, metricValue(t, reg, "rapport_outbox_published_total"))
		require.Zero(t, metricValue(t, reg, "rapport_outbox_publish_errors_total"))
		require.Equal(t, 1.0, metricValue(t, reg, "rapport_outbox_leading"))
		// The gauges refresh at most once a second.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			require.Zero(c, metricValue(c, reg, "rapport_outbox_pending"))
			require.Zero(c, metricValue(c, reg, "rapport_outbox_oldest_pending_seconds"))
		}, waitFor, waitTick)

		// A second relay of the same source shares the collectors.
		require.NoError(t, NewRelay(b.pool, b.js, cfg).initErr)
	})

	t.Run("JanitorDeletesPublishedRowsPastRetentionOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		old := writeEvents(t, b.pool, "old", 3)
		recent := writeEvents(t, b.pool, "recent", 2)
		pending := writeEvents(t, b.pool, "pending", 2)
		_, err := b.pool.Exec(t.Context(),
			"UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id = ANY($1)", old)
		require.NoError(t, err)
		_, err = b.pool.Exec(t.Context(),
			"UPDATE outbox SET published_at = now() - interval '50 minutes' WHERE id = ANY($1)", recent)
		require.NoError(t, err)

		cfg := relayConfig(t)
		cfg.Retention = time.Hour
		b.startRelay(t, b.pool, cfg)
		waitDrained(t, b.pool)
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var n int
			require.NoError(c, b.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE id = ANY($1)", old).Scan(&n))
			require.Zero(c, n, "published rows older than the retention are deleted")
		}, waitFor, waitTick)
		var kept int
		require.NoError(t, b.pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox").Scan(&kept))
		require.Equal(t, len(recent)+len(pending), kept, "younger published rows are kept")
		requireExactlyOnce(t, pending, b.readStream(t))
	})

	t.Run("RefusesABadConfig", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		require.Error(t, NewRelay(b.pool, b.js, RelayConfig{}).Run(t.Context()), "empty Source")
		require.Error(t, NewRelay(b.pool, nil, RelayConfig{Source: testSource}).Run(t.Context()), "nil JetStream")
		require.Error(t, NewRelay(nil, b.js, RelayConfig{Source: testSource}).Run(t.Context()), "nil pool")
	})
}

// orderCommand is one OUTBOX-01 command: a business row and its event in
// one transaction. Commands whose number ends in 0, 1 or 2 roll back: the
// first two after the business write and the event, the third right after
// the business write. It reports the event id and whether it committed.
func orderCommand(t testing.TB, b *testBundle, i int) (uuid.UUID, bool, error) {
	e := testEvent("order-"+strconv.Itoa(i), 1)
	abort := i%10 < 3
	errAbort := errors.New("command aborted")
	err := pgdb.InTx(t.Context(), b.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(t.Context(), "INSERT INTO widgets (id, version) VALUES ($1, 1)", e.AggregateID); err != nil {
			return err
		}
		if abort && i%10 == 2 {
			return errAbort
		}
		if err := Write(t.Context(), tx, e); err != nil {
			return err
		}
		if abort {
			return errAbort
		}
		return nil
	})
	switch {
	case abort && errors.Is(err, errAbort):
		return e.ID, false, nil
	case err != nil:
		return e.ID, false, err
	case abort:
		return e.ID, false, errors.New("an aborted command committed")
	}
	return e.ID, true, nil
}

func TestLeaderElection(t *testing.T) {
	t.Parallel()

	// leaderCounter counts relays that believe they lead, and the most at
	// once. onLeading(true) runs after the lock is taken and (false) before
	// it is let go, so with a working election the count never exceeds 1.
	type leaderCounter struct {
		mu      sync.Mutex
		leading map[string]bool
		max     int
	}
	hook := func(lc *leaderCounter, name string) func(bool) {
		return func(on bool) {
			lc.mu.Lock()
			defer lc.mu.Unlock()
			lc.leading[name] = on
			n := 0
			for _, l := range lc.leading {
				if l {
					n++
				}
			}
			lc.max = max(lc.max, n)
		}
	}
	leaders := func(lc *leaderCounter) int {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		n := 0
		for _, l := range lc.leading {
			if l {
				n++
			}
		}
		return n
	}
	leader := func(lc *leaderCounter) string {
		lc.mu.Lock()
		defer lc.mu.Unlock()
		for name, l := range lc.leading {
			if l {
				return name
			}
		}
		return ""
	}

	// start runs relays "a" and "b", each on its own pool (two replicas),
	// recording which relay published which event.
	start := func(t *testing.T, b *testBundle, lc *leaderCounter, publishedBy *sync.Map) map[string]*runningRelay {
		relays := map[string]*runningRelay{}
		for _, name := range []string{"a", "b"} {
			cfg := relayConfig(t)
			cfg.onLeading = hook(lc, name)
			cfg.afterPublish = func(id uuid.UUID) error {
				publishedBy.Store(id, name)
				return nil
			}
			relays[name] = b.startRelay(t, openPool(t, b.dbURL, 4), cfg)
		}
		return relays
	}
	requirePublishedBy := func(t *testing.T, publishedBy *sync.Map, ids []uuid.UUID, name string) {
		t.Helper()
		for _, id := range ids {
			by, ok := publishedBy.Load(id)
			require.True(t, ok, "event %s not published", id)
			require.Equal(t, name, by, "event %s published by a follower", id)
		}
	}

	t.Run("OnlyTheLeaderPublishesAndAFollowerTakesOverWhenItStops", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		lc := &leaderCounter{leading: map[string]bool{}}
		var publishedBy sync.Map
		relays := start(t, b, lc, &publishedBy)

		require.Eventually(t, func() bool { return leader(lc) != "" }, waitFor, waitTick, "someone leads")
		first := leader(lc)
		batch1 := writeEvents(t, b.pool, "one", 30)
		waitDrained(t, b.pool)
		requirePublishedBy(t, &publishedBy, batch1, first)

		require.NoError(t, relays[first].stop(t), "Run returns nil when its ctx is cancelled")
		require.Eventually(t, func() bool { return leader(lc) != "" }, waitFor, waitTick, "the follower takes over")
		second := leader(lc)
		require.NotEqual(t, first, second)
		batch2 := writeEvents(t, b.pool, "two", 30)
		waitDrained(t, b.pool)
		requirePublishedBy(t, &publishedBy, batch2, second)

		lc.mu.Lock()
		require.Equal(t, 1, lc.max, "relays leading at the same time")
		lc.mu.Unlock()
		requireExactlyOnce(t, append(batch1, batch2...), b.readStream(t))
	})

	t.Run("ALeaderWhoseSessionDiesStepsDown", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		lc := &leaderCounter{leading: map[string]bool{}}
		var publishedBy sync.Map
		start(t, b, lc, &publishedBy)
		require.Eventually(t, func() bool { return leader(lc) != "" }, waitFor, waitTick, "someone leads")
		before := writeEvents(t, b.pool, "before", 10)
		waitDrained(t, b.pool)

		// Kill the session holding the leader lock, as a network cut or a
		// restarted pgbouncer would.
		lockHolder := func(t require.TestingT) int {
			var pid int
			err := b.pool.QueryRow(context.Background(), `SELECT pid FROM pg_locks
				WHERE locktype = 'advisory' AND granted
				  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&pid)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0
			}
			require.NoError(t, err)
			return pid
		}
		killed := lockHolder(t)
		require.NotZero(t, killed)
		var ok bool
		require.NoError(t, b.pool.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", killed).Scan(&ok))
		require.True(t, ok)

		require.EventuallyWithT(t, func(c *assert.CollectT) {
			pid := lockHolder(c)
			require.NotZero(c, pid, "nobody holds the lock")
			require.NotEqual(c, killed, pid, "the killed session holds the lock")
			// Exactly one leader: the dead session's relay stepped down
			// (or it would still count), and one took the lock again.
			require.Equal(c, 1, leaders(lc), "relays that believe they lead")
		}, waitFor, waitTick)
		after := writeEvents(t, b.pool, "after", 10)
		waitDrained(t, b.pool)
		requireExactlyOnce(t, append(before, after...), b.readStream(t))
	})
}
