package natsx

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for the zero ConsumerOpts.
const (
	// DefaultAckWait is how long one delivery may take before the server
	// redelivers it. It must stay above the handler's p99 (a handler that
	// runs longer calls InProgress()): a redelivery while the first attempt
	// still runs is what the inbox table then has to absorb.
	DefaultAckWait = 30 * time.Second
	// DefaultMaxDeliver makes delivery finite (the server default is
	// unlimited): after it, the consumer parks the event as dead.
	DefaultMaxDeliver = 10
	// DefaultMaxAckPending bounds the events handed out and not yet acked,
	// across all workers of the consumer, and so the memory and the
	// redelivery storm after a crash.
	DefaultMaxAckPending = 1000
	// defaultBackOffSteps is how many growing waits the derived BackOff has;
	// later deliveries reuse the last one.
	defaultBackOffSteps = 5
)

// ConsumerOpts tunes ConsumerConfig; a zero field means its default.
type ConsumerOpts struct {
	// AckWait, default DefaultAckWait.
	AckWait time.Duration
	// MaxDeliver, default DefaultMaxDeliver. Negative also means the
	// default: unlimited delivery is never what Rapport wants.
	MaxDeliver int
	// BackOff is the ack wait of each delivery in turn (see ConsumerConfig).
	// Default: AckWait doubling, AckWait·2^i, with at most
	// min(5, MaxDeliver−1) steps.
	BackOff []time.Duration
	// MaxAckPending, default DefaultMaxAckPending.
	MaxAckPending int
}

// ConsumerConfig is a durable pull consumer with explicit acks, finite
// delivery and a bounded number of unacked messages, starting from the
// first event still in the stream (a new consumer must see what was
// published before it existed).
//
// The server treats BackOff as the ack wait of each delivery, not as a
// pause between them: it replaces AckWait by BackOff[0] and waits
// BackOff[n−1] after the nth delivery before redelivering. A BackOff such as
// 1s, 5s, … would therefore cut AckWait to 1 s and redeliver events whose
// handler is still running. So the default BackOff starts at AckWait and
// doubles, and a given BackOff is used as is (CheckConsumerConfig flags one
// that undercuts AckWait). Retries after a handler's transient error should
// use NakWithDelay, which overrides BackOff.
func ConsumerConfig(durable string, filterSubjects []string, opts ConsumerOpts) jetstream.ConsumerConfig {
	ackWait := opts.AckWait
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	maxDeliver := opts.MaxDeliver
	if maxDeliver <= 0 {
		maxDeliver = DefaultMaxDeliver
	}
	backOff := slices.Clone(opts.BackOff)
	if backOff == nil {
		// len(BackOff) < MaxDeliver: the wait after the last delivery
		// would never be used.
		for i := range min(defaultBackOffSteps, maxDeliver-1) {
			backOff = append(backOff, ackWait<<i)
		}
	}
	maxAckPending := opts.MaxAckPending
	if maxAckPending <= 0 {
		maxAckPending = DefaultMaxAckPending
	}
	return jetstream.ConsumerConfig{
		Durable:        durable,
		FilterSubjects: slices.Clone(filterSubjects),
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     maxDeliver,
		BackOff:        backOff,
		MaxAckPending:  maxAckPending,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}
}

// CheckConsumerConfig reports every way cfg breaks RELIABILITY.md §1.3 for a
// consumer whose handler runs at most handlerTimeout (its context deadline
// or p99). Give it what the server returns (consumer.Info(ctx).Config), so
// server defaults are checked too; NATS-05 runs it on every consumer.
func CheckConsumerConfig(cfg jetstream.ConsumerConfig, handlerTimeout time.Duration) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if cfg.Durable == "" {
		fail("not durable: an ephemeral consumer forgets its position")
	}
	if cfg.InactiveThreshold != 0 {
		fail("inactive threshold %s: the server would delete the consumer while its service is down", cfg.InactiveThreshold)
	}
	if cfg.DeliverSubject != "" {
		fail("push consumer (deliver subject %q), want pull", cfg.DeliverSubject)
	}
	if cfg.DeliverPolicy != jetstream.DeliverAllPolicy {
		fail("deliver policy %s, want all", cfg.DeliverPolicy)
	}
	if cfg.AckPolicy != jetstream.AckExplicitPolicy {
		fail("ack policy %s, want explicit: ack after commit, per message", cfg.AckPolicy)
	}
	if cfg.MaxDeliver < 1 {
		fail("max deliver %d: delivery must be finite", cfg.MaxDeliver)
	} else if len(cfg.BackOff) >= cfg.MaxDeliver {
		fail("%d backoff steps for max deliver %d, want fewer", len(cfg.BackOff), cfg.MaxDeliver)
	}
	if cfg.AckWait <= handlerTimeout {
		fail("ack wait %s not above the handler timeout %s", cfg.AckWait, handlerTimeout)
	}
	if len(cfg.BackOff) > 0 && cfg.BackOff[0] != cfg.AckWait {
		fail("first backoff %s differs from ack wait %s, which the server replaces by it", cfg.BackOff[0], cfg.AckWait)
	}
	for i, d := range cfg.BackOff {
		if d < cfg.AckWait {
			fail("backoff[%d] %s below ack wait %s: a running handler would be redelivered", i, d, cfg.AckWait)
		}
	}
	if cfg.MaxAckPending <= 0 {
		fail("max ack pending %d, want a bound", cfg.MaxAckPending)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("consumer %s: %w", cfg.Durable, err)
	}
	return nil
}
