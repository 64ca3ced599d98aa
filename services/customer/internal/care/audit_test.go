package care_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit/audittest"
)

// TestSEC09CarePlanAudit: creating a plan and completing a task write one
// audit row each, in their transaction; every read that returns plan or
// task texts (get, pages, the worklist, a retried change) writes one. Rows
// name the fields and customers, never a title or a note.
func TestSEC09CarePlanAudit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c1, c2 := b.newCustomer(t, customerOpts{}), b.newCustomer(t, customerOpts{})
	ctx := grpcxtest.AsSubject(b.tenant, "agent-3", "agent")
	const planTitle, taskTitle, note = "MARKER-plan-5b2 Ada's divorce", "MARKER-task-81c call Ada", "MARKER-note-0de she moved to Leipzig"
	values := []string{planTitle, taskTitle, note}
	due := timestamppb.New(time.Date(2026, 6, 3, 9, 0, 0, 0, time.UTC))
	plan := &customerv1.CarePlan{Title: planTitle, Tasks: []*customerv1.CareTask{{Title: taskTitle, Assignee: "agent-3", DueTime: due}}}
	rows := func(call func()) []audittest.Row { return audittest.Audited(t, b.pool, b.tenant, call) }
	planFields := []string{"care_plan.title", "care_plan.tasks.title"}

	create := &customerv1.CreateCarePlanRequest{CustomerId: c1.String(), CarePlan: plan, RequestId: uuid.NewString()}
	var p *customerv1.CarePlan
	r := audittest.RequireOneRow(t, rows(func() {
		var err error
		p, err = b.client.CreateCarePlan(ctx, create)
		require.NoError(t, err)
	}), "create", "agent-3", "/CreateCarePlan", []uuid.UUID{c1}, planFields, values...)
	require.Equal(t, create.GetRequestId(), r.IdempotencyKey)
	audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.CreateCarePlan(ctx, create)
		require.NoError(t, err)
	}), "read", "agent-3", "/CreateCarePlan", []uuid.UUID{c1}, planFields, values...)

	complete := &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId(), OutcomeNote: note, RequestId: uuid.NewString()}
	taskFields := []string{"care_task.title", "care_task.outcome_note"}
	r = audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.CompleteCareTask(ctx, complete)
		require.NoError(t, err)
	}), "update", "agent-3", "/CompleteCareTask", []uuid.UUID{c1}, taskFields, values...)
	require.Equal(t, complete.GetRequestId(), r.IdempotencyKey)
	audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.CompleteCareTask(ctx, complete)
		require.NoError(t, err)
	}), "read", "agent-3", "/CompleteCareTask", []uuid.UUID{c1}, taskFields, values...)

	withNote := append(planFields, "care_plan.tasks.outcome_note")
	audittest.RequireOneRow(t, rows(func() {
		_, err := b.client.GetCarePlan(ctx, &customerv1.GetCarePlanRequest{CustomerId: c1.String(), Id: p.GetId()})
		require.NoError(t, err)
	}), "read", "agent-3", "/GetCarePlan", []uuid.UUID{c1}, withNote, values...)
	audittest.RequireOneRow(t, rows(func() {
		page, err := b.client.ListCarePlans(ctx, &customerv1.ListCarePlansRequest{CustomerId: c1.String()})
		require.NoError(t, err)
		require.Len(t, page.GetCarePlans(), 1)
	}), "list", "agent-3", "/ListCarePlans", []uuid.UUID{c1}, withNote, values...)

	// The worklist spans customers: one row naming each whose texts it shows.
	_, err := b.client.CreateCarePlan(ctx, &customerv1.CreateCarePlanRequest{CustomerId: c2.String(), CarePlan: plan})
	require.NoError(t, err)
	audittest.RequireOneRow(t, rows(func() {
		page, err := b.client.ListCareTasks(ctx, &customerv1.ListCareTasksRequest{Assignee: "agent-3"})
		require.NoError(t, err)
		require.Len(t, page.GetCareTasks(), 2)
	}), "list", "agent-3", "/ListCareTasks", []uuid.UUID{c1, c2}, taskFields, values...)

	// Reads that show no text write nothing: an empty page, a customer
	// without plans, an erased customer's tasks (their key is gone); nor
	// do failed calls.
	_, err = b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, c2)
	require.NoError(t, err)
	require.Empty(t, rows(func() {
		page, err := b.client.ListCareTasks(ctx, &customerv1.ListCareTasksRequest{Assignee: "agent-9"})
		require.NoError(t, err)
		require.Empty(t, page.GetCareTasks())
		page, err = b.client.ListCareTasks(ctx, &customerv1.ListCareTasksRequest{Status: customerv1.CareTaskStatus_CARE_TASK_STATUS_OPEN})
		require.NoError(t, err)
		require.Len(t, page.GetCareTasks(), 1, "the erased customer's task, without its title")
		require.Empty(t, page.GetCareTasks()[0].GetTitle())
		plans, err := b.client.ListCarePlans(ctx, &customerv1.ListCarePlansRequest{CustomerId: b.newCustomer(t, customerOpts{}).String()})
		require.NoError(t, err)
		require.Empty(t, plans.GetCarePlans())
		_, err = b.client.GetCarePlan(ctx, &customerv1.GetCarePlanRequest{CustomerId: c2.String(), Id: p.GetId()})
		requireCode(t, err, codes.NotFound)
		_, err = b.client.CompleteCareTask(ctx, &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId()})
		requireCode(t, err, codes.FailedPrecondition)
	}))
}

// TestSEC09BirthdayOccasionsAudit: listing occasions that show a birthday
// (its month and day) writes one list row naming the customers whose
// birthday the page shows; occasions of other kinds write none.
func TestSEC09BirthdayOccasionsAudit(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true, AnniversaryEnabled: true, DueHour: 9},
		"birthday_enabled", "anniversary_enabled", "due_hour")
	born := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 14}})
	member := b.newCustomer(t, customerOpts{zone: "UTC", created: time.Date(2020, 6, 14, 0, 0, 0, 0, time.UTC)})
	b.at(t, time.Date(2026, 6, 14, 10, 0, 0, 0, time.UTC))
	ctx := grpcxtest.AsSubject(b.tenant, "agent-3", "agent")
	rows := func(call func()) []audittest.Row { return audittest.Audited(t, b.pool, b.tenant, call) }

	audittest.RequireOneRow(t, rows(func() {
		got, err := b.client.ListCareOccasions(ctx, &customerv1.ListCareOccasionsRequest{StartDate: "2026-06-14", EndDate: "2026-06-14"})
		require.NoError(t, err)
		require.Len(t, got.GetOccasions(), 2, "the birthday and the anniversary")
	}), "list", "agent-3", "/ListCareOccasions", []uuid.UUID{born}, []string{"birthday"})
	require.Empty(t, rows(func() {
		got, err := b.client.ListCareOccasions(ctx, &customerv1.ListCareOccasionsRequest{CustomerId: member.String()})
		require.NoError(t, err)
		require.Len(t, got.GetOccasions(), 1)
	}), "an anniversary shows no birthday")
}
