package purchase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

// RunRecompute recomputes every scheduled tenant's segments each interval
// every, until ctx ends; then it returns nil. Any number of replicas may run
// it: each round of a tenant is claimed by one of them (RecomputeDue). A
// tenant joins the schedule with its first purchase and is due at once;
// after a round it is due again every later.
//
// A failing round is logged and retried; it never stops the loop, and a
// tenant that keeps failing waits its turn behind the others.
func (s *Server) RunRecompute(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("purchase: segment recompute interval must be positive, got %s", every)
	}
	for {
		if _, err := s.RecomputeDue(ctx, every); err != nil && ctx.Err() == nil {
			s.logger().ErrorContext(ctx, "segment recompute round failed", "error", err.Error())
		}
		timer := time.NewTimer(s.untilNextDue(ctx, every))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-timer.C:
		}
	}
}

// RecomputeDue runs one pass of the schedule: it recomputes each tenant
// whose round is due, one transaction per tenant, and returns how many it
// recomputed. The claim (FOR UPDATE SKIP LOCKED on the tenant's schedule
// row) is held by the transaction that recomputes and moves the round on by
// every, so a replica that crashes mid-round leaves the tenant due, and
// replicas racing through the same pass never recompute a tenant twice.
func (s *Server) RecomputeDue(ctx context.Context, every time.Duration) (int, error) {
	var (
		rounds int
		errs   []error
	)
	for {
		var (
			tenant  uuid.UUID
			claimed bool
		)
		now := s.now().UTC()
		err := pgdb.InTx(ctx, s.pool, func(tx pgx.Tx) error {
			var err error
			tenant, claimed, err = s.store.ClaimDue(ctx, tx, now, s.recomputeTimeout())
			if err != nil || !claimed {
				return err
			}
			changes, err := s.recompute(ctx, tx, tenant, uuid.Nil, now)
			if err != nil {
				return fmt.Errorf("recompute tenant %s: %w", tenant, err)
			}
			return s.store.FinishRound(ctx, tx, tenant, now, now.Add(every), int64(len(changes)))
		})
		switch {
		case err == nil && !claimed:
			return rounds, errors.Join(errs...)
		case err == nil:
			rounds++
		case ctx.Err() != nil || !claimed:
			// Cancelled, or the claim itself failed: the pass cannot go on.
			return rounds, errors.Join(append(errs, err)...)
		default:
			// This tenant failed; its claim was rolled back. Put it behind
			// the others so one bad tenant cannot starve the rest.
			errs = append(errs, err)
			if perr := s.store.Postpone(ctx, s.pool, tenant, now.Add(min(every, time.Minute))); perr != nil {
				return rounds, errors.Join(append(errs, perr)...)
			}
		}
	}
}

// untilNextDue is how long RunRecompute sleeps: until the earliest due
// round, at least a second (a due tenant another replica is recomputing
// must not make this one spin) and at most a minute (new tenants join the
// schedule due at once), both capped by every.
func (s *Server) untilNextDue(ctx context.Context, every time.Duration) time.Duration {
	lo, hi := min(every, time.Second), min(every, time.Minute)
	next, ok, err := s.store.NextDue(ctx, s.pool)
	if err != nil || !ok {
		return hi
	}
	return max(lo, min(hi, next.Sub(s.now())))
}
