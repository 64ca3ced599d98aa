package outreach

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
)

const (
	// claimBatch is how many deliveries one claim takes.
	claimBatch = 20
	// leaseSlack is added to the send timeout to make the lease: a claimed
	// delivery whose worker died is due again after it.
	leaseSlack = time.Minute
)

// Run sends due deliveries every PollInterval until ctx ends. Any number of
// replicas may run it: claims skip each other's rows.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		if _, err := s.DeliverDue(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "outreach delivery round failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// DeliverDue re-checks every deferred delivery due now (recheckDeferred),
// then sends every queued delivery due now, batch by batch, and returns how
// many it attempted to send. Tests call it directly, with the clock where
// they want it.
func (s *Server) DeliverDue(ctx context.Context) (int, error) {
	// A re-check that fails is reported with the round's outcome, but does
	// not hold back the queued deliveries.
	recheckErr := s.recheckDeferred(ctx)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	total, err := s.sendDue(ctx)
	return total, errors.Join(recheckErr, err)
}

// sendDue claims and sends the queued deliveries due now, batch by batch.
func (s *Server) sendDue(ctx context.Context) (int, error) {
	total := 0
	for {
		now := s.clock()
		// The backlog is measured before claiming (a round ends with it
		// drained), and again during a long round.
		if err := s.refreshBacklog(ctx, now, total == 0); err != nil && ctx.Err() == nil {
			s.log.WarnContext(ctx, "outreach backlog metrics not refreshed", "error", err)
		}
		claimed, err := s.store.Claim(ctx, s.pool, now, now.Add(s.cfg.SendTimeout+leaseSlack), claimBatch)
		if err != nil {
			return total, err
		}
		var errs []error
		for _, d := range claimed {
			if err := s.deliver(ctx, d); err != nil {
				errs = append(errs, fmt.Errorf("delivery %s: %w", d.ID, err))
			}
		}
		total += len(claimed)
		if err := errors.Join(errs...); err != nil {
			return total, err
		}
		if len(claimed) < claimBatch || ctx.Err() != nil {
			return total, ctx.Err()
		}
	}
}

// recheckDeferred asks the governor again about each deferred delivery due
// at now, each in a transaction of its own that locks the delivery (SKIP
// LOCKED: replicas share them; only a DEFERRED row is taken, so a delivery
// is released at most once) and, through the governor, the customer:
//
//   - allowed: the touch is recorded (reference: the delivery id) and the
//     delivery QUEUED, due now, in the same transaction; the claim loop
//     sends it. The worker is the touch's actor.
//   - still "not now" within the bound (deferrable, from the creation
//     time): it stays DEFERRED until the new next allowed time.
//   - refused otherwise (consent withdrawn or pending, the bound passed,
//     the customer gone): REFUSED, content dropped, and OutreachFailed.
//
// A re-check that fails rolls back and is put off by BackoffBase, so the
// deliveries due after it still get theirs; the errors are returned.
func (s *Server) recheckDeferred(ctx context.Context) error {
	var errs []error
	for ctx.Err() == nil {
		now := s.clock()
		var d, outcome store.Delivery
		found := false
		err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			d, err = s.store.LockDueDeferred(ctx, tx, now)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			found = true
			return s.recheck(ctx, tx, d, now, &outcome)
		})
		switch {
		case err != nil && found && ctx.Err() == nil:
			errs = append(errs, fmt.Errorf("re-check delivery %s: %w", d.ID, err))
			if _, perr := s.store.DeferAgain(ctx, s.pool, d, d.RefusalReason, now.Add(s.cfg.BackoffBase), now); perr != nil && !errors.Is(perr, store.ErrNotFound) {
				return errors.Join(append(errs, perr)...)
			}
		case err != nil:
			return errors.Join(append(errs, err)...)
		case !found:
			return errors.Join(errs...)
		default:
			s.metrics.outcome(outcome) // committed; a release (QUEUED) counts when sent
		}
	}
	return errors.Join(append(errs, ctx.Err())...)
}

// recheck is one deferred delivery's re-check, in tx (recheckDeferred).
// *outcome is the delivery as the re-check leaves it.
func (s *Server) recheck(ctx context.Context, tx pgx.Tx, d store.Delivery, now time.Time, outcome *store.Delivery) error {
	dec, _, err := s.governor.Reserve(ctx, tx, d.TenantID, WorkerActor, consent.Touch{
		CustomerID: d.CustomerID, Channel: consent.Channel(d.Channel), Purpose: consent.Purpose(d.Purpose),
		SourceService: SourceService, Reference: d.ID.String(),
	})
	if err != nil {
		return fmt.Errorf("reserve contact for delivery %s: %w", d.ID, err)
	}
	switch {
	case dec.Allowed:
		*outcome, err = s.store.ReleaseDeferred(ctx, tx, d, now)
		return err
	case s.deferrable(dec, d.CreateTime):
		// The governor's next allowed time lies ahead of a refusal;
		// never re-check sooner than a second from now regardless.
		next := dec.NextAllowed.UTC().Truncate(time.Microsecond)
		if !next.After(now) {
			next = now.Add(time.Second)
		}
		*outcome, err = s.store.DeferAgain(ctx, tx, d, string(dec.Reason), next, now)
		return err
	}
	refused, err := s.store.RefuseDeferred(ctx, tx, d, refusedPrefix+string(dec.Reason), string(dec.Reason), dec.NextAllowed, now)
	if err != nil {
		return err
	}
	*outcome = refused
	if err := outbox.Write(ctx, tx, failedEvent(refused, now)); err != nil {
		return fmt.Errorf("write outreach event: %w", err)
	}
	return nil
}

// deliver makes one attempt of a claimed delivery and records its outcome.
// The address and content are opened here, at send time, and live only in
// memory for the attempt.
func (s *Server) deliver(ctx context.Context, d store.Delivery) error {
	msg, failReason, err := s.prepare(ctx, d)
	if err != nil {
		return err // the lease runs out and the delivery is tried again
	}
	if failReason != "" {
		return s.record(ctx, d, "", &SendError{Permanent: true, Reason: failReason})
	}
	if err := auditDeliver(ctx, s.pool, d, msg); err != nil {
		return err // not sent: the lease runs out and the delivery is tried again
	}
	sendCtx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	defer cancel()
	start := time.Now()
	providerID, sendErr := s.drivers[consent.Channel(d.Channel)].Send(sendCtx, msg)
	s.metrics.attempt(d.Channel, time.Since(start), sendErr)
	if sendErr != nil && ctx.Err() != nil {
		return ctx.Err() // shutting down: the attempt counts, the lease brings it back
	}
	return s.record(ctx, d, providerID, sendErr)
}

// prepare reads what the attempt needs: the driver, the customer's address
// for the channel (now, not when it was queued: an address changed since is
// used), and the sealed content. A reason instead of a message means the
// delivery cannot be sent at all.
func (s *Server) prepare(ctx context.Context, d store.Delivery) (Message, string, error) {
	ch := consent.Channel(d.Channel)
	if s.drivers[ch] == nil {
		return Message{}, ReasonNoDriver, nil
	}
	contact, err := s.store.CustomerContact(ctx, s.pool, d.TenantID, d.CustomerID)
	if errors.Is(err, store.ErrNotFound) {
		return Message{}, ReasonErased, nil
	}
	if err != nil {
		return Message{}, "", err
	}
	keys, err := s.sealer.CustomerKeys(ctx, s.pool, d.TenantID, uniq(d.CustomerID, d.SealedCustomerID))
	if err != nil {
		return Message{}, "", err
	}
	key, sealedKey := keys[d.CustomerID], keys[d.SealedCustomerID]
	if key == nil || sealedKey == nil || d.Content == nil {
		return Message{}, ReasonErased, nil
	}
	to, err := openAddress(key, ch, contact)
	if err != nil {
		return Message{}, "", err
	}
	if to == "" {
		return Message{}, ReasonNoAddress, nil
	}
	c, err := openContent(sealedKey, d)
	if err != nil {
		return Message{}, "", err
	}
	return Message{
		DeliveryID: d.ID, TenantID: d.TenantID, Channel: ch, Purpose: consent.Purpose(d.Purpose),
		Locale: d.Locale, To: to, Content: c,
	}, "", nil
}

// uniq is the distinct ids among a and b.
func uniq(a, b uuid.UUID) []uuid.UUID {
	if a == b {
		return []uuid.UUID{a}
	}
	return []uuid.UUID{a, b}
}

// record writes an attempt's outcome with its event, in one transaction,
// if the claim it made is still the latest (store.ErrNotFound otherwise:
// another worker took the delivery over after the lease, and its outcome
// counts).
//
//   - sent: SENT and OutreachSent;
//   - permanent error: FAILED with the error's reason, OutreachFailed;
//   - temporary error with attempts left: QUEUED again after a backoff;
//   - temporary error, none left: FAILED attempts_exhausted, OutreachFailed.
func (s *Server) record(ctx context.Context, d store.Delivery, providerID string, sendErr error) error {
	now := s.clock()
	var (
		next     store.Delivery
		retryErr *SendError // a temporary failure with attempts left
	)
	err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			event *outbox.Event
			err   error
		)
		next, retryErr = store.Delivery{}, nil
		if sendErr == nil {
			next, err = s.store.MarkSent(ctx, tx, d, providerID, now)
			if err == nil {
				e := sentEvent(next)
				event = &e
			}
		} else {
			se := classify(sendErr)
			switch {
			case se.Permanent:
				next, err = s.store.MarkFailed(ctx, tx, d, se.Code, se.Reason, now)
			case d.Attempts >= s.cfg.MaxAttempts:
				next, err = s.store.MarkFailed(ctx, tx, d, se.Code, ReasonAttemptsExhausted, now)
			default:
				_, err = s.store.MarkRetry(ctx, tx, d, se.Code, now.Add(s.backoff(d.Attempts)), now)
				retryErr = se
			}
			if err == nil && next.Status == store.StatusFailed {
				e := failedEvent(next, now)
				event = &e
			}
		}
		if err != nil {
			return err
		}
		if event != nil {
			if err := outbox.Write(ctx, tx, *event); err != nil {
				return fmt.Errorf("write outreach event: %w", err)
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return err
	case retryErr != nil:
		s.metrics.retry(d.Channel, retryErr.Code)
	default:
		s.metrics.outcome(next)
	}
	return nil
}

// backoff is the wait after the attempts-th failed attempt: BackoffBase
// doubled per earlier attempt, capped at BackoffMax, with "equal jitter"
// (half fixed, half random), so retries of many deliveries that failed
// together spread out while each still waits at least half its step.
func (s *Server) backoff(attempts int) time.Duration {
	d := s.cfg.BackoffBase
	for i := 1; i < attempts && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d/2 + s.jitter(d/2)
}
