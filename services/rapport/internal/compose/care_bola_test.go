package compose

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// careCases are the CareService rows of the cross-tenant matrix, over gRPC
// (see consentCases for why).
func careCases(b *testBundle) map[string]func(t *testing.T, w world) {
	c := customerv1.NewCareServiceClient(b.grpcConn)
	plan := func(t *testing.T, token, customerID string) *customerv1.CarePlan {
		t.Helper()
		p, err := c.CreateCarePlan(authCtx(token), &customerv1.CreateCarePlanRequest{CustomerId: customerID,
			CarePlan: &customerv1.CarePlan{Title: "Check in after the repair", Tasks: []*customerv1.CareTask{{
				Title: "Call about the repaired kettle", Assignee: "agent-y",
				DueTime: timestamppb.New(time.Now().Add(24 * time.Hour))}}}})
		require.NoError(t, err)
		return p
	}
	holiday := func(t *testing.T, token string) *customerv1.Holiday {
		t.Helper()
		h, err := c.CreateHoliday(authCtx(token), &customerv1.CreateHolidayRequest{
			Holiday: &customerv1.Holiday{Name: "Mid-Autumn Festival", Date: "2026-09-25"}})
		require.NoError(t, err)
		return h
	}
	holidays := func(t *testing.T, token string) []*customerv1.Holiday {
		t.Helper()
		l, err := c.ListHolidays(authCtx(token), &customerv1.ListHolidaysRequest{Year: 2026})
		require.NoError(t, err)
		return l.GetHolidays()
	}
	return map[string]func(t *testing.T, w world){
		customerv1.CareService_GetCareSettings_FullMethodName: func(t *testing.T, w world) {
			_, err := c.UpdateCareSettings(authCtx(w.y), &customerv1.UpdateCareSettingsRequest{
				Settings: &customerv1.CareSettings{BirthdayEnabled: true}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"birthday_enabled"}}})
			require.NoError(t, err)
			xs, err := c.GetCareSettings(authCtx(w.x), &customerv1.GetCareSettingsRequest{})
			require.NoError(t, err)
			require.False(t, xs.GetBirthdayEnabled(), "X reads its own settings, not Y's")
		},
		customerv1.CareService_UpdateCareSettings_FullMethodName: func(t *testing.T, w world) {
			_, err := c.UpdateCareSettings(authCtx(w.x), &customerv1.UpdateCareSettingsRequest{
				Settings: &customerv1.CareSettings{DueHour: 23}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"due_hour"}}})
			require.NoError(t, err)
			ys, err := c.GetCareSettings(authCtx(w.y), &customerv1.GetCareSettingsRequest{})
			require.NoError(t, err)
			require.Equal(t, int32(9), ys.GetDueHour(), "X's change left Y's settings alone")
		},
		customerv1.CareService_CreateHoliday_FullMethodName: func(t *testing.T, w world) {
			holiday(t, w.x)
			require.Empty(t, holidays(t, w.y), "X's holiday is not in Y's calendar")
			require.Len(t, holidays(t, w.x), 1)
		},
		customerv1.CareService_ListHolidays_FullMethodName: func(t *testing.T, w world) {
			holiday(t, w.y)
			require.Empty(t, holidays(t, w.x), "X lists none of Y's holidays")
			require.Len(t, holidays(t, w.y), 1, "Y lists its own: the case is not vacuous")
		},
		customerv1.CareService_DeleteHoliday_FullMethodName: func(t *testing.T, w world) {
			h := holiday(t, w.y)
			_, err := c.DeleteHoliday(authCtx(w.x), &customerv1.DeleteHolidayRequest{Id: h.GetId()})
			notFound(t, err)
			require.Len(t, holidays(t, w.y), 1, "Y's holiday survives")
		},
		customerv1.CareService_ListCareOccasions_FullMethodName: func(t *testing.T, w world) {
			_, err := c.ListCareOccasions(authCtx(w.x), &customerv1.ListCareOccasionsRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			_, err = c.ListCareOccasions(authCtx(w.y), &customerv1.ListCareOccasionsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err, "Y reads its own customer's calendar")
			r, err := c.ListCareOccasions(authCtx(w.x), &customerv1.ListCareOccasionsRequest{StartDate: "2000-01-01", EndDate: "2000-12-31"})
			require.NoError(t, err)
			require.Empty(t, r.GetOccasions())
		},
		customerv1.CareService_CreateCarePlan_FullMethodName: func(t *testing.T, w world) {
			_, err := c.CreateCarePlan(authCtx(w.x), &customerv1.CreateCarePlanRequest{CustomerId: w.yCustomer.GetId(),
				CarePlan: &customerv1.CarePlan{Title: "x", Tasks: []*customerv1.CareTask{{Title: "x", Assignee: "agent-x",
					DueTime: timestamppb.Now()}}}})
			notFound(t, err)
			l, err := c.ListCarePlans(authCtx(w.y), &customerv1.ListCarePlansRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, l.GetCarePlans(), "X's attempt left nothing on Y's customer")
		},
		customerv1.CareService_GetCarePlan_FullMethodName: func(t *testing.T, w world) {
			p := plan(t, w.y, w.yCustomer.GetId())
			_, err := c.GetCarePlan(authCtx(w.x), &customerv1.GetCarePlanRequest{CustomerId: w.yCustomer.GetId(), Id: p.GetId()})
			notFound(t, err)
		},
		customerv1.CareService_ListCarePlans_FullMethodName: func(t *testing.T, w world) {
			plan(t, w.y, w.yCustomer.GetId())
			_, err := c.ListCarePlans(authCtx(w.x), &customerv1.ListCarePlansRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.CareService_CompleteCareTask_FullMethodName: func(t *testing.T, w world) {
			p := plan(t, w.y, w.yCustomer.GetId())
			_, err := c.CompleteCareTask(authCtx(w.x), &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId(), OutcomeNote: "x"})
			notFound(t, err)
			done, err := c.CompleteCareTask(authCtx(w.y), &customerv1.CompleteCareTaskRequest{Id: p.GetTasks()[0].GetId(),
				RequestId: uuid.NewString()})
			require.NoError(t, err, "the task was still open for Y")
			require.Equal(t, customerv1.CareTaskStatus_CARE_TASK_STATUS_DONE, done.GetStatus())
		},
		customerv1.CareService_ListCareTasks_FullMethodName: func(t *testing.T, w world) {
			plan(t, w.y, w.yCustomer.GetId())
			xl, err := c.ListCareTasks(authCtx(w.x), &customerv1.ListCareTasksRequest{})
			require.NoError(t, err)
			require.Empty(t, xl.GetCareTasks(), "X's worklist shows none of Y's tasks")
			yl, err := c.ListCareTasks(authCtx(w.y), &customerv1.ListCareTasksRequest{Assignee: "agent-y"})
			require.NoError(t, err)
			require.Len(t, yl.GetCareTasks(), 1)
		},
	}
}
