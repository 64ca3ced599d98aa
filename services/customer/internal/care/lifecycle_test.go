package care_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

func TestLifecycle(t *testing.T) {
	t.Parallel()

	// world: two customers with a birthday on the same day (so both have
	// birthday:2026), a holiday occasion each, and a plan each with one
	// task completed.
	type world struct {
		b                *testBundle
		primary, source  uuid.UUID
		pPlan, sPlan     *customerv1.CarePlan
		holiday          *customerv1.Holiday
		bystander        uuid.UUID
		bystanderOccasns int
	}
	build := func(t *testing.T) world {
		t.Helper()
		b := setup(t, nil)
		birthdaysOn(t, b)
		h, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{Holiday: &customerv1.Holiday{Name: "Summer", Date: "2026-06-10"}})
		require.NoError(t, err)
		w := world{b: b, holiday: h,
			primary:   b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}}),
			source:    b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}}),
			bystander: b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}}),
		}
		b.at(t, utc("2026-06-10T10:00:00Z"))
		for _, c := range []struct {
			id   uuid.UUID
			plan **customerv1.CarePlan
		}{{w.primary, &w.pPlan}, {w.source, &w.sPlan}} {
			p, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: c.id.String(), CarePlan: newPlan(utc("2026-06-12T09:00:00Z"))})
			require.NoError(t, err)
			_, err = b.client.CompleteCareTask(b.as(), &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId(), OutcomeNote: "note of " + c.id.String()})
			require.NoError(t, err)
			*c.plan = p
		}
		w.bystanderOccasns = len(b.occasions(t, w.bystander))
		require.Equal(t, 2, w.bystanderOccasns)
		return w
	}
	inTx := func(t *testing.T, b *testBundle, f func(tx pgx.Tx) error) {
		t.Helper()
		require.NoError(t, pgdb.InTx(context.Background(), b.pool, f))
	}

	t.Run("ExportHoldsOccasionsAndPlansDecrypted", func(t *testing.T) {
		t.Parallel()
		w := build(t)
		l := w.b.server.Lifecycle()
		require.Equal(t, "care", l.Section())
		var got *customerv1.CareExport
		inTx(t, w.b, func(tx pgx.Tx) error {
			m, err := l.Export(context.Background(), tx, w.b.tenant, w.source)
			got, _ = m.(*customerv1.CareExport)
			return err
		})
		require.Len(t, got.GetOccasions(), 2)
		require.Len(t, got.GetCarePlans(), 1)
		require.Equal(t, w.sPlan.GetTitle(), got.GetCarePlans()[0].GetTitle())
		require.Equal(t, "note of "+w.source.String(), got.GetCarePlans()[0].GetTasks()[0].GetOutcomeNote())
		// Another tenant exports nothing of this customer.
		inTx(t, w.b, func(tx pgx.Tx) error {
			m, err := l.Export(context.Background(), tx, uuid.New(), w.source)
			got, _ = m.(*customerv1.CareExport)
			return err
		})
		require.Empty(t, got.GetOccasions())
		require.Empty(t, got.GetCarePlans())
	})

	t.Run("MergeMovesAndReseals", func(t *testing.T) {
		t.Parallel()
		w := build(t)
		b := w.b
		var moved int64
		inTx(t, b, func(tx pgx.Tx) error {
			var err error
			moved, err = b.server.Lifecycle().Merge(context.Background(), tx, b.tenant, w.primary, []uuid.UUID{w.source})
			return err
		})
		// Both occasions of the source duplicate the primary's: none moves.
		// The plan and its two tasks move.
		require.Equal(t, int64(3), moved)
		require.Len(t, b.occasions(t, w.primary), 2, "the primary's own birthday and holiday stay")
		require.Zero(t, b.count(t, `SELECT count(*) FROM care_occasions WHERE customer_id = $1`, w.source))
		plans, err := b.client.ListCarePlans(b.as(), &customerv1.ListCarePlansRequest{CustomerId: w.primary.String()})
		require.NoError(t, err)
		require.Len(t, plans.GetCarePlans(), 2)
		var movedPlan *customerv1.CarePlan
		for _, p := range plans.GetCarePlans() {
			if p.GetId() == w.sPlan.GetId() {
				movedPlan = p
			}
		}
		require.NotNil(t, movedPlan)
		require.Equal(t, w.sPlan.GetTitle(), movedPlan.GetTitle(), "readable under the primary's key")
		require.Equal(t, w.primary.String(), movedPlan.GetTasks()[0].GetCustomerId())
		require.Equal(t, "note of "+w.source.String(), movedPlan.GetTasks()[0].GetOutcomeNote())
		require.Empty(t, movedPlan.GetTasks()[1].GetOutcomeNote())
		require.Len(t, b.occasions(t, w.bystander), w.bystanderOccasns)
	})

	t.Run("MergeWaitsForACompletionInFlight", func(t *testing.T) {
		t.Parallel()
		w := build(t)
		b := w.b
		ctx := context.Background()
		open, done := w.sPlan.GetTasks()[1].GetId(), w.sPlan.GetTasks()[0].GetId()
		// A completion of the source's open task is in flight: it holds the
		// task's row and writes a note sealed for the source (the done
		// task's note is one: the sealing binds the customer, not the task).
		completion, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = completion.Rollback(ctx) }()
		_, err = completion.Exec(ctx, `SELECT 1 FROM care_tasks WHERE id = $1 FOR UPDATE`, open)
		require.NoError(t, err)
		merged := make(chan error, 1)
		go func() {
			merged <- pgdb.InTx(ctx, b.pool, func(tx pgx.Tx) error {
				_, err := b.server.Lifecycle().Merge(ctx, tx, b.tenant, w.primary, []uuid.UUID{w.source})
				return err
			})
		}()
		time.Sleep(200 * time.Millisecond) // the merge reaches the task
		_, err = completion.Exec(ctx, `UPDATE care_tasks SET status = 'done', complete_time = now(), completed_by = 'agent-9',
			outcome_note_sealed = (SELECT outcome_note_sealed FROM care_tasks WHERE id = $2) WHERE id = $1`, open, done)
		require.NoError(t, err)
		require.NoError(t, completion.Commit(ctx))
		require.NoError(t, <-merged)

		p, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: w.primary.String(), Id: w.sPlan.GetId()})
		require.NoError(t, err)
		require.Equal(t, customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE, p.GetTasks()[1].GetStatus())
		require.Equal(t, "note of "+w.source.String(), p.GetTasks()[1].GetOutcomeNote(),
			"the note committed while the merge waited was moved, not overwritten")
	})

	t.Run("MergeMovesOccasionsThePrimaryLacks", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		primary := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 20}})
		a := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
		c := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
		b.at(t, utc("2026-06-10T10:00:00Z"))
		var moved int64
		inTx(t, b, func(tx pgx.Tx) error {
			var err error
			moved, err = b.server.Lifecycle().Merge(context.Background(), tx, b.tenant, primary, []uuid.UUID{a, c})
			return err
		})
		require.Equal(t, int64(1), moved, "two sources with birthday:2026 give the primary one")
		require.Equal(t, map[string]string{"birthday:2026": "2026-06-10"}, occasionDates(t, b, primary))
		// The primary's own birthday this year is then already recorded.
		b.at(t, utc("2026-06-20T10:00:00Z"))
		require.Len(t, b.occasions(t, primary), 1)
	})

	t.Run("EraseForgetsTwiceHarmlessly", func(t *testing.T) {
		t.Parallel()
		w := build(t)
		b := w.b
		for range 2 {
			inTx(t, b, func(tx pgx.Tx) error {
				return b.server.Lifecycle().Erase(context.Background(), tx, b.tenant, w.source)
			})
		}
		require.Zero(t, b.count(t, `SELECT count(*) FROM care_occasions WHERE customer_id = $1`, w.source))
		require.Zero(t, b.count(t, `SELECT count(*) FROM care_plans WHERE customer_id = $1`, w.source))
		require.Zero(t, b.count(t, `SELECT count(*) FROM care_tasks WHERE customer_id = $1`, w.source))
		require.Len(t, b.occasions(t, w.primary), 2, "others keep theirs")
		_, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: w.primary.String(), Id: w.pPlan.GetId()})
		require.NoError(t, err)
	})

	t.Run("ShreddedKeyLeavesTextsUnreadable", func(t *testing.T) {
		t.Parallel()
		w := build(t)
		b := w.b
		_, err := b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, w.source)
		require.NoError(t, err)
		got, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: w.source.String(), Id: w.sPlan.GetId()})
		require.NoError(t, err)
		require.Empty(t, got.GetTitle())
		require.Empty(t, got.GetTasks()[0].GetOutcomeNote())
		_, err = b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: w.source.String(), CarePlan: newPlan(utc("2026-06-12T09:00:00Z"))})
		requireCode(t, err, codes.NotFound) // nothing new is written about an erased customer
	})
}
