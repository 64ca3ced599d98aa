package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/outbox/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

// Defaults for the zero RelayConfig.
const (
	DefaultPollInterval = 200 * time.Millisecond
	DefaultBatchSize    = 100
	DefaultRetention    = 7 * 24 * time.Hour
	// MaxBatchSize caps BatchSize: a batch is marked in one statement.
	MaxBatchSize = 10_000
)

const (
	// publishTimeout bounds the wait for one PubAck.
	publishTimeout = 5 * time.Second
	// backoffMin and backoffMax bound the wait after a failed step; it
	// doubles from min to max, with jitter.
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
	// janitorInterval: published rows are reaped at most this often.
	janitorInterval = time.Minute
	// janitorChunk rows are deleted per statement, and at most
	// janitorMaxChunks statements run per janitor step, so reaping a large
	// backlog never stalls publishing for long.
	janitorChunk     = 1000
	janitorMaxChunks = 20
	// lagInterval: the lag gauges are refreshed at most this often.
	lagInterval = time.Second
	// cleanupTimeout bounds work done after ctx ended: marking rows
	// JetStream already acknowledged, closing the leader connection.
	cleanupTimeout = 5 * time.Second
)

// RelayConfig configures a Relay. Zero values mean the defaults.
type RelayConfig struct {
	// Source is ce-source, e.g. "rapport/customer". Required.
	Source string
	// PollInterval is how often the leader looks for pending events when
	// the last batch was not full, and how often followers try to lead.
	// Default DefaultPollInterval.
	PollInterval time.Duration
	// BatchSize is the most events read per query. Default
	// DefaultBatchSize, at most MaxBatchSize.
	BatchSize int
	// Retention is how long published rows are kept (for a re-publish
	// range); older ones are deleted. Default DefaultRetention.
	Retention time.Duration
	// Logger gets the relay's log; nil discards it.
	Logger *slog.Logger
	// Registerer gets the relay's metrics; nil means no metrics.
	Registerer prometheus.Registerer

	// afterPublish, for tests only, runs after each PubAck and before the
	// batch is marked. An error "crashes" the relay: Run returns it at
	// once, leaving the batch unmarked, as a killed process would.
	afterPublish func(id uuid.UUID) error
	// onLeading, for tests only, is called with true once the leader lock
	// is held and with false before it is let go.
	onLeading func(leading bool)
}

func (c RelayConfig) withDefaults() RelayConfig {
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.BatchSize <= 0 {
		c.BatchSize = DefaultBatchSize
	}
	c.BatchSize = min(c.BatchSize, MaxBatchSize)
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Relay publishes a schema's outbox to JetStream. Every replica of a service
// runs one; one at a time leads and publishes (see the package
// documentation). A Relay's Run must not be called twice at once.
type Relay struct {
	pool    *pgxpool.Pool
	js      jetstream.JetStream
	cfg     RelayConfig
	log     *slog.Logger
	schema  string
	metrics *metrics
	initErr error

	lastJanitor time.Time
	lastLag     time.Time
}

// NewRelay returns a relay for the outbox in pool's schema (its search_path,
// as pgdb.Open sets it). Configuration errors are returned by Run.
func NewRelay(pool *pgxpool.Pool, js jetstream.JetStream, cfg RelayConfig) *Relay {
	cfg = cfg.withDefaults()
	r := &Relay{pool: pool, js: js, cfg: cfg}
	var errs []error
	if pool == nil {
		errs = append(errs, errors.New("nil pool"))
	} else {
		r.schema = pool.Config().ConnConfig.RuntimeParams["search_path"]
		if err := pgdb.ValidateSchema(r.schema); err != nil {
			errs = append(errs, fmt.Errorf("pool search_path: %w", err))
		}
	}
	if js == nil {
		errs = append(errs, errors.New("nil jetstream"))
	}
	if cfg.Source == "" {
		errs = append(errs, errors.New("empty Source (ce-source)"))
	}
	m, err := newMetrics(cfg.Registerer, cfg.Source)
	if err != nil {
		errs = append(errs, fmt.Errorf("metrics: %w", err))
	}
	r.metrics = m
	if err := errors.Join(errs...); err != nil {
		r.initErr = fmt.Errorf("outbox relay: %w", err)
	}
	r.log = cfg.Logger.With("component", "outbox-relay", "source", cfg.Source, "schema", r.schema)
	return r
}

// crashError is a test hook's error: Run returns it instead of retrying.
type crashError struct{ err error }

func (e *crashError) Error() string { return "outbox relay: test crash: " + e.err.Error() }
func (e *crashError) Unwrap() error { return e.err }

// Run publishes until ctx ends, then returns nil. Failures of Postgres or
// NATS are logged and retried with backoff: a dependency blip restarts
// nothing, and events wait in the outbox meanwhile. Run returns an error
// only for a bad configuration (or a test hook's simulated crash).
func (r *Relay) Run(ctx context.Context) error {
	if r.initErr != nil {
		return r.initErr
	}
	key := pgdb.LockKey("rapport.outbox." + r.schema)
	var bo backoff
	for {
		err := r.tryLead(ctx, key)
		if ctx.Err() != nil {
			return nil
		}
		wait := r.cfg.PollInterval
		if crash := (*crashError)(nil); errors.As(err, &crash) {
			return err
		}
		if err != nil {
			wait = bo.next()
			r.log.WarnContext(ctx, "outbox relay: not leading", "error", err, "retry_in", wait)
		} else {
			bo.reset()
		}
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// tryLead takes the leader lock if it is free and, if so, publishes until
// ctx ends or the leader session fails. A follower only refreshes the lag
// gauges and returns nil.
func (r *Relay) tryLead(ctx context.Context, key int64) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire leader connection: %w", err)
	}
	acquired, err := queries.OutboxTryLeaderLock(ctx, conn, key)
	if err != nil || !acquired {
		// Without the lock the session is clean and goes back to the
		// pool. With an error we cannot know, so it is closed.
		if err != nil {
			closeConn(ctx, conn)
			return fmt.Errorf("try leader lock: %w", err)
		}
		conn.Release()
		r.refreshLag(ctx)
		return nil
	}
	// The session, and with it the lock, ends when lead returns: the
	// connection never goes back to the pool holding the lock.
	defer closeConn(ctx, conn)
	return r.lead(ctx, conn)
}

// lead is the leader loop. conn holds the leader lock; it is checked at
// every poll, so a leader whose session died steps down within one poll
// (and one batch).
func (r *Relay) lead(ctx context.Context, conn *pgxpool.Conn) error {
	r.setLeading(true)
	defer r.setLeading(false)
	r.log.InfoContext(ctx, "outbox relay: leading")
	defer r.log.InfoContext(ctx, "outbox relay: stepped down")

	var bo backoff
	for {
		if err := conn.Ping(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("leader session lost: %w", err)
		}
		n, err := r.publishBatch(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if crash := (*crashError)(nil); errors.As(err, &crash) {
			return err
		}
		if err != nil {
			wait := bo.next()
			r.log.WarnContext(ctx, "outbox relay: publish failed", "error", err, "retry_in", wait)
			if !sleep(ctx, wait) {
				return nil
			}
			continue
		}
		bo.reset()
		r.janitor(ctx)
		r.refreshLag(ctx)
		if n == r.cfg.BatchSize {
			continue // more may be pending: no pause
		}
		if !sleep(ctx, r.cfg.PollInterval) {
			return nil
		}
	}
}

// publishBatch publishes the oldest pending events in seq order, each
// awaited, then marks the acknowledged ones. It stops at the first failure:
// publishing past it could store an aggregate's later event before the one
// that failed.
func (r *Relay) publishBatch(ctx context.Context) (int, error) {
	rows, err := queries.OutboxPending(ctx, r.pool, int32(r.cfg.BatchSize)) //nolint:gosec // at most MaxBatchSize
	if err != nil {
		return 0, fmt.Errorf("read pending events: %w", pgdb.Classify(err))
	}
	acked := make([]uuid.UUID, 0, len(rows))
	var pubErr error
	for _, row := range rows {
		if err := r.publish(ctx, row); err != nil {
			pubErr = err
			break
		}
		if r.cfg.afterPublish != nil {
			if err := r.cfg.afterPublish(row.ID); err != nil {
				return 0, &crashError{err: err}
			}
		}
		acked = append(acked, row.ID)
	}
	if len(acked) > 0 {
		// Acknowledged events are marked even when ctx just ended, so a
		// stopping relay leaves as little as possible to republish.
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		_, err := queries.OutboxMarkPublished(mctx, r.pool, acked)
		cancel()
		if err != nil {
			return 0, errors.Join(pubErr, fmt.Errorf("mark %d events published: %w", len(acked), pgdb.Classify(err)))
		}
	}
	if pubErr != nil {
		return 0, pubErr
	}
	return len(rows), nil
}

// publish sends one event and waits for its PubAck.
func (r *Relay) publish(ctx context.Context, row dbgen.OutboxPendingRow) error {
	msg := newMessage(r.cfg.Source, row)
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ack, err := r.js.PublishMsg(pctx, msg, jetstream.WithMsgID(row.ID.String()))
	if err != nil {
		if r.metrics != nil {
			r.metrics.publishErrors.Inc()
		}
		return fmt.Errorf("publish event %s on %s: %w", row.ID, row.Subject, err)
	}
	if r.metrics != nil {
		r.metrics.published.Inc()
	}
	if ack.Duplicate {
		r.log.DebugContext(ctx, "outbox relay: duplicate dropped by the stream", "event_id", row.ID)
	}
	return nil
}

// newMessage builds the NATS message of an outbox row: the payload as is,
// the attributes as CloudEvents NATS binding headers. Nats-Msg-Id is added
// by jetstream.WithMsgID and equals ce-id.
func newMessage(source string, row dbgen.OutboxPendingRow) *nats.Msg {
	h := nats.Header{}
	h.Set(natsx.HeaderSpecVersion, natsx.SpecVersion)
	h.Set(natsx.HeaderID, row.ID.String())
	h.Set(natsx.HeaderType, row.EventType)
	h.Set(natsx.HeaderSource, source)
	h.Set(natsx.HeaderTime, row.OccurredAt.UTC().Format(time.RFC3339Nano))
	h.Set(natsx.HeaderSubject, row.AggregateID)
	h.Set(natsx.HeaderContentType, natsx.ContentTypeProtobuf)
	h.Set(natsx.HeaderTenant, row.TenantID.String())
	h.Set(HeaderAggregateType, row.AggregateType)
	h.Set(HeaderAggregateID, row.AggregateID)
	h.Set(HeaderAggregateVersion, strconv.FormatInt(row.AggregateVersion, 10))
	return &nats.Msg{Subject: row.Subject, Header: h, Data: row.Payload}
}

// janitor deletes published rows older than Retention, at most once per
// janitorInterval. Failures are logged; the next step retries.
func (r *Relay) janitor(ctx context.Context) {
	if !r.lastJanitor.IsZero() && time.Since(r.lastJanitor) < janitorInterval {
		return
	}
	r.lastJanitor = time.Now()
	var total int64
	for range janitorMaxChunks {
		n, err := queries.OutboxDeletePublished(ctx, r.pool, dbgen.OutboxDeletePublishedParams{
			RetentionSeconds: r.cfg.Retention.Seconds(),
			MaxRows:          janitorChunk,
		})
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox relay: delete published events", "error", pgdb.Classify(err))
			}
			break
		}
		total += n
		if n < janitorChunk {
			break
		}
	}
	if total > 0 {
		r.log.InfoContext(ctx, "outbox relay: deleted published events", "count", total, "retention", r.cfg.Retention)
	}
}

// refreshLag updates the lag gauges, at most once per lagInterval. Leader
// and followers both do it, so whichever replica is scraped reports lag.
func (r *Relay) refreshLag(ctx context.Context) {
	if r.metrics == nil || time.Since(r.lastLag) < lagInterval {
		return
	}
	r.lastLag = time.Now()
	pending, oldest, err := r.Lag(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.log.WarnContext(ctx, "outbox relay: read lag", "error", err)
		}
		return
	}
	r.metrics.pending.Set(float64(pending))
	r.metrics.oldest.Set(oldest.Seconds())
}

// Lag reports how many committed events are unpublished and how long the
// oldest has waited (zero when none is). Uncommitted events are not counted:
// they do not exist yet.
func (r *Relay) Lag(ctx context.Context) (pending int64, oldest time.Duration, err error) {
	if r.pool == nil {
		return 0, 0, errors.New("outbox lag: nil pool")
	}
	row, err := queries.OutboxLag(ctx, r.pool)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox lag: %w", pgdb.Classify(err))
	}
	return row.Pending, time.Duration(row.OldestSeconds * float64(time.Second)), nil
}

func (r *Relay) setLeading(leading bool) {
	if r.cfg.onLeading != nil {
		r.cfg.onLeading(leading)
	}
	if r.metrics != nil {
		if leading {
			r.metrics.leading.Inc()
		} else {
			r.metrics.leading.Dec()
		}
	}
}

// closeConn ends conn's session instead of returning it to the pool, which
// releases any advisory lock it holds.
func closeConn(ctx context.Context, conn *pgxpool.Conn) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_ = conn.Hijack().Close(cctx)
}

// backoff is a capped exponential wait with equal jitter; the zero value
// starts at backoffMin.
type backoff struct{ cur time.Duration }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = backoffMin
	} else {
		b.cur = min(2*b.cur, backoffMax)
	}
	half := b.cur / 2
	return half + rand.N(half+1) //nolint:gosec // jitter needs no crypto
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits for d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
