// Package schedule runs per-tenant rounds off a schedule table that any
// number of replicas share: each due tenant's round is claimed by one of
// them (FOR UPDATE SKIP LOCKED on the tenant's schedule row), run in the
// claiming transaction and finished there by moving the round on. The
// packages with a schedule keep their own statements (their tables differ)
// and hand them to Pass and Loop as a Round.
package schedule

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

// Round is one schedule's own statements.
type Round struct {
	// Claim claims one tenant whose round is due at now for the rest of
	// tx, skipping tenants other transactions hold; false if none is due.
	Claim func(ctx context.Context, tx pgx.Tx, now time.Time) (uuid.UUID, bool, error)
	// Run runs the tenant's round at now in tx and finishes it, making its
	// next round due at next.
	Run func(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now, next time.Time) error
	// Postpone makes the tenant's next round due no earlier than next,
	// outside any round's transaction.
	Postpone func(ctx context.Context, tenant uuid.UUID, next time.Time) error
}

// Pass runs one pass of the schedule: each tenant whose round is due at
// clock() gets one, in a transaction of its own on db that holds the claim
// and moves the round on by every, so a replica that crashes mid-round
// leaves the tenant due. It returns how many rounds it ran.
//
// A failing round is rolled back and its tenant postponed behind the others
// (by every, at most a minute), so one bad tenant cannot starve the rest;
// the pass goes on and returns the failures joined. It stops early when ctx
// ends, a claim fails or a postponement fails.
func Pass(ctx context.Context, db pgdb.Beginner, clock func() time.Time, every time.Duration, r Round) (int, error) {
	var (
		rounds int
		errs   []error
	)
	for {
		var (
			tenant  uuid.UUID
			claimed bool
		)
		now := clock().UTC()
		err := pgdb.InTx(ctx, db, func(tx pgx.Tx) error {
			var err error
			tenant, claimed, err = r.Claim(ctx, tx, now)
			if err != nil || !claimed {
				return err
			}
			return r.Run(ctx, tx, tenant, now, now.Add(every))
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
			// This tenant failed and its claim rolled back: put it behind
			// the others.
			errs = append(errs, err)
			if perr := r.Postpone(ctx, tenant, now.Add(min(every, time.Minute))); perr != nil {
				return rounds, errors.Join(append(errs, perr)...)
			}
		}
	}
}

// Loop runs pass every interval until ctx ends. A failing pass is logged to
// logger as what+" round failed" and retried; it never stops the loop.
// Between passes it sleeps until the earliest due round (nextDue, false if
// none), at least a second (a round another replica is running must not
// make this one spin) and at most a minute (a tenant joins the schedule due
// at once), both capped by every; it sleeps the most when nextDue fails.
// every must be positive.
func Loop(ctx context.Context, every time.Duration, pass func(context.Context, time.Duration) (int, error),
	nextDue func(context.Context) (time.Time, bool, error), now func() time.Time, logger *slog.Logger, what string) {
	for {
		if _, err := pass(ctx, every); err != nil && ctx.Err() == nil {
			logger.ErrorContext(ctx, what+" round failed", "error", err.Error())
		}
		timer := time.NewTimer(untilNextDue(ctx, every, nextDue, now))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
	}
}

func untilNextDue(ctx context.Context, every time.Duration, nextDue func(context.Context) (time.Time, bool, error), now func() time.Time) time.Duration {
	lo, hi := min(every, time.Second), min(every, time.Minute)
	next, ok, err := nextDue(ctx)
	if err != nil || !ok {
		return hi
	}
	return max(lo, min(hi, next.Sub(now())))
}
