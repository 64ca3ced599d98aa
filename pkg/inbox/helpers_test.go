package inbox

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

const (
	testSchema  = "inboxtest"
	testService = "inboxtest"
	testSubject = "rapport.inboxtest.thing.happened"
	// settleTimeout bounds every wait for the consumer to drain.
	settleTimeout = 45 * time.Second
)

var testStream = natsx.StreamName(testService)

type testBundle struct {
	pool *pgxpool.Pool
	js   jetstream.JetStream
	reg  *prometheus.Registry
	logs *syncBuffer
}

// setup gives a test its own migrated database, with a business table
// `effects` whose counter each handler bumps once per applied event, and its
// own JetStream server holding the inboxtest stream.
func setup(t *testing.T) *testBundle {
	t.Helper()
	ctx := t.Context()
	dbURL := pgdbtest.NewDatabase(t, pgdbtest.Spec{Schema: testSchema})
	// More connections than pgxpool's default (4 on 2 cores): up to 8
	// workers each hold one for their transaction, and the hooks query too.
	pool := pgdbtest.Open(t, pgdb.Config{URL: dbURL, Schema: testSchema, MaxConns: 24})
	_, err := pool.Exec(ctx, `CREATE TABLE effects (event_id text PRIMARY KEY, applied integer NOT NULL)`)
	require.NoError(t, err)

	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	_, err = natsx.EnsureStream(ctx, js, testService, 1)
	require.NoError(t, err)
	return &testBundle{pool: pool, js: js, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
}

// config is a test Config: fast retries, metrics and logs captured.
func (b *testBundle) config(consumer string) Config {
	return Config{
		Consumer:     consumer,
		Stream:       testStream,
		NakDelayFunc: func(uint64) time.Duration { return 10 * time.Millisecond },
		Logger:       slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:   b.reg,
	}
}

// applyEffect is the business effect: applied counts how often it ran.
func applyEffect(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `INSERT INTO effects (event_id, applied) VALUES ($1, 1)
		ON CONFLICT (event_id) DO UPDATE SET applied = effects.applied + 1`, id)
	return err
}

// eventHeader is what the outbox relay sets.
func eventHeader(id string) nats.Header {
	h := nats.Header{}
	h.Set(natsx.HeaderSpecVersion, natsx.SpecVersion)
	h.Set(natsx.HeaderID, id)
	h.Set(natsx.HeaderMsgID, id)
	h.Set(natsx.HeaderType, "rapport.inboxtest.v1.ThingHappened")
	h.Set(natsx.HeaderTenant, "0197a3c4-0000-7000-8000-000000000001")
	return h
}

func publish(t testing.TB, js jetstream.JetStream, subject string, h nats.Header, data []byte) *jetstream.PubAck {
	t.Helper()
	ack, err := js.PublishMsg(t.Context(), &nats.Msg{Subject: subject, Header: h, Data: data})
	require.NoError(t, err)
	return ack
}

// run starts c.Run and returns a stop that cancels it and requires it to
// return nil; stop also runs at cleanup, before the pool and server close.
func run(t *testing.T, c *Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30 s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func consumerInfo(t testing.TB, js jetstream.JetStream, name string) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := js.Consumer(t.Context(), testStream, name)
	require.NoError(t, err)
	info, err := cons.Info(t.Context())
	require.NoError(t, err)
	return info
}

// drained reports whether the consumer has nothing left to deliver and
// nothing delivered but unsettled (nak'ed messages waiting out their delay
// count as pending acks).
func drained(t testing.TB, js jetstream.JetStream, name string) bool {
	t.Helper()
	cons, err := js.Consumer(t.Context(), testStream, name)
	if err != nil {
		return false // Run has not created it yet
	}
	info, err := cons.Info(t.Context())
	require.NoError(t, err)
	return info.NumPending == 0 && info.NumAckPending == 0
}

// metricValue sums a counter (or a histogram's sample count) for consumer.
func metricValue(t testing.TB, reg *prometheus.Registry, name, consumer string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "consumer" && l.GetValue() == consumer {
					sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
				}
			}
		}
	}
	return sum
}

func queryInt(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), sql, args...).Scan(&n))
	return n
}

// tally counts per event id, safely across workers.
type tally struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *tally) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[id]++
	return c.n[id]
}

func (c *tally) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

func (c *tally) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeJetStream satisfies the interface for tests of New, which never
// calls it.
type fakeJetStream struct{ jetstream.JetStream }
