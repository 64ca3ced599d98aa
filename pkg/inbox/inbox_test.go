package inbox

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
)

// TestExactlyOnceUnderRedelivery is NATS-02: 200 events, each delivered
// about 5 times by handler naks, an AckWait expiry while a hung handler
// still holds its transaction, and "crashes" between commit and ack.
func TestExactlyOnceUnderRedelivery(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const (
		name      = "nats02"
		events    = 200
		hangEvery = 40 // 5 hung handlers, fewer than the 8 workers
	)
	id := func(i int) string { return fmt.Sprintf("evt-%03d", i) }
	hangs := map[string]bool{}
	for i := 0; i < events; i += hangEvery {
		hangs[id(i)] = true
	}

	var (
		attempts, deliveries, acks tally
		mu                         sync.Mutex
		maxDelivered               = map[string]uint64{}
		// hung[id] is closed by the first delivery after the hung one.
		hung        = map[string]chan struct{}{}
		hungAt      = map[string]uint64{}
		released    atomic.Int64 // hung handlers woken by a concurrent redelivery
		notCommited atomic.Int64 // acks before the effect was visible
	)
	h := func(ctx context.Context, tx pgx.Tx, m Message) error {
		n := attempts.add(m.ID)
		if n <= 2 {
			return errors.New("downstream unavailable")
		}
		if err := applyEffect(ctx, tx, m.ID); err != nil {
			return err
		}
		if n == 3 && hangs[m.ID] {
			// Hang past HandlerTimeout, ignoring ctx like a stuck call
			// would: heartbeats stop, AckWait expires, and the server
			// redelivers while this transaction still holds the inbox row.
			ch := make(chan struct{})
			mu.Lock()
			hung[m.ID], hungAt[m.ID] = ch, m.NumDelivered
			mu.Unlock()
			select {
			case <-ch:
				released.Add(1)
			case <-time.After(30 * time.Second):
			}
		}
		return nil
	}

	cfg := b.config(name)
	cfg.AckWait = time.Second
	cfg.HandlerTimeout = 1500 * time.Millisecond
	cfg.Workers = 8
	c, err := New(b.pool, b.js, cfg, h)
	require.NoError(t, err)
	c.onDelivery = func(m Message) {
		deliveries.add(m.ID)
		mu.Lock()
		defer mu.Unlock()
		maxDelivered[m.ID] = max(maxDelivered[m.ID], m.NumDelivered)
		if ch, ok := hung[m.ID]; ok && m.NumDelivered > hungAt[m.ID] {
			close(ch)
			delete(hung, m.ID)
		}
	}
	c.beforeSettle = func(m Message, s settlement) bool {
		if s != settleAck {
			return true
		}
		// Ack after commit: another connection must already see the
		// effect and the inbox row.
		var applied int
		err := b.pool.QueryRow(context.Background(), `SELECT e.applied FROM effects e
			JOIN inbox i ON i.event_id = e.event_id AND i.consumer = $2
			WHERE e.event_id = $1`, m.ID, name).Scan(&applied)
		if err != nil || applied != 1 {
			notCommited.Add(1)
		}
		// The first two acks of each event are lost to a simulated kill
		// between commit and ack.
		return acks.add(m.ID) > 2
	}

	for i := range events {
		publish(t, b.js, testSubject, eventHeader(id(i)), []byte("payload "+id(i)))
	}
	stop := run(t, c)
	require.Eventually(t, func() bool {
		got := acks.snapshot()
		if len(got) < events {
			return false
		}
		for _, n := range got {
			if n < 3 {
				return false
			}
		}
		return drained(t, b.js, name)
	}, settleTimeout, 50*time.Millisecond)
	stop()

	require.Equal(t, int64(0), notCommited.Load(), "acks sent before the effect committed")
	require.Equal(t, events, queryInt(t, b.pool, `SELECT count(*) FROM effects`))
	require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM effects WHERE applied <> 1`), "effects applied more than once")
	require.Equal(t, events, queryInt(t, b.pool, `SELECT count(*) FROM inbox WHERE consumer = $1`, name))
	require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM dead_letters`))
	require.Equal(t, int64(len(hangs)), released.Load(), "every hung handler saw its event redelivered (AckWait expiry)")

	total := 0
	for i := range events {
		require.Equal(t, 3, attempts.get(id(i)), "handler runs of %s", id(i))
		require.GreaterOrEqual(t, maxDelivered[id(i)], uint64(5), "deliveries of %s", id(i))
		total += deliveries.get(id(i))
	}
	require.Equal(t, float64(total-events), metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
	require.Positive(t, metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
	require.Equal(t, float64(events), metricValue(t, b.reg, "rapport_inbox_processed_total", name))
	require.GreaterOrEqual(t, metricValue(t, b.reg, "rapport_inbox_duplicates_total", name), float64(2*events))
	require.Equal(t, float64(0), metricValue(t, b.reg, "rapport_inbox_parked_total", name))
	t.Logf("chaos: test=NATS-02 seed=0 faults=%d attempted=%d acknowledged=%d rejected=0 indeterminate=0 resolved=0 lost=0 duplicated=0 invariant_violations=0",
		total-events, events, events)
}

// TestPoisonAndInvalidEventsAreParked is NATS-03: among 100 good events, a
// poison one (always a transient error) is delivered MaxDeliver times then
// parked; one without an id and one the handler calls Permanent are parked
// after a single delivery; the rest are applied and the consumer drains.
func TestPoisonAndInvalidEventsAreParked(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const (
		name      = "nats03"
		good      = 100
		poison    = "evt-poison"
		permanent = "evt-permanent"
		noIDSubj  = "rapport.inboxtest.thing.garbled"
		// Markers that must never reach a log line.
		payloadMarker = "PII-MARKER-payload"
		headerMarker  = "PII-MARKER-header"
	)
	var attempts, deliveries tally
	h := func(ctx context.Context, tx pgx.Tx, m Message) error {
		attempts.add(m.ID)
		switch m.ID {
		case poison:
			return errors.New("poison: downstream rejects it every time")
		case permanent:
			return Permanent(errors.New("payload does not decode"))
		}
		return applyEffect(ctx, tx, m.ID)
	}
	cfg := b.config(name)
	cfg.MaxDeliver = 3
	cfg.Workers = 4
	c, err := New(b.pool, b.js, cfg, h)
	require.NoError(t, err)
	var (
		mu         sync.Mutex
		poisonSeen []time.Time
	)
	c.onDelivery = func(m Message) {
		if m.ID == "" {
			deliveries.add(m.Subject)
			return
		}
		deliveries.add(m.ID)
		if m.ID == poison {
			mu.Lock()
			poisonSeen = append(poisonSeen, time.Now())
			mu.Unlock()
		}
	}

	for i := range good {
		id := fmt.Sprintf("evt-%03d", i)
		hdr := eventHeader(id)
		if i%10 == 0 {
			hdr.Del(natsx.HeaderID) // Nats-Msg-Id alone identifies it
		}
		publish(t, b.js, testSubject, hdr, []byte(payloadMarker))
		if i == good/2 {
			publish(t, b.js, testSubject, eventHeader(poison), []byte(payloadMarker))
			publish(t, b.js, testSubject, eventHeader(permanent), []byte(payloadMarker))
		}
	}
	noIDHdr := nats.Header{}
	noIDHdr.Set(natsx.HeaderType, headerMarker)
	noIDAck := publish(t, b.js, noIDSubj, noIDHdr, []byte(payloadMarker))

	stop := run(t, c)
	require.Eventually(t, func() bool {
		return queryInt(t, b.pool, `SELECT count(*) FROM dead_letters`) == 3 && drained(t, b.js, name)
	}, settleTimeout, 50*time.Millisecond)
	stop()

	require.Equal(t, 3, deliveries.get(poison), "poison deliveries")
	require.Equal(t, 3, attempts.get(poison))
	// Retries follow NakDelayFunc (10 ms here), not the 30 s AckWait: a
	// consumer BackOff that grows past AckWait would stretch them (see
	// ConsumerConfig).
	for i := 1; i < len(poisonSeen); i++ {
		require.Less(t, poisonSeen[i].Sub(poisonSeen[i-1]), 10*time.Second, "gap before poison delivery %d", i+1)
	}
	require.Equal(t, 1, deliveries.get(permanent), "permanent-error deliveries")
	require.Equal(t, 1, attempts.get(permanent))
	require.Equal(t, 1, deliveries.get(noIDSubj), "id-less deliveries")

	type parked struct {
		subject, reason, headerType, payload string
		deliveries                           int
	}
	rows, err := b.pool.Query(t.Context(), `SELECT event_id, subject, reason,
		coalesce(headers->'ce-type'->>0, ''), convert_from(payload, 'UTF8'), deliveries
		FROM dead_letters WHERE consumer = $1`, name)
	require.NoError(t, err)
	got := map[string]parked{}
	for rows.Next() {
		var id string
		var p parked
		require.NoError(t, rows.Scan(&id, &p.subject, &p.reason, &p.headerType, &p.payload, &p.deliveries))
		got[id] = p
	}
	require.NoError(t, rows.Err())
	noID := fmt.Sprintf("stream-seq:%s:%d", testStream, noIDAck.Sequence)
	require.Len(t, got, 3)
	require.Equal(t, 3, got[poison].deliveries)
	require.Contains(t, got[poison].reason, "poison: downstream rejects it every time")
	require.Equal(t, 1, got[permanent].deliveries)
	require.Contains(t, got[permanent].reason, "payload does not decode")
	require.Equal(t, parked{noIDSubj, "no ce-id or Nats-Msg-Id header", headerMarker, payloadMarker, 1}, got[noID])
	require.Equal(t, "rapport.inboxtest.v1.ThingHappened", got[poison].headerType)
	require.Equal(t, payloadMarker, got[poison].payload)

	require.Equal(t, good, queryInt(t, b.pool, `SELECT count(*) FROM effects WHERE applied = 1`))
	require.Equal(t, good, queryInt(t, b.pool, `SELECT count(*) FROM effects`))
	require.Equal(t, good, queryInt(t, b.pool, `SELECT count(*) FROM inbox WHERE consumer = $1`, name),
		"parked events leave no inbox row")
	require.Equal(t, 1, queryInt(t, b.pool, `SELECT count(*) FROM inbox WHERE event_id = 'evt-050'`),
		"an event identified by Nats-Msg-Id alone")

	info := consumerInfo(t, b.js, name)
	require.Zero(t, info.NumPending)
	require.Zero(t, info.NumAckPending)
	require.Equal(t, float64(good), metricValue(t, b.reg, "rapport_inbox_processed_total", name))
	require.Equal(t, float64(3), metricValue(t, b.reg, "rapport_inbox_parked_total", name))
	require.Equal(t, float64(2), metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
	require.Equal(t, float64(good+3+1), metricValue(t, b.reg, "rapport_inbox_handler_seconds", name))

	logs := b.logs.String()
	require.Contains(t, logs, "event parked", "the logs were captured")
	require.NotContains(t, logs, payloadMarker)
	require.NotContains(t, logs, headerMarker)
	t.Logf("chaos: test=NATS-03 seed=0 faults=3 attempted=%d acknowledged=%d rejected=3 indeterminate=0 resolved=0 lost=0 duplicated=0 invariant_violations=0",
		good+3, good)
}

// TestSlowHandler is NATS-04: a handler slower than AckWait, with a second
// worker idle so that any redelivery would be picked up at once.
func TestSlowHandler(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name           string
		handlerTimeout time.Duration
		redelivered    bool
	}{
		// Heartbeats every AckWait/3 keep the 2.5 s delivery alive.
		{name: "IsNotRedeliveredWhileItReportsProgress", redelivered: false},
		// Negative control: heartbeats stop at 1.2 s, so the server
		// redelivers at about 2.2 s while the handler still runs; the
		// inbox still applies the effect once.
		{name: "IsRedeliveredOnceHeartbeatsStopButAppliesOnce", handlerTimeout: 1200 * time.Millisecond, redelivered: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			name := "nats04"
			const id = "evt-slow"
			var deliveries, acks tally
			h := func(ctx context.Context, tx pgx.Tx, m Message) error {
				if err := applyEffect(ctx, tx, m.ID); err != nil {
					return err
				}
				// Slow but healthy work, longer than AckWait.
				<-time.After(2500 * time.Millisecond)
				return nil
			}
			cfg := b.config(name)
			cfg.AckWait = time.Second
			cfg.Workers = 2
			cfg.HandlerTimeout = tc.handlerTimeout
			c, err := New(b.pool, b.js, cfg, h)
			require.NoError(t, err)
			c.onDelivery = func(m Message) { deliveries.add(m.ID) }
			c.beforeSettle = func(m Message, s settlement) bool {
				if s == settleAck {
					acks.add(m.ID)
				}
				return true
			}
			publish(t, b.js, testSubject, eventHeader(id), []byte("slow"))
			stop := run(t, c)
			require.Eventually(t, func() bool {
				return acks.get(id) > 0 && drained(t, b.js, name)
			}, settleTimeout, 50*time.Millisecond)
			stop()

			require.Equal(t, 1, queryInt(t, b.pool, `SELECT applied FROM effects WHERE event_id = $1`, id))
			require.Equal(t, float64(1), metricValue(t, b.reg, "rapport_inbox_processed_total", name))
			info := consumerInfo(t, b.js, name)
			if !tc.redelivered {
				require.Equal(t, 1, deliveries.get(id))
				require.Zero(t, info.NumRedelivered)
				require.Equal(t, float64(0), metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
				return
			}
			require.GreaterOrEqual(t, deliveries.get(id), 2)
			require.Positive(t, metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
			require.Positive(t, metricValue(t, b.reg, "rapport_inbox_duplicates_total", name))
		})
	}
}

// TestRunStopsGracefully: cancelling Run's context while a handler runs
// stops pulling, lets the handler finish with a live context, acks its
// message, and only then returns.
func TestRunStopsGracefully(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const name = "graceful"
	started, release := make(chan struct{}), make(chan struct{})
	handlerCtxErr := make(chan error, 1)
	var attempts tally
	h := func(ctx context.Context, tx pgx.Tx, m Message) error {
		if attempts.add(m.ID) == 1 && m.ID == "evt-inflight" {
			close(started)
			<-release
			handlerCtxErr <- ctx.Err()
		}
		return applyEffect(ctx, tx, m.ID)
	}
	cfg := b.config(name)
	// One worker: it is busy in the handler, so no pull is outstanding
	// when the context ends and the second event cannot be fetched.
	cfg.Workers = 1
	c, err := New(b.pool, b.js, cfg, h)
	require.NoError(t, err)
	publish(t, b.js, testSubject, eventHeader("evt-inflight"), []byte("x"))

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	select {
	case <-started:
	case <-time.After(settleTimeout):
		t.Fatal("the handler never started")
	}
	cancel()
	publish(t, b.js, testSubject, eventHeader("evt-after-stop"), []byte("y"))
	require.Never(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}, 500*time.Millisecond, 10*time.Millisecond, "Run returned while a handler was running")
	close(release)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(settleTimeout):
		t.Fatal("Run did not return after the handler finished")
	}

	require.NoError(t, <-handlerCtxErr, "the in-flight handler's context was cancelled")
	info := consumerInfo(t, b.js, name)
	require.Zero(t, info.NumAckPending, "the in-flight message was left unacked")
	require.Equal(t, uint64(1), info.NumPending, "an event published after the stop was fetched")
	require.Equal(t, 1, queryInt(t, b.pool, `SELECT count(*) FROM effects`))
	require.Equal(t, 1, queryInt(t, b.pool, `SELECT applied FROM effects WHERE event_id = 'evt-inflight'`))
	require.Equal(t, 0, attempts.get("evt-after-stop"))
}

// TestLastAttempt covers the spare delivery past MaxDeliver: an event whose
// last attempt never settled is parked by it, not dropped by the server.
func TestLastAttempt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// failFirst: the handler fails delivery 1 only; else always.
		failFirst bool
		// killAt is the step skipped on delivery 2, the last attempt.
		killAt settlement
		parked bool
	}{
		{name: "KilledBeforeParkingIsParkedBySpareDelivery", killAt: settlePark, parked: true},
		{name: "KilledAfterCommitIsAckedBySpareDelivery", failFirst: true, killAt: settleAck, parked: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t)
			const name, id = "lastattempt", "evt-last"
			var attempts, deliveries tally
			h := func(ctx context.Context, tx pgx.Tx, m Message) error {
				if n := attempts.add(m.ID); n == 1 || !tc.failFirst {
					return errors.New("downstream unavailable")
				}
				return applyEffect(ctx, tx, m.ID)
			}
			cfg := b.config(name)
			cfg.MaxDeliver = 2
			cfg.AckWait = time.Second
			c, err := New(b.pool, b.js, cfg, h)
			require.NoError(t, err)
			c.onDelivery = func(m Message) { deliveries.add(m.ID) }
			c.beforeSettle = func(m Message, s settlement) bool {
				return !(m.NumDelivered == 2 && s == tc.killAt)
			}
			publish(t, b.js, testSubject, eventHeader(id), []byte("last"))
			stop := run(t, c)
			require.Eventually(t, func() bool {
				return deliveries.get(id) == 3 && drained(t, b.js, name)
			}, settleTimeout, 50*time.Millisecond)
			stop()

			require.Equal(t, 2, attempts.get(id), "the spare delivery never runs the handler")
			require.Equal(t, float64(2), metricValue(t, b.reg, "rapport_inbox_redeliveries_total", name))
			if tc.parked {
				var reason string
				var n int
				require.NoError(t, b.pool.QueryRow(t.Context(),
					`SELECT reason, deliveries FROM dead_letters WHERE event_id = $1`, id).Scan(&reason, &n))
				require.Equal(t, 3, n)
				require.Contains(t, reason, "never settled")
				require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM effects`))
				return
			}
			require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM dead_letters`))
			require.Equal(t, 1, queryInt(t, b.pool, `SELECT applied FROM effects WHERE event_id = $1`, id))
			require.Equal(t, float64(1), metricValue(t, b.reg, "rapport_inbox_duplicates_total", name))
		})
	}
}

// TestHandlerPanic: a panicking handler neither ends the process nor
// commits anything; the event is retried, then parked.
func TestHandlerPanic(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const name, id = "panics", "evt-panic"
	var attempts tally
	h := func(ctx context.Context, tx pgx.Tx, m Message) error {
		attempts.add(m.ID)
		if err := applyEffect(ctx, tx, m.ID); err != nil {
			return err
		}
		panic("nil map in handler")
	}
	cfg := b.config(name)
	cfg.MaxDeliver = 2
	c, err := New(b.pool, b.js, cfg, h)
	require.NoError(t, err)
	publish(t, b.js, testSubject, eventHeader(id), []byte("boom"))
	stop := run(t, c)
	require.Eventually(t, func() bool {
		return queryInt(t, b.pool, `SELECT count(*) FROM dead_letters`) == 1 && drained(t, b.js, name)
	}, settleTimeout, 50*time.Millisecond)
	stop()

	require.Equal(t, 2, attempts.get(id))
	require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM effects`), "a panicking handler's writes roll back")
	require.Equal(t, 0, queryInt(t, b.pool, `SELECT count(*) FROM inbox`))
	var reason string
	require.NoError(t, b.pool.QueryRow(t.Context(), `SELECT reason FROM dead_letters WHERE event_id = $1`, id).Scan(&reason))
	require.Contains(t, reason, "handler panicked: nil map in handler")
}

func TestNew(t *testing.T) {
	t.Parallel()
	// New touches neither the pool nor the server; non-nil values will do.
	pool := &pgxpool.Pool{}
	var js jetstream.JetStream = fakeJetStream{}
	h := func(context.Context, pgx.Tx, Message) error { return nil }
	valid := Config{Consumer: "customer-loyalty", Stream: "RAPPORT_CUSTOMER"}

	t.Run("AppliesDefaults", func(t *testing.T) {
		t.Parallel()
		c, err := New(pool, js, valid, h)
		require.NoError(t, err)
		require.Equal(t, DefaultMaxDeliver, c.cfg.MaxDeliver)
		require.Equal(t, DefaultAckWait, c.cfg.AckWait)
		require.Equal(t, 1, c.cfg.Workers)
		require.Equal(t, 5*DefaultAckWait, c.cfg.HandlerTimeout)

		cc := c.ConsumerConfig()
		require.Equal(t, "customer-loyalty", cc.Durable)
		require.Equal(t, jetstream.AckExplicitPolicy, cc.AckPolicy)
		require.Equal(t, DefaultMaxDeliver+1, cc.MaxDeliver, "one spare delivery")
		// The server hears from a running handler every AckWait/3.
		require.NoError(t, natsx.CheckConsumerConfig(cc, c.cfg.AckWait/3))
	})

	t.Run("RejectsBadConfig", func(t *testing.T) {
		t.Parallel()
		for name, mutate := range map[string]func(*Config){
			"NoConsumer":       func(c *Config) { c.Consumer = "" },
			"DottedConsumer":   func(c *Config) { c.Consumer = "a.b" },
			"WildcardConsumer": func(c *Config) { c.Consumer = "a*" },
			"NoStream":         func(c *Config) { c.Stream = "" },
			"NegativeWorkers":  func(c *Config) { c.Workers = -1 },
			"NegativeAckWait":  func(c *Config) { c.AckWait = -time.Second },
		} {
			cfg := valid
			mutate(&cfg)
			_, err := New(pool, js, cfg, h)
			require.Error(t, err, name)
		}
		_, err := New(pool, js, valid, nil)
		require.Error(t, err, "nil handler")
		_, err = New(nil, js, valid, h)
		require.Error(t, err, "nil pool")
	})

	t.Run("SharesARegistererAcrossConsumers", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		for _, name := range []string{"one", "two"} {
			cfg := valid
			cfg.Consumer, cfg.Registerer = name, reg
			c, err := New(pool, js, cfg, h)
			require.NoError(t, err)
			c.metrics.processed()
		}
		require.Equal(t, float64(1), metricValue(t, reg, "rapport_inbox_processed_total", "one"))
		require.Equal(t, float64(1), metricValue(t, reg, "rapport_inbox_processed_total", "two"))
	})

	t.Run("RejectsAClashingMetric", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "rapport_inbox_parked_total", Help: "other"}))
		cfg := valid
		cfg.Registerer = reg
		_, err := New(pool, js, cfg, h)
		require.Error(t, err)
	})
}

func TestPermanent(t *testing.T) {
	t.Parallel()
	cause := errors.New("bad payload")
	require.NoError(t, Permanent(nil))
	require.True(t, IsPermanent(Permanent(cause)))
	require.True(t, IsPermanent(fmt.Errorf("handle: %w", Permanent(cause))))
	require.ErrorIs(t, Permanent(cause), cause)
	require.Equal(t, cause.Error(), Permanent(cause).Error())
	require.False(t, IsPermanent(cause))
	require.False(t, IsPermanent(nil))
}

func TestDefaultNakDelay(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]time.Duration{
		0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		9: 256 * time.Second, 10: 5 * time.Minute, 1 << 40: 5 * time.Minute,
	} {
		require.Equal(t, want, defaultNakDelay(n), "delivery %d", n)
	}
}
