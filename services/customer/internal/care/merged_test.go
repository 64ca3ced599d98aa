package care_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// TestCarePlansOfMergedCustomer: no plan is made for a customer merged into
// another (the refusal names the customer to plan for); the merged
// customer's plans stay readable under its old id; a task the merge moved
// belongs to the primary and is completed as the primary's.
func TestCarePlansOfMergedCustomer(t *testing.T) {
	t.Parallel()

	t.Run("CreateIsRefusedReadsWork", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx := context.Background()
		primary, source := b.newCustomer(t, customerOpts{}), b.newCustomer(t, customerOpts{})
		due := utc("2026-06-03T09:00:00Z")
		old, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: source.String(), CarePlan: newPlan(due)})
		require.NoError(t, err)
		_, err = b.pool.Exec(ctx, `UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2`,
			b.tenant, source, primary)
		require.NoError(t, err)
		plans := `SELECT count(*) FROM care_plans WHERE tenant_id = $1`
		tasks := `SELECT count(*) FROM care_tasks WHERE tenant_id = $1`
		audits := `SELECT count(*) FROM pii_audit WHERE tenant_id = $1 AND action = 'create'`
		beforePlans, beforeTasks, beforeAudits := b.count(t, plans, b.tenant), b.count(t, tasks, b.tenant), b.count(t, audits, b.tenant)

		req := &customerv1.CreateCarePlanRequest{CustomerId: source.String(), CarePlan: newPlan(due), RequestId: uuid.NewString()}
		for range 2 { // a retry of the same request is refused the same way
			_, err = b.client.CreateCarePlan(b.as(), req)
			requireMerged(t, err, primary)
		}
		require.Equal(t, beforePlans, b.count(t, plans, b.tenant), "no plan written")
		require.Equal(t, beforeTasks, b.count(t, tasks, b.tenant), "no task written")
		require.Equal(t, beforeAudits, b.count(t, audits, b.tenant), "no creation audited")

		got, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: source.String(), Id: old.GetId()})
		require.NoError(t, err)
		require.Equal(t, old.GetTitle(), got.GetTitle())
		list, err := b.client.ListCarePlans(b.as(), &customerv1.ListCarePlansRequest{CustomerId: source.String()})
		require.NoError(t, err)
		require.Len(t, list.GetCarePlans(), 1)

		_, err = b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: primary.String(), CarePlan: newPlan(due)})
		require.NoError(t, err, "the primary takes plans as before")
	})

	t.Run("TasksMovedByTheMergeAreThePrimarys", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		ctx := context.Background()
		primary, source := b.newCustomer(t, customerOpts{}), b.newCustomer(t, customerOpts{})
		p, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: source.String(),
			CarePlan: newPlan(utc("2026-06-03T09:00:00Z"))})
		require.NoError(t, err)
		// The merge as MergeCustomers runs it: the profile marks the source,
		// then care moves its plans.
		tx, err := b.pool.Begin(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `UPDATE customers SET merged_into = $3, merge_time = now() WHERE tenant_id = $1 AND id = $2`,
			b.tenant, source, primary)
		require.NoError(t, err)
		_, err = b.server.Lifecycle().Merge(ctx, tx, b.tenant, primary, []uuid.UUID{source})
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))

		done, err := b.client.CompleteCareTask(b.as(), &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId(),
			OutcomeNote: "Ada is happy again"})
		require.NoError(t, err)
		require.Equal(t, primary.String(), done.GetCustomerId())
		require.Equal(t, "Ada is happy again", done.GetOutcomeNote())
		_, err = b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: primary.String(), Id: p.GetId()})
		require.NoError(t, err)
	})
}

// requireMerged asserts err is lifecycle.MergedError naming into.
func requireMerged(t *testing.T, err error, into uuid.UUID) {
	t.Helper()
	st := status.Convert(err)
	require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
	var info *errdetails.ErrorInfo
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			info = ei
		}
	}
	require.NotNil(t, info, "an ErrorInfo")
	require.Equal(t, lifecycle.ReasonCustomerMerged, info.GetReason())
	require.Equal(t, into.String(), info.GetMetadata()["merged_into"])
}
