package care

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
	"github.com/rapporthq/rapport/services/customer/internal/schedule"
)

// maxFollowUpDays bounds follow-up settings; resolved tickets older than
// this plus the catch-up window can never fall due and are pruned.
const maxFollowUpDays = 365

// Run runs the scheduler every interval until ctx ends; then it returns
// nil. Any number of replicas may run it (see RunDue). Occasions become due
// on the hour or quarter hour of some zone, so every is the latency of a
// greeting: a few minutes is right.
//
// A failing round is logged and retried; it never stops the loop, and a
// tenant that keeps failing waits its turn behind the others.
func (s *Server) Run(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("care: scheduler interval must be positive, got %s", every)
	}
	schedule.Loop(ctx, every, s.RunDue, func(ctx context.Context) (time.Time, bool, error) {
		return s.store.NextDue(ctx, s.pool)
	}, s.now, s.logger(), "care")
	return nil
}

// RunDue runs one pass of the schedule at the clock's now: each tenant
// whose round is due gets one, in a transaction of its own that holds the
// tenant's claim (FOR UPDATE SKIP LOCKED), records the tenant's due
// occasions with their care.due events and moves the round on by every. It
// returns how many tenants it ran.
//
// Replicas racing through the same pass share the tenants. Should two ever
// compute the same tenant (a round that another replica committed between
// this one's claim and its statements), the occasions' unique key still
// lets each occasion in once, with one event.
func (s *Server) RunDue(ctx context.Context, every time.Duration) (int, error) {
	// The zone list is read (once) before any round holds a connection, so
	// a round never waits for a second one.
	if _, _, err := s.timeZones(ctx); err != nil {
		return 0, err
	}
	return schedule.Pass(ctx, s.pool, s.now, every, schedule.Round{
		Claim: func(ctx context.Context, tx pgx.Tx, now time.Time) (uuid.UUID, bool, error) {
			return s.store.ClaimDue(ctx, tx, now, s.roundTimeout())
		},
		Run: func(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now, next time.Time) error {
			if _, err := s.round(ctx, tx, tenant, now); err != nil {
				return fmt.Errorf("care round of tenant %s: %w", tenant, err)
			}
			return s.store.FinishRound(ctx, tx, tenant, now, next)
		},
		Postpone: func(ctx context.Context, tenant uuid.UUID, next time.Time) error {
			return s.store.Postpone(ctx, s.pool, tenant, next)
		},
	})
}

// round records the tenant's due occasions at now, kind by kind, and writes
// one care.due event per occasion recorded, all in tx.
func (s *Server) round(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now time.Time) ([]store.Occasion, error) {
	st, err := s.settings(ctx, tx, tenant, false)
	if err != nil {
		return nil, err
	}
	zones, zoneSet, err := s.timeZones(ctx)
	if err != nil {
		return nil, err
	}
	defaultZone := st.DefaultTimeZone
	if !zoneSet[defaultZone] {
		defaultZone = "UTC"
	}
	windowStart := now.Add(-s.catchUp())
	p := store.DueParams{
		TenantID: tenant, Now: now, WindowStart: windowStart,
		// Local dates run from UTC-12 to UTC+14: a day either side.
		FirstDay: utcDate(windowStart).AddDate(0, 0, -1), LastDay: utcDate(now).AddDate(0, 0, 1),
		Zones: zones, DefaultZone: defaultZone, DueHour: st.DueHour,
	}
	type step struct {
		kind string
		p    store.DueParams
	}
	steps := []step{{store.KindHoliday, p}}
	if st.BirthdayEnabled {
		q := p
		q.Months, q.Days = store.MonthDays(p.FirstDay, p.LastDay)
		steps = append(steps, step{store.KindBirthday, q})
	}
	if st.AnniversaryEnabled {
		// Candidates are found by the UTC date of joining, a day off the
		// local one at most: one more day each side.
		q := p
		q.Months, q.Days = store.MonthDays(p.FirstDay.AddDate(0, 0, -1), p.LastDay.AddDate(0, 0, 1))
		steps = append(steps, step{store.KindAnniversary, q})
	}
	followUp := func(days int32) store.DueParams {
		// A follow-up is due days after the local date of its source, at
		// the due hour: its source lies days before the window, give or
		// take a day for the zone and one for the hour.
		q := p
		q.FollowUpDays = days
		q.SourceAfter = windowStart.AddDate(0, 0, -int(days)-2)
		q.SourceBefore = now.AddDate(0, 0, -int(days)+1)
		return q
	}
	if st.PurchaseFollowUpDays > 0 {
		steps = append(steps, step{store.KindPurchaseFollowUp, followUp(st.PurchaseFollowUpDays)})
	}
	if st.TicketFollowUpDays > 0 {
		steps = append(steps, step{store.KindTicketFollowUp, followUp(st.TicketFollowUpDays)})
	}
	var all []store.Occasion
	for _, st := range steps {
		occ, err := s.store.InsertDue(ctx, tx, st.kind, st.p)
		if err != nil {
			return nil, err
		}
		all = append(all, occ...)
	}
	events := make([]outbox.Event, len(all))
	for i, o := range all {
		events[i] = careDue(o)
	}
	for len(events) > 0 {
		n := min(len(events), eventBatch)
		if err := outbox.Write(ctx, tx, events[:n]...); err != nil {
			return nil, fmt.Errorf("write care.due events: %w", err)
		}
		events = events[n:]
	}
	oldest := windowStart.AddDate(0, 0, -(maxFollowUpDays + 2))
	if err := s.store.PruneResolutions(ctx, tx, tenant, oldest); err != nil {
		return nil, err
	}
	return all, nil
}

func careDue(o store.Occasion) outbox.Event {
	ev := &customerv1.CareDue{
		TenantId: o.TenantID.String(), OccasionId: o.ID.String(), CustomerId: o.CustomerID.String(),
		Kind: kindValue(o.Kind), OccasionDate: o.Date.Format(time.DateOnly), TimeZone: o.TimeZone,
		DueTime: timestamppb.New(o.DueTime), AggregateVersion: 1, OccurredAt: timestamppb.New(o.CreateTime),
	}
	if o.ReferenceID != uuid.Nil {
		ev.ReferenceId = o.ReferenceID.String()
	}
	return outbox.Event{
		TenantID: o.TenantID.String(), Subject: SubjectCareDue,
		AggregateType: aggregateOccasion, AggregateID: o.ID.String(), AggregateVersion: 1,
		Payload: ev, OccurredAt: o.CreateTime,
	}
}

func utcDate(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}
