package outbox

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

const (
	testSchema  = "outboxtest"
	testService = "outboxtest"
	testSource  = "rapport/outboxtest"
	testTenant  = "0190b5c4-7d2e-7000-8000-000000000001"
	testSubject = "rapport.outboxtest.widget.changed"
	// waitFor bounds every require.Eventually; generous because the suite
	// runs with -race on two cores.
	waitFor  = 30 * time.Second
	waitTick = 10 * time.Millisecond
)

// testBundle is one test's world: its own database (platform tables plus a
// widgets table for the business writes) and its own JetStream server with
// the RAPPORT_OUTBOXTEST stream.
type testBundle struct {
	dbURL  string
	pool   *pgxpool.Pool
	nats   *server.Server
	js     jetstream.JetStream
	stream jetstream.Stream
}

type setupOpts struct {
	maxConns int32 // pool size; 0 means 4
	noStream bool  // leave the stream out (publishes fail until it exists)
}

func setup(t testing.TB, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	dbURL := pgdbtest.NewDatabase(t, pgdbtest.Spec{Schema: testSchema})
	b := &testBundle{dbURL: dbURL, pool: openPool(t, dbURL, opts.maxConns)}
	_, err := b.pool.Exec(t.Context(), `CREATE TABLE widgets (
		id      text PRIMARY KEY,
		version bigint NOT NULL DEFAULT 0
	)`)
	require.NoError(t, err)

	b.nats = natstest.Start(t)
	_, b.js = natstest.Connect(t, b.nats)
	if !opts.noStream {
		b.stream = b.ensureStream(t)
	}
	return b
}

// openPool opens a pool on the test's database, closed when the test ends
// (after the relays started on it stop: cleanups run last-in first-out). A
// connection never given back fails the test with where it was acquired
// instead of hanging it (pgdbtest.ClosePool).
func openPool(t testing.TB, dbURL string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	return pgdbtest.Open(t, pgdb.Config{URL: dbURL, Schema: testSchema, MaxConns: maxConns})
}

func (b *testBundle) ensureStream(t testing.TB) jetstream.Stream {
	t.Helper()
	s, err := natsx.EnsureStream(t.Context(), b.js, testService, 1)
	require.NoError(t, err)
	return s
}

// relayConfig is the config most tests run: fast polling, logs into the
// test's output.
func relayConfig(t testing.TB) RelayConfig {
	return RelayConfig{
		Source:       testSource,
		PollInterval: 10 * time.Millisecond,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// runningRelay is a relay's Run in a goroutine.
type runningRelay struct {
	relay  *Relay
	cancel context.CancelFunc
	done   chan error
}

// startRelay runs a relay until the test ends (or stop is called).
func (b *testBundle) startRelay(t testing.TB, pool *pgxpool.Pool, cfg RelayConfig) *runningRelay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	rr := &runningRelay{relay: NewRelay(pool, b.js, cfg), cancel: cancel, done: make(chan error, 1)}
	go func() { rr.done <- rr.relay.Run(ctx) }()
	t.Cleanup(func() { _ = rr.stop(t) })
	return rr
}

// stop cancels Run and returns its result; it fails the test if Run does
// not return in time. Calling it again returns nil.
func (rr *runningRelay) stop(t testing.TB) error {
	t.Helper()
	rr.cancel()
	select {
	case err, ok := <-rr.done:
		if ok {
			close(rr.done)
		}
		return err
	case <-time.After(waitFor):
		// Its pool's Close would wait for the connection it holds: say
		// where it is stuck.
		t.Errorf("relay did not stop within %s; relay goroutines:\n%s", waitFor, goroutinesIn("outbox.(*Relay)"))
		return nil
	}
}

// goroutinesIn returns the stacks of the goroutines with a frame whose
// function name contains fn.
func goroutinesIn(fn string) string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		return err.Error()
	}
	var out strings.Builder
	for g := range strings.SplitSeq(buf.String(), "\n\n") {
		if strings.Contains(g, fn) {
			out.WriteString(g + "\n\n")
		}
	}
	return out.String()
}

// testEvent is a valid event of aggregate widget/<aggregateID>.
func testEvent(aggregateID string, version int64) Event {
	id := uuid.Must(uuid.NewV7())
	return Event{
		ID:               id,
		TenantID:         testTenant,
		Subject:          testSubject,
		AggregateType:    "widget",
		AggregateID:      aggregateID,
		AggregateVersion: version,
		Payload:          wrapperspb.String(id.String()),
	}
}

// writeEvents commits n events, one transaction each, on aggregates
// <prefix>-0 … with version 1, and returns their ids in commit order.
func writeEvents(t testing.TB, pool *pgxpool.Pool, prefix string, n int) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, 0, n)
	for i := range n {
		e := testEvent(prefix+"-"+strconv.Itoa(i), 1)
		err := pgdb.InTx(t.Context(), pool, func(tx pgx.Tx) error { return Write(t.Context(), tx, e) })
		require.NoError(t, err)
		ids = append(ids, e.ID)
	}
	return ids
}

// waitDrained waits until no committed event is pending.
func waitDrained(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		lag, err := queries.OutboxLag(t.Context(), pool)
		require.NoError(c, err)
		require.Zero(c, lag.Pending, "pending events")
	}, waitFor, waitTick)
}

// streamEvent is one stored message, as a consumer would read it.
type streamEvent struct {
	id          uuid.UUID
	aggregateID string
	version     int64
	msg         *jetstream.RawStreamMsg
}

// readStream returns every message in the stream, in stream order.
func (b *testBundle) readStream(t testing.TB) []streamEvent {
	t.Helper()
	info, err := b.stream.Info(t.Context())
	require.NoError(t, err)
	out := make([]streamEvent, 0, info.State.Msgs)
	if info.State.Msgs == 0 {
		return out
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := b.stream.GetMsg(t.Context(), seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		require.NoError(t, err)
		id, err := uuid.Parse(m.Header.Get(natsx.HeaderID))
		require.NoError(t, err, "ce-id of stream message %d", seq)
		require.Equal(t, id.String(), m.Header.Get(natsx.HeaderMsgID), "Nats-Msg-Id of stream message %d", seq)
		v, err := strconv.ParseInt(m.Header.Get(HeaderAggregateVersion), 10, 64)
		require.NoError(t, err, "aggregate version of stream message %d", seq)
		out = append(out, streamEvent{id: id, aggregateID: m.Header.Get(HeaderAggregateID), version: v, msg: m})
	}
	return out
}

// streamIDs returns the ids in the stream and how many times each occurs.
func streamIDs(events []streamEvent) map[uuid.UUID]int {
	ids := make(map[uuid.UUID]int, len(events))
	for _, e := range events {
		ids[e.id]++
	}
	return ids
}

// requireExactlyOnce fails unless the stream holds each of want exactly
// once and nothing else.
func requireExactlyOnce(t testing.TB, want []uuid.UUID, got []streamEvent) {
	t.Helper()
	counts := streamIDs(got)
	var missing, doubled []uuid.UUID
	for _, id := range want {
		switch counts[id] {
		case 0:
			missing = append(missing, id)
		case 1:
		default:
			doubled = append(doubled, id)
		}
	}
	require.Zero(t, len(missing), "%d committed events missing from the stream, first %v", len(missing), firstIDs(missing))
	require.Zero(t, len(doubled), "%d events stored more than once, first %v", len(doubled), firstIDs(doubled))
	require.Len(t, got, len(want), "stream holds events that were never committed")
}

// firstIDs keeps failure messages short.
func firstIDs(ids []uuid.UUID) []uuid.UUID { return ids[:min(len(ids), 5)] }

// metricValue reads one sample of a registry's metric for testSource. t may
// be an EventuallyWithT collector.
func metricValue(t require.TestingT, reg *prometheus.Registry, name string) float64 {
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "source" && l.GetValue() == testSource {
					if c := m.GetCounter(); c != nil {
						return c.GetValue()
					}
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Errorf("metric %s{source=%q} not registered", name, testSource)
	t.FailNow()
	return 0
}
