package purchase

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/services/customer/internal/schedule"
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
	schedule.Loop(ctx, every, s.RecomputeDue, func(ctx context.Context) (time.Time, bool, error) {
		return s.store.NextDue(ctx, s.pool)
	}, s.now, s.logger(), "segment recompute")
	return nil
}

// RecomputeDue runs one pass of the schedule: it recomputes each tenant
// whose round is due, one transaction per tenant, and returns how many it
// recomputed. The claim (FOR UPDATE SKIP LOCKED on the tenant's schedule
// row) is held by the transaction that recomputes and moves the round on by
// every, so a replica that crashes mid-round leaves the tenant due, and
// replicas racing through the same pass never recompute a tenant twice.
func (s *Server) RecomputeDue(ctx context.Context, every time.Duration) (int, error) {
	return schedule.Pass(ctx, s.pool, s.now, every, schedule.Round{
		Claim: func(ctx context.Context, tx pgx.Tx, now time.Time) (uuid.UUID, bool, error) {
			return s.store.ClaimDue(ctx, tx, now, s.recomputeTimeout())
		},
		Run: func(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now, next time.Time) error {
			changes, err := s.recompute(ctx, tx, tenant, uuid.Nil, now)
			if err != nil {
				return fmt.Errorf("recompute tenant %s: %w", tenant, err)
			}
			return s.store.FinishRound(ctx, tx, tenant, now, next, int64(len(changes)))
		},
		Postpone: func(ctx context.Context, tenant uuid.UUID, next time.Time) error {
			return s.store.Postpone(ctx, s.pool, tenant, next)
		},
	})
}
