// Package inbox is the consuming side of Rapport's events: it turns
// JetStream's at-least-once delivery into an effect applied exactly once per
// consumer (RELIABILITY.md §1.3, STYLE.md rule 21).
//
// # The guarantee
//
// For each delivery the Consumer opens one PostgreSQL transaction, inserts
// the row inbox(consumer, event_id) with ON CONFLICT DO NOTHING, runs the
// Handler in that same transaction, commits, and only then acks:
//
//   - The inbox row and the effect commit together or not at all, so "the
//     effect happened" and "the event is marked applied" can never disagree.
//   - A redelivery of an applied event inserts 0 rows: it is acked and its
//     handler is not run. A redelivery racing the first delivery (AckWait
//     expired while the first still ran) blocks on the inbox primary key
//     until the first transaction ends, then sees its row.
//   - The ack comes after the commit, never before: an ack before commit
//     followed by a crash loses the event, while a commit followed by a
//     crash before the ack only causes a redelivery, which the inbox row
//     absorbs. Delivery counts and ack timing are therefore irrelevant to
//     correctness; a late ack can even follow a redelivery (nats-server
//     #4786) without harm.
//
// The transport alone never gives exactly-once; the inbox row does, so a
// Handler must put every effect that matters in the given pgx.Tx. Effects
// outside the database (an email, an HTTP call) are at-least-once and need
// their own idempotency key, e.g. the event id.
//
// # Failures
//
// A handler error rolls the transaction back (inbox row included) and the
// event is retried with NakWithDelay, growing with the delivery count. An
// error wrapped by Permanent, an event without an id, and an event still
// failing on its MaxDeliver-th delivery are parked in dead_letters (their own
// transaction) and then Term'ed, so poison never blocks or loops and stays
// visible to an operator. A handler's panic counts as an error.
//
// The durable consumer allows one delivery more than MaxDeliver: if the last
// attempt never settled (process killed, heartbeat lost), that spare
// delivery parks the event instead of the server silently dropping it. If
// the last attempt did commit, the spare delivery finds the inbox row and
// only acks.
//
// While a delivery is processed the Consumer sends InProgress every
// AckWait/3, so a slow but healthy handler is not redelivered; it stops at
// HandlerTimeout, so a hung one is.
//
// The package owns the inbox and dead_letters tables (migrated by pgdb) and
// nothing else: it does not decode payloads, create streams, or publish.
// Logs carry event ids, subjects and delivery counts, never payloads or
// headers, which can hold PII.
package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/inbox/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

// Defaults for the zero Config.
const (
	DefaultMaxDeliver = natsx.DefaultMaxDeliver
	DefaultAckWait    = natsx.DefaultAckWait
	DefaultWorkers    = 1
	// DefaultHandlerTimeoutFactor times AckWait is the default
	// HandlerTimeout: heartbeats let a handler outlive AckWait, but not
	// forever.
	DefaultHandlerTimeoutFactor = 5
	// maxNakDelay caps the default retry delay.
	maxNakDelay = 5 * time.Minute
	// pullWait bounds one pull request. Short enough that a consumer
	// deleted under a running Run is noticed, long enough not to spin.
	pullWait = 30 * time.Second
	// ackTimeout bounds the wait for the server to confirm an ack.
	ackTimeout = 5 * time.Second
	// pullRetryDelay is the pause after a failed pull (broker away).
	pullRetryDelay = time.Second
)

// Message is one delivery of an event, as the Handler sees it.
type Message struct {
	// ID is the event id (ce-id, else Nats-Msg-Id): the outbox row id, and
	// the key of the inbox row.
	ID string
	// Subject is the NATS subject, rapport.<svc>.<aggregate>.<event>.
	Subject string
	// Type is ce-type; TenantID is rapport-tenant. Both may be empty.
	Type     string
	TenantID string
	// Data is the payload, the producer's events.proto message.
	Data   []byte
	Header nats.Header
	// NumDelivered counts deliveries of this event to this consumer, from 1.
	NumDelivered uint64
}

// Handler applies an event's effect inside tx, the transaction that also
// records the event in the inbox. It must not commit or roll back tx, and
// should keep every effect that must happen once in tx. An error rolls
// everything back and the event is retried, unless wrapped by Permanent.
// ctx ends at the HandlerTimeout. Errors are logged and stored in
// dead_letters: like every Rapport error, they must not carry PII.
type Handler func(ctx context.Context, tx pgx.Tx, m Message) error

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that no retry can fix (an event that does not
// decode, a reference that can never exist): the event is parked in
// dead_letters and Term'ed on this delivery. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, came from Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Config configures a Consumer. Zero fields take their defaults.
type Config struct {
	// Consumer is the durable consumer's name and the inbox rows'
	// consumer column. Required; letters, digits, '-' and '_' only.
	Consumer string
	// Stream is the stream to consume, e.g. RAPPORT_CUSTOMER. Required.
	Stream string
	// FilterSubjects limits the consumer to these subjects (wildcards
	// allowed); empty means the whole stream.
	FilterSubjects []string
	// MaxDeliver is how many times the handler may see an event before it
	// is parked; default DefaultMaxDeliver. The server-side consumer gets
	// one more (see the package documentation).
	MaxDeliver int
	// AckWait is how long a delivery may go without an ack or heartbeat
	// before the server redelivers it; default DefaultAckWait.
	AckWait time.Duration
	// Workers is how many handlers run at once; default DefaultWorkers.
	// Each holds a pool connection for its transaction, so keep the pool's
	// MaxConns above the sum of Workers of the consumers sharing it.
	Workers int
	// HandlerTimeout bounds one delivery's claim and handler: the handler's
	// ctx ends then, and heartbeats stop, so a handler that ignores its ctx
	// is redelivered after AckWait. Default DefaultHandlerTimeoutFactor ×
	// AckWait.
	HandlerTimeout time.Duration
	// NakDelayFunc returns the delay before retrying an event whose
	// delivery numDelivered failed. Default 1 s doubling, capped at 5 min.
	NakDelayFunc func(numDelivered uint64) time.Duration
	// Logger defaults to discarding.
	Logger *slog.Logger
	// Registerer receives the rapport_inbox_* metrics; nil registers none.
	// Several consumers may share one Registerer.
	Registerer prometheus.Registerer
}

// Consumer applies the events of one durable JetStream consumer.
type Consumer struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	cfg     Config
	handler Handler
	log     *slog.Logger
	metrics *metrics
	queries *dbgen.Queries
	running atomic.Bool

	// Test hooks, set before Run.
	//
	// onDelivery sees every delivery before it is processed.
	onDelivery func(Message)
	// beforeSettle runs before each ack, nak or park; false skips that step
	// and everything after it for this delivery, as if the process were
	// killed there.
	beforeSettle func(Message, settlement) bool
}

// settlement names the step a delivery ends with, for the test hook.
type settlement int

const (
	settleAck  settlement = iota + 1 // after the commit, before the ack
	settleNak                        // after the rollback, before the nak
	settlePark                       // before the dead letter is written
)

// New checks cfg and returns a Consumer; Run starts it.
func New(pool *pgxpool.Pool, js jetstream.JetStream, cfg Config, h Handler) (*Consumer, error) {
	if pool == nil || js == nil || h == nil {
		return nil, errors.New("inbox.New: pool, jetstream and handler are required")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("inbox.New: %w", err)
	}
	m, err := newMetrics(cfg.Registerer, cfg.Consumer)
	if err != nil {
		return nil, fmt.Errorf("inbox.New: %w", err)
	}
	return &Consumer{
		pool:    pool,
		js:      js,
		cfg:     cfg,
		handler: h,
		log:     cfg.Logger.With("consumer", cfg.Consumer, "stream", cfg.Stream),
		metrics: m,
		queries: dbgen.New(),
	}, nil
}

func (c Config) withDefaults() (Config, error) {
	if err := checkName("consumer", c.Consumer); err != nil {
		return c, err
	}
	if err := checkName("stream", c.Stream); err != nil {
		return c, err
	}
	if c.MaxDeliver < 0 || c.AckWait < 0 || c.Workers < 0 || c.HandlerTimeout < 0 {
		return c, errors.New("negative MaxDeliver, AckWait, Workers or HandlerTimeout")
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = DefaultMaxDeliver
	}
	if c.AckWait == 0 {
		c.AckWait = DefaultAckWait
	}
	if c.Workers == 0 {
		c.Workers = DefaultWorkers
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = DefaultHandlerTimeoutFactor * c.AckWait
	}
	if c.NakDelayFunc == nil {
		c.NakDelayFunc = defaultNakDelay
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// checkName accepts what JetStream accepts as a stream or durable name and
// what reads well in a metric label.
func checkName(kind, v string) error {
	if v == "" {
		return fmt.Errorf("empty %s name", kind)
	}
	for _, r := range v {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
		if !ok {
			return fmt.Errorf("%s name %q: only letters, digits, '-' and '_' are allowed", kind, v)
		}
	}
	return nil
}

// defaultNakDelay is 1 s, 2 s, 4 s, … after deliveries 1, 2, 3, …, capped.
func defaultNakDelay(numDelivered uint64) time.Duration {
	shift := min(max(numDelivered, 1)-1, 16)
	return min(time.Second<<shift, maxNakDelay)
}

// ConsumerConfig is the durable consumer Run creates or updates.
func (c *Consumer) ConsumerConfig() jetstream.ConsumerConfig {
	return natsx.ConsumerConfig(c.cfg.Consumer, c.cfg.FilterSubjects, natsx.ConsumerOpts{
		AckWait: c.cfg.AckWait,
		// The spare delivery: see the package documentation.
		MaxDeliver: c.cfg.MaxDeliver + 1,
		// One step: the ack wait stays AckWait on every delivery. A growing
		// BackOff (natsx's default) buys nothing here, since heartbeats keep
		// a running handler alive, and it would stretch every retry: the
		// server (2.15.2, processNak) times a NakWithDelay(d) on delivery n
		// as d + BackOff[n-1] − AckWait, so with AckWait doubling a 10 ms
		// retry of delivery 2 came back after 30 s.
		BackOff: []time.Duration{c.cfg.AckWait},
	})
}

// Run creates or updates the durable consumer, then applies events with
// Workers handlers at a time until ctx ends. Then it stops pulling, lets the
// handlers in flight finish (their ctx is not cancelled by ctx) and settle
// their messages, and returns nil. It returns an error only when the
// consumer cannot be set up, and may not run twice at once.
func (c *Consumer) Run(ctx context.Context) error {
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("inbox: consumer " + c.cfg.Consumer + " is already running")
	}
	defer c.running.Store(false)

	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.ConsumerConfig())
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped before it started
		}
		return fmt.Errorf("inbox: create consumer %s on %s: %w", c.cfg.Consumer, c.cfg.Stream, err)
	}
	c.log.Info("inbox consumer running", "workers", c.cfg.Workers)

	// Work already pulled is finished under a context that outlives ctx:
	// stopping must not abort a transaction that is about to commit.
	work := context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for range c.cfg.Workers {
		wg.Go(func() { c.worker(ctx, work, cons) })
	}
	wg.Wait()

	// Naks, terms and heartbeats are published without waiting for the
	// server; flush them before the caller closes the connection.
	fctx, cancel := context.WithTimeout(work, ackTimeout)
	defer cancel()
	if err := c.js.Conn().FlushWithContext(fctx); err != nil {
		c.log.Warn("inbox: flush on stop", "error", err)
	}
	c.log.Info("inbox consumer stopped")
	return nil
}

// worker pulls one message at a time, only when it is free to handle it: a
// message buffered client-side would age towards its AckWait unattended.
func (c *Consumer) worker(ctx, work context.Context, cons jetstream.Consumer) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, pullWait)
		jm, err := cons.Next(jetstream.FetchContext(pctx))
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				continue // nothing to do for a while
			}
			c.log.Warn("inbox: pull", "error", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(pullRetryDelay):
			}
			continue
		}
		if ctx.Err() != nil {
			// Pulled while stopping: hand it back at once rather than start
			// work the caller is waiting to end.
			_ = jm.Nak()
			return
		}
		c.handle(work, jm)
	}
}

// handle processes one delivery and settles it: ack, nak or park-and-term.
func (c *Consumer) handle(ctx context.Context, jm jetstream.Msg) {
	md, err := jm.Metadata()
	if err != nil {
		// Not a JetStream delivery; nothing to ack.
		c.log.Error("inbox: message without jetstream metadata", "subject", jm.Subject(), "error", err)
		return
	}
	h := jm.Headers()
	m := Message{
		ID:           h.Get(natsx.HeaderID),
		Subject:      jm.Subject(),
		Type:         h.Get(natsx.HeaderType),
		TenantID:     h.Get(natsx.HeaderTenant),
		Data:         jm.Data(),
		Header:       h,
		NumDelivered: md.NumDelivered,
	}
	if m.ID == "" {
		m.ID = h.Get(natsx.HeaderMsgID)
	}
	if m.NumDelivered > 1 {
		c.metrics.redelivered()
	}
	if c.onDelivery != nil {
		c.onDelivery(m)
	}
	invalid := m.ID == ""
	if invalid {
		// Without an id there is no inbox key, so the effect could not be
		// made idempotent. It is parked under its stream position instead.
		m.ID = "stream-seq:" + md.Stream + ":" + strconv.FormatUint(md.Sequence.Stream, 10)
	}
	log := c.log.With("event_id", m.ID, "subject", m.Subject,
		"delivery", m.NumDelivered, "stream_seq", md.Sequence.Stream)
	if invalid {
		c.park(ctx, jm, m, log, "invalid", "no ce-id or Nats-Msg-Id header")
		return
	}

	stop := c.heartbeat(ctx, jm)
	applied, err := c.apply(ctx, m)
	stop()

	switch {
	case err == nil:
		if applied {
			c.metrics.processed()
		} else {
			c.metrics.duplicate()
			log.Debug("inbox: event already applied")
		}
		c.ack(ctx, jm, m, log)
	case errors.Is(err, errUnsettled):
		c.park(ctx, jm, m, log, "unsettled", fmt.Sprintf(
			"delivery %d of at most %d: the last attempt never settled", m.NumDelivered, c.cfg.MaxDeliver))
	case IsPermanent(err):
		c.park(ctx, jm, m, log, "permanent", err.Error())
	case m.NumDelivered >= uint64(c.cfg.MaxDeliver):
		c.park(ctx, jm, m, log, "max_deliver", fmt.Sprintf(
			"failed on delivery %d of %d: %v", m.NumDelivered, c.cfg.MaxDeliver, err))
	default:
		delay := c.cfg.NakDelayFunc(m.NumDelivered)
		log.Warn("inbox: event failed; retrying", "error", err, "retry_in", delay)
		if c.beforeSettle != nil && !c.beforeSettle(m, settleNak) {
			return
		}
		if err := jm.NakWithDelay(delay); err != nil {
			log.Warn("inbox: nak", "error", err)
		}
	}
}

// errUnsettled: the spare delivery of an event not yet applied.
var errUnsettled = errors.New("delivery beyond max deliver")

// apply claims m in the inbox and runs the handler, in one transaction.
// applied is false when an earlier delivery's transaction already did.
//
// The HandlerTimeout bounds the wait for a connection, the claim (which can
// wait on a concurrent delivery's row lock) and the handler. The commit is
// outside it: a handler that returned success is committed even if it
// overran, since the inbox row makes a concurrent redelivery harmless, and
// throwing finished work away would only cause another attempt. Hence the
// transaction is spelled out here rather than run by pgdb.InTx, which uses
// one context for both.
func (c *Consumer) apply(ctx context.Context, m Message) (applied bool, err error) {
	hctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	defer cancel()
	tx, err := c.pool.Begin(hctx)
	if err != nil {
		return false, fmt.Errorf("begin: %w", pgdb.Classify(err))
	}
	defer func() { _ = tx.Rollback(ctx) }()

	n, err := c.queries.InboxInsert(hctx, tx, dbgen.InboxInsertParams{
		Consumer: c.cfg.Consumer,
		EventID:  m.ID,
		Subject:  m.Subject,
	})
	if err != nil {
		return false, fmt.Errorf("insert inbox row: %w", pgdb.Classify(err))
	}
	if n == 1 {
		if m.NumDelivered > uint64(c.cfg.MaxDeliver) {
			return false, errUnsettled // the claim rolls back; the caller parks
		}
		start := time.Now()
		err := c.runHandler(hctx, tx, m)
		c.metrics.observe(time.Since(start))
		if err != nil {
			return false, err
		}
	}
	// Also for a duplicate: ending the transaction cleanly returns the
	// connection at once.
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit: %w", pgdb.Classify(err))
	}
	return n == 1, nil
}

// runHandler turns a handler's panic into an error, so one bad event is
// retried and parked like any failure instead of ending the process.
func (c *Consumer) runHandler(ctx context.Context, tx pgx.Tx, m Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return c.handler(ctx, tx, m)
}

// heartbeat sends InProgress every AckWait/3 until stop is called or the
// HandlerTimeout passes, and stop waits for it to end, so no heartbeat can
// follow the ack. The server's ack wait is AckWait on every delivery (see
// ConsumerConfig), so a third of it leaves two heartbeats to spare.
func (c *Consumer) heartbeat(ctx context.Context, jm jetstream.Msg) (stop func()) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.HandlerTimeout)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(max(c.cfg.AckWait/3, time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := jm.InProgress(); err != nil {
					c.log.Debug("inbox: in progress", "error", err)
				}
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// ack acks after the commit and waits for the server's confirmation, so a
// stopping Run leaves nothing unacked that it applied. A lost ack only means
// a redelivery, which the inbox row turns into a duplicate.
func (c *Consumer) ack(ctx context.Context, jm jetstream.Msg, m Message, log *slog.Logger) {
	if c.beforeSettle != nil && !c.beforeSettle(m, settleAck) {
		return
	}
	actx, cancel := context.WithTimeout(ctx, ackTimeout)
	defer cancel()
	if err := jm.DoubleAck(actx); err != nil {
		log.Warn("inbox: ack not confirmed; a redelivery will be found in the inbox", "error", err)
	}
}

// park writes m to dead_letters, in its own transaction, then Terms it. If
// the write fails the event is nak'ed: on its last delivery that leads to
// the spare delivery, which tries to park it again.
func (c *Consumer) park(ctx context.Context, jm jetstream.Msg, m Message, log *slog.Logger, kind, reason string) {
	if c.beforeSettle != nil && !c.beforeSettle(m, settlePark) {
		return
	}
	headers, err := json.Marshal(m.Header)
	if err != nil || m.Header == nil {
		headers = []byte("{}")
	}
	data := m.Data
	if data == nil {
		data = []byte{} // payload is NOT NULL
	}
	_, err = c.queries.DeadLetterInsert(ctx, c.pool, dbgen.DeadLetterInsertParams{
		Consumer:   c.cfg.Consumer,
		EventID:    m.ID,
		Subject:    m.Subject,
		Headers:    headers,
		Payload:    data,
		Reason:     reason,
		Deliveries: int32(min(m.NumDelivered, 1<<31-1)),
	})
	if err != nil {
		log.Error("inbox: park failed; retrying", "kind", kind, "error", pgdb.Classify(err))
		if err := jm.NakWithDelay(c.cfg.NakDelayFunc(m.NumDelivered)); err != nil {
			log.Warn("inbox: nak", "error", err)
		}
		return
	}
	c.metrics.parked()
	// The reason stays in the table: the term reason goes into a server
	// advisory, and handler errors may say more than an advisory should.
	log.Error("inbox: event parked in dead_letters", "kind", kind)
	if err := jm.TermWithReason("parked: " + kind); err != nil {
		log.Warn("inbox: term", "error", err)
	}
}
