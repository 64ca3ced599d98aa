package care_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/care"
)

func TestSettings(t *testing.T) {
	t.Parallel()

	t.Run("DefaultsThenMaskedUpdates", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		got, err := b.client.GetCareSettings(b.as(), &customerv1.GetCareSettingsRequest{})
		require.NoError(t, err)
		require.Empty(t, cmp.Diff(&customerv1.CareSettings{DueHour: 9}, got, protocmp.Transform()))

		up := b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true, DueHour: 20, PurchaseFollowUpDays: 14},
			"birthday_enabled", "purchase_follow_up_days")
		require.True(t, up.GetBirthdayEnabled())
		require.Equal(t, int32(14), up.GetPurchaseFollowUpDays())
		require.Equal(t, int32(9), up.GetDueHour(), "due_hour was not in the mask")
		require.Equal(t, int64(1), up.GetVersion())

		all := b.settings(t, &customerv1.CareSettings{TicketFollowUpDays: 2, DefaultTimeZone: "Asia/Shanghai", DueHour: 8})
		require.Empty(t, cmp.Diff(&customerv1.CareSettings{TicketFollowUpDays: 2, DefaultTimeZone: "Asia/Shanghai",
			DueHour: 8, Version: 2}, all, protocmp.Transform(), protocmp.IgnoreFields(&customerv1.CareSettings{}, "update_time")),
			"an empty mask replaces every field")
		again := b.settings(t, &customerv1.CareSettings{TicketFollowUpDays: 2, DefaultTimeZone: "Asia/Shanghai", DueHour: 8})
		require.Equal(t, int64(2), again.GetVersion(), "no change, no new version")
	})

	t.Run("RefusesBadInputNamingTheField", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		for _, c := range []struct {
			name  string
			st    *customerv1.CareSettings
			paths []string
			field string
		}{
			{"UnknownZone", &customerv1.CareSettings{DefaultTimeZone: "Mars/Olympus_Mons"}, []string{"default_time_zone"}, "settings.default_time_zone"},
			{"LocalZone", &customerv1.CareSettings{DefaultTimeZone: "Local"}, []string{"default_time_zone"}, "settings.default_time_zone"},
			{"Hour", &customerv1.CareSettings{DueHour: 24}, []string{"due_hour"}, "settings.due_hour"},
			{"Days", &customerv1.CareSettings{PurchaseFollowUpDays: 366}, []string{"purchase_follow_up_days"}, "settings.purchase_follow_up_days"},
			{"NegativeDays", &customerv1.CareSettings{TicketFollowUpDays: -1}, []string{"ticket_follow_up_days"}, "settings.ticket_follow_up_days"},
			{"MaskPath", &customerv1.CareSettings{}, []string{"version"}, "update_mask"},
		} {
			_, err := b.client.UpdateCareSettings(b.as(), &customerv1.UpdateCareSettingsRequest{
				Settings: c.st, UpdateMask: &fieldmaskpb.FieldMask{Paths: c.paths}})
			requireFieldViolation(t, err, c.field)
		}
		_, err := b.client.UpdateCareSettings(b.as(), &customerv1.UpdateCareSettingsRequest{})
		requireFieldViolation(t, err, "settings")
	})

	t.Run("AdminOnlyAndPerTenant", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.UpdateCareSettings(b.as("agent"), &customerv1.UpdateCareSettingsRequest{
			Settings: &customerv1.CareSettings{BirthdayEnabled: true}})
		requireCode(t, err, codes.PermissionDenied)
		b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true}, "birthday_enabled")
		other, err := b.client.GetCareSettings(grpcxtest.As(uuid.New()), &customerv1.GetCareSettingsRequest{})
		require.NoError(t, err)
		require.False(t, other.GetBirthdayEnabled())
	})
}

func TestHolidayCalendar(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	create := func(h *customerv1.Holiday) (*customerv1.Holiday, error) {
		return b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{Holiday: h})
	}
	spring27, err := create(&customerv1.Holiday{Name: "Spring Festival", Date: "2027-02-06"})
	require.NoError(t, err)
	spring26, err := create(&customerv1.Holiday{Name: "Spring Festival", Date: "2026-02-17"})
	require.NoError(t, err)
	newYear, err := create(&customerv1.Holiday{Name: "New Year", RecurringMonth: 1, RecurringDay: 1})
	require.NoError(t, err)
	_, err = b.client.CreateHoliday(grpcxtest.As(uuid.New()), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Elsewhere", Date: "2026-05-01"}})
	require.NoError(t, err)

	list := func(year int32) []string {
		got, err := b.client.ListHolidays(b.as("agent"), &customerv1.ListHolidaysRequest{Year: year})
		require.NoError(t, err)
		var out []string
		for _, h := range got.GetHolidays() {
			out = append(out, h.GetId()+" "+h.GetOccursOn())
		}
		return out
	}
	require.Equal(t, []string{newYear.GetId() + " 2026-01-01", spring26.GetId() + " 2026-02-17"}, list(2026))
	require.Equal(t, []string{newYear.GetId() + " 2027-01-01", spring27.GetId() + " 2027-02-06"}, list(2027))

	_, err = b.client.DeleteHoliday(b.as(), &customerv1.DeleteHolidayRequest{Id: spring26.GetId()})
	require.NoError(t, err)
	_, err = b.client.DeleteHoliday(b.as(), &customerv1.DeleteHolidayRequest{Id: spring26.GetId()})
	requireCode(t, err, codes.NotFound)
	_, err = b.client.DeleteHoliday(grpcxtest.As(uuid.New()), &customerv1.DeleteHolidayRequest{Id: newYear.GetId()})
	requireCode(t, err, codes.NotFound)
	require.Equal(t, []string{newYear.GetId() + " 2026-01-01"}, list(2026))

	for _, c := range []struct {
		name  string
		h     *customerv1.Holiday
		field string
	}{
		{"NoDay", &customerv1.Holiday{Name: "x"}, "holiday.date"},
		{"Both", &customerv1.Holiday{Name: "x", Date: "2026-01-01", RecurringMonth: 1, RecurringDay: 1}, "holiday.date"},
		{"NotADate", &customerv1.Holiday{Name: "x", Date: "2026-02-30"}, "holiday.date"},
		{"BadFormat", &customerv1.Holiday{Name: "x", Date: "26-1-1"}, "holiday.date"},
		{"Feb29Recurring", &customerv1.Holiday{Name: "x", RecurringMonth: 2, RecurringDay: 29}, "holiday.recurring_day"},
		{"MonthOnly", &customerv1.Holiday{Name: "x", RecurringMonth: 2}, "holiday.recurring_day"},
		{"DayOnly", &customerv1.Holiday{Name: "x", RecurringDay: 2}, "holiday.recurring_month"},
		{"Month13", &customerv1.Holiday{Name: "x", RecurringMonth: 13, RecurringDay: 1}, "holiday.recurring_month"},
		{"BlankName", &customerv1.Holiday{Name: "  ", Date: "2026-01-01"}, "holiday.name"},
	} {
		_, err := create(c.h)
		requireFieldViolation(t, err, c.field)
	}
	_, err = b.client.ListHolidays(b.as(), &customerv1.ListHolidaysRequest{Year: 1999})
	requireFieldViolation(t, err, "year")
}

func newPlan(due time.Time) *customerv1.CarePlan {
	return &customerv1.CarePlan{
		Title: "Win back after the late delivery of Ada's kettle",
		Tasks: []*customerv1.CareTask{
			{Title: "Call Ada about the kettle", Assignee: "agent-7", DueTime: timestamppb.New(due)},
			{Title: "Send the voucher", Assignee: "agent-9", DueTime: timestamppb.New(due.Add(48 * time.Hour))},
		},
	}
}

func TestCarePlans(t *testing.T) {
	t.Parallel()

	t.Run("CreateGetListSealedAtRest", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.newCustomer(t, customerOpts{})
		due := utc("2026-06-03T09:00:00Z")
		ctx := grpcxtest.AsSubject(b.tenant, "agent-1", "agent")
		p, err := b.client.CreateCarePlan(ctx, &customerv1.CreateCarePlanRequest{CustomerId: c.String(), CarePlan: newPlan(due)})
		require.NoError(t, err)
		require.Equal(t, "agent-1", p.GetCreatedBy())
		require.Equal(t, c.String(), p.GetCustomerId())
		require.Len(t, p.GetTasks(), 2)
		require.Equal(t, "Call Ada about the kettle", p.GetTasks()[0].GetTitle())
		require.Equal(t, customerv1.CareTaskStatus_CARE_TASK_STATUS_OPEN, p.GetTasks()[0].GetStatus())

		got, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: c.String(), Id: p.GetId()})
		require.NoError(t, err)
		require.Empty(t, cmp.Diff(p, got, protocmp.Transform()))

		for range 2 {
			_, err := b.client.CreateCarePlan(ctx, &customerv1.CreateCarePlanRequest{CustomerId: c.String(), CarePlan: newPlan(due)})
			require.NoError(t, err)
			b.clock.Advance(time.Minute)
		}
		page, err := b.client.ListCarePlans(b.as(), &customerv1.ListCarePlansRequest{CustomerId: c.String(), PageSize: 2})
		require.NoError(t, err)
		require.Len(t, page.GetCarePlans(), 2)
		rest, err := b.client.ListCarePlans(b.as(), &customerv1.ListCarePlansRequest{CustomerId: c.String(), PageSize: 2,
			PageToken: page.GetNextPageToken()})
		require.NoError(t, err)
		require.Len(t, rest.GetCarePlans(), 1)
		require.Equal(t, p.GetId(), rest.GetCarePlans()[0].GetId(), "newest first: the first plan comes last")

		// No plaintext anywhere in the care tables.
		rows, err := b.pool.Query(context.Background(),
			`SELECT title_sealed FROM care_plans UNION ALL SELECT title_sealed FROM care_tasks`)
		require.NoError(t, err)
		defer rows.Close()
		for rows.Next() {
			var v []byte
			require.NoError(t, rows.Scan(&v))
			require.False(t, bytes.Contains(v, []byte("kettle")) || bytes.Contains(v, []byte("voucher")), "plaintext at rest")
		}
		require.NoError(t, rows.Err())
		require.Zero(t, b.count(t, `SELECT count(*) FROM idempotency_keys WHERE position('kettle' in encode(response, 'escape')) > 0`))
	})

	t.Run("NotFoundAcrossTenantsAndForUnknownCustomers", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.newCustomer(t, customerOpts{})
		p, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: c.String(), CarePlan: newPlan(utc("2026-06-03T09:00:00Z"))})
		require.NoError(t, err)
		x := grpcxtest.As(uuid.New())
		_, err = b.client.GetCarePlan(x, &customerv1.GetCarePlanRequest{CustomerId: c.String(), Id: p.GetId()})
		requireCode(t, err, codes.NotFound)
		_, err = b.client.ListCarePlans(x, &customerv1.ListCarePlansRequest{CustomerId: c.String()})
		requireCode(t, err, codes.NotFound)
		_, err = b.client.CreateCarePlan(x, &customerv1.CreateCarePlanRequest{CustomerId: c.String(), CarePlan: newPlan(utc("2026-06-03T09:00:00Z"))})
		requireCode(t, err, codes.NotFound)
		_, err = b.client.CompleteCareTask(x, &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId()})
		requireCode(t, err, codes.NotFound)
		tasks, err := b.client.ListCareTasks(x, &customerv1.ListCareTasksRequest{})
		require.NoError(t, err)
		require.Empty(t, tasks.GetCareTasks())
		_, err = b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: uuid.NewString(), Id: p.GetId()})
		requireCode(t, err, codes.NotFound)
	})

	t.Run("RefusesBadInputNamingTheField", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.newCustomer(t, customerOpts{}).String()
		due := utc("2026-06-03T09:00:00Z")
		mod := func(f func(p *customerv1.CarePlan)) *customerv1.CarePlan {
			p := newPlan(due)
			f(p)
			return p
		}
		for _, tc := range []struct {
			name  string
			req   *customerv1.CreateCarePlanRequest
			field string
		}{
			{"Customer", &customerv1.CreateCarePlanRequest{CustomerId: "nope", CarePlan: newPlan(due)}, "customer_id"},
			{"NoPlan", &customerv1.CreateCarePlanRequest{CustomerId: c}, "care_plan"},
			{"NoTasks", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: mod(func(p *customerv1.CarePlan) { p.Tasks = nil })}, "care_plan.tasks"},
			{"BlankTitle", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: mod(func(p *customerv1.CarePlan) { p.Title = " " })}, "care_plan.title"},
			{"TaskTitle", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: mod(func(p *customerv1.CarePlan) { p.Tasks[1].Title = "" })}, "care_plan.tasks[1].title"},
			{"Assignee", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: mod(func(p *customerv1.CarePlan) { p.Tasks[0].Assignee = "a b" })}, "care_plan.tasks[0].assignee"},
			{"DueTime", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: mod(func(p *customerv1.CarePlan) { p.Tasks[0].DueTime = nil })}, "care_plan.tasks[0].due_time"},
			{"RequestID", &customerv1.CreateCarePlanRequest{CustomerId: c, CarePlan: newPlan(due), RequestId: "x"}, "request_id"},
		} {
			_, err := b.client.CreateCarePlan(b.as(), tc.req)
			requireFieldViolation(t, err, tc.field)
		}
		require.Zero(t, b.count(t, `SELECT count(*) FROM care_plans`))
	})
}

func TestCompleteCareTask(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.newCustomer(t, customerOpts{})
	p, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: c.String(), CarePlan: newPlan(utc("2026-06-03T09:00:00Z"))})
	require.NoError(t, err)
	task := p.GetTasks()[0]
	ctx := grpcxtest.AsSubject(b.tenant, "agent-7", "agent")
	req := &customerv1.CompleteCareTaskRequest{Id: task.GetId(), OutcomeNote: "Ada is happy with the new kettle", RequestId: uuid.NewString()}

	// Ten concurrent retries of one request: one completion, ten equal answers.
	answers := make([]*customerv1.CareTask, 10)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() {
			var err error
			answers[i], err = b.client.CompleteCareTask(ctx, req)
			require.NoError(t, err)
		})
	}
	wg.Wait()
	done := answers[0]
	require.Equal(t, customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE, done.GetStatus())
	require.Equal(t, "agent-7", done.GetCompletedBy())
	require.Equal(t, "Ada is happy with the new kettle", done.GetOutcomeNote())
	require.Equal(t, b.clock.Now(), done.GetCompleteTime().AsTime())
	for _, a := range answers {
		require.Empty(t, cmp.Diff(done, a, protocmp.Transform()))
	}

	// Completing it again is refused, with its reason.
	_, err = b.client.CompleteCareTask(ctx, &customerv1.CompleteCareTaskRequest{Id: task.GetId(), OutcomeNote: "again"})
	st := status.Convert(err)
	require.Equal(t, codes.FailedPrecondition, st.Code(), "%v", err)
	require.Contains(t, st.Message(), "already completed")
	var reason string
	for _, d := range st.Details() {
		if info, ok := d.(interface{ GetReason() string }); ok {
			reason = info.GetReason()
		}
	}
	require.Equal(t, care.ReasonTaskAlreadyCompleted, reason)

	got, err := b.client.GetCarePlan(b.as(), &customerv1.GetCarePlanRequest{CustomerId: c.String(), Id: p.GetId()})
	require.NoError(t, err)
	require.Equal(t, "Ada is happy with the new kettle", got.GetTasks()[0].GetOutcomeNote(), "the first note stays")
	require.Zero(t, b.count(t, `SELECT count(*) FROM care_tasks WHERE position('kettle' in encode(outcome_note_sealed, 'escape')) > 0`))

	_, err = b.client.CompleteCareTask(ctx, &customerv1.CompleteCareTaskRequest{Id: uuid.NewString()})
	requireCode(t, err, codes.NotFound)
	_, err = b.client.CompleteCareTask(ctx, &customerv1.CompleteCareTaskRequest{Id: task.GetId(), OutcomeNote: string(make([]byte, 2001))})
	requireFieldViolation(t, err, "outcome_note")
}

func TestWorklist(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c1, c2 := b.newCustomer(t, customerOpts{}), b.newCustomer(t, customerOpts{})
	d := utc("2026-06-03T09:00:00Z")
	p1, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: c1.String(), CarePlan: newPlan(d)})
	require.NoError(t, err)
	p2, err := b.client.CreateCarePlan(b.as(), &customerv1.CreateCarePlanRequest{CustomerId: c2.String(), CarePlan: newPlan(d.Add(time.Hour))})
	require.NoError(t, err)
	_, err = b.client.CompleteCareTask(b.as(), &customerv1.CompleteCareTaskRequest{Id: p1.GetTasks()[0].GetId()})
	require.NoError(t, err)

	ids := func(req *customerv1.ListCareTasksRequest) []string {
		var out []string
		for {
			got, err := b.client.ListCareTasks(b.as("agent"), req)
			require.NoError(t, err)
			for _, task := range got.GetCareTasks() {
				require.NotEmpty(t, task.GetTitle(), "titles are opened for each customer")
				out = append(out, task.GetId())
			}
			if got.GetNextPageToken() == "" {
				return out
			}
			req.PageToken = got.GetNextPageToken()
		}
	}
	require.Equal(t, []string{p2.GetTasks()[0].GetId()},
		ids(&customerv1.ListCareTasksRequest{Assignee: "agent-7", Status: customerv1.CareTaskStatus_CARE_TASK_STATUS_OPEN}))
	require.Equal(t, []string{p1.GetTasks()[0].GetId()},
		ids(&customerv1.ListCareTasksRequest{Assignee: "agent-7", Status: customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE}))
	require.Equal(t, []string{p1.GetTasks()[0].GetId(), p2.GetTasks()[0].GetId(), p1.GetTasks()[1].GetId(), p2.GetTasks()[1].GetId()},
		ids(&customerv1.ListCareTasksRequest{PageSize: 1}), "everyone's, soonest due first, across pages")
	require.Equal(t, []string{p1.GetTasks()[0].GetId(), p2.GetTasks()[0].GetId()},
		ids(&customerv1.ListCareTasksRequest{DueBefore: timestamppb.New(d.Add(24 * time.Hour))}))

	_, err = b.client.ListCareTasks(b.as(), &customerv1.ListCareTasksRequest{PageToken: "garbage"})
	requireFieldViolation(t, err, "page_token")
	first, err := b.client.ListCareTasks(b.as(), &customerv1.ListCareTasksRequest{PageSize: 1})
	require.NoError(t, err)
	_, err = b.client.ListCareTasks(b.as(), &customerv1.ListCareTasksRequest{PageSize: 1, Assignee: "agent-9", PageToken: first.GetNextPageToken()})
	requireFieldViolation(t, err, "page_token")
	_, err = b.client.ListCareTasks(b.as("marketer"), &customerv1.ListCareTasksRequest{})
	requireCode(t, err, codes.PermissionDenied)
}

func TestListCareOccasionsInput(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, c := range []struct {
		name  string
		req   *customerv1.ListCareOccasionsRequest
		field string
	}{
		{"NoRange", &customerv1.ListCareOccasionsRequest{}, "start_date"},
		{"NoEnd", &customerv1.ListCareOccasionsRequest{StartDate: "2026-01-01"}, "end_date"},
		{"Reversed", &customerv1.ListCareOccasionsRequest{StartDate: "2026-02-01", EndDate: "2026-01-01"}, "end_date"},
		{"TooLong", &customerv1.ListCareOccasionsRequest{StartDate: "2026-01-01", EndDate: "2027-06-01"}, "end_date"},
		{"NotADate", &customerv1.ListCareOccasionsRequest{StartDate: "2026-13-01", EndDate: "2026-12-01"}, "start_date"},
		{"Kind", &customerv1.ListCareOccasionsRequest{CustomerId: uuid.NewString(), Kind: 99}, "kind"},
		{"Customer", &customerv1.ListCareOccasionsRequest{CustomerId: "x"}, "customer_id"},
	} {
		_, err := b.client.ListCareOccasions(b.as(), c.req)
		requireFieldViolation(t, err, c.field)
	}
	_, err := b.client.ListCareOccasions(b.as(), &customerv1.ListCareOccasionsRequest{CustomerId: uuid.NewString()})
	requireCode(t, err, codes.NotFound)
}
