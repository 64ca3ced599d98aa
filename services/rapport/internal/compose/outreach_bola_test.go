package compose

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// outreachCases are the OutreachService rows of the cross-tenant matrix,
// over gRPC (see consentCases for why). Templates are tenant configuration:
// X never reads, changes or uses Y's; deliveries are per customer: X never
// sends to, reads or lists Y's customer's.
func outreachCases(b *testBundle) map[string]func(t *testing.T, w world) {
	c := customerv1.NewOutreachServiceClient(b.grpcConn)
	template := func(t *testing.T, token string) *customerv1.OutreachTemplate {
		t.Helper()
		tpl, err := c.CreateOutreachTemplate(authCtx(token), &customerv1.CreateOutreachTemplateRequest{
			OutreachTemplate: &customerv1.OutreachTemplate{Key: "bola-" + uuid.NewString()[:8],
				Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
				Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", Subject: "Hi", TextBody: "Hello {{.name}}"}}}})
		require.NoError(t, err)
		return tpl
	}
	send := func(t *testing.T, token, customerID string, tpl *customerv1.OutreachTemplate) (*customerv1.OutreachDelivery, error) {
		t.Helper()
		return c.SendOutreach(authCtx(token), &customerv1.SendOutreachRequest{CustomerId: customerID,
			Template: &customerv1.SendOutreachRequest_TemplateId{TemplateId: tpl.GetId()},
			Purpose:  customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE, Variables: map[string]string{"name": "Y"}})
	}
	return map[string]func(t *testing.T, w world){
		customerv1.OutreachService_CreateOutreachTemplate_FullMethodName: func(t *testing.T, w world) {
			xs := template(t, w.x)
			_, err := c.GetOutreachTemplate(authCtx(w.y), &customerv1.GetOutreachTemplateRequest{Id: xs.GetId()})
			notFound(t, err)
			ys, err := c.ListOutreachTemplates(authCtx(w.y), &customerv1.ListOutreachTemplatesRequest{})
			require.NoError(t, err)
			for _, tpl := range ys.GetOutreachTemplates() {
				require.NotEqual(t, xs.GetId(), tpl.GetId(), "X's template was created in X's tenant only")
			}
		},
		customerv1.OutreachService_GetOutreachTemplate_FullMethodName: func(t *testing.T, w world) {
			ys := template(t, w.y)
			_, err := c.GetOutreachTemplate(authCtx(w.x), &customerv1.GetOutreachTemplateRequest{Id: ys.GetId()})
			notFound(t, err)
			_, err = c.GetOutreachTemplate(authCtx(w.y), &customerv1.GetOutreachTemplateRequest{Id: ys.GetId()})
			require.NoError(t, err)
		},
		customerv1.OutreachService_ListOutreachTemplates_FullMethodName: func(t *testing.T, w world) {
			ys := template(t, w.y)
			xs, err := c.ListOutreachTemplates(authCtx(w.x), &customerv1.ListOutreachTemplatesRequest{PageSize: 500})
			require.NoError(t, err)
			for _, tpl := range xs.GetOutreachTemplates() {
				require.NotEqual(t, ys.GetId(), tpl.GetId(), "X lists none of Y's templates")
			}
		},
		customerv1.OutreachService_UpdateOutreachTemplate_FullMethodName: func(t *testing.T, w world) {
			ys := template(t, w.y)
			_, err := c.UpdateOutreachTemplate(authCtx(w.x), &customerv1.UpdateOutreachTemplateRequest{
				OutreachTemplate: &customerv1.OutreachTemplate{Id: ys.GetId(), Key: "taken-over"},
				UpdateMask:       &fieldmaskpb.FieldMask{Paths: []string{"key"}}})
			notFound(t, err)
			got, err := c.GetOutreachTemplate(authCtx(w.y), &customerv1.GetOutreachTemplateRequest{Id: ys.GetId()})
			require.NoError(t, err)
			require.Equal(t, ys.GetKey(), got.GetKey(), "Y's template unchanged")
		},
		customerv1.OutreachService_DeleteOutreachTemplate_FullMethodName: func(t *testing.T, w world) {
			ys := template(t, w.y)
			_, err := c.DeleteOutreachTemplate(authCtx(w.x), &customerv1.DeleteOutreachTemplateRequest{Id: ys.GetId()})
			notFound(t, err)
			_, err = c.GetOutreachTemplate(authCtx(w.y), &customerv1.GetOutreachTemplateRequest{Id: ys.GetId()})
			require.NoError(t, err, "Y's template still there")
		},
		customerv1.OutreachService_SendOutreach_FullMethodName: func(t *testing.T, w world) {
			xs, ys := template(t, w.x), template(t, w.y)
			_, err := send(t, w.x, w.yCustomer.GetId(), xs)
			notFound(t, err)
			_, err = send(t, w.x, w.yCustomer.GetId(), ys)
			notFound(t, err)
			log, err := c.ListOutreachDeliveries(authCtx(w.y), &customerv1.ListOutreachDeliveriesRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, log.GetOutreachDeliveries(), "X's attempts left nothing in Y's log")
			_, err = send(t, w.y, w.yCustomer.GetId(), ys)
			require.NoError(t, err, "Y's own send works")
		},
		customerv1.OutreachService_GetOutreachDelivery_FullMethodName: func(t *testing.T, w world) {
			d, err := send(t, w.y, w.yCustomer.GetId(), template(t, w.y))
			require.NoError(t, err)
			_, err = c.GetOutreachDelivery(authCtx(w.x), &customerv1.GetOutreachDeliveryRequest{CustomerId: w.yCustomer.GetId(), Id: d.GetId()})
			notFound(t, err)
			_, err = c.GetOutreachDelivery(authCtx(w.y), &customerv1.GetOutreachDeliveryRequest{CustomerId: w.yCustomer.GetId(), Id: d.GetId()})
			require.NoError(t, err)
		},
		customerv1.OutreachService_ListOutreachDeliveries_FullMethodName: func(t *testing.T, w world) {
			_, err := send(t, w.y, w.yCustomer.GetId(), template(t, w.y))
			require.NoError(t, err)
			_, err = c.ListOutreachDeliveries(authCtx(w.x), &customerv1.ListOutreachDeliveriesRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			log, err := c.ListOutreachDeliveries(authCtx(w.y), &customerv1.ListOutreachDeliveriesRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.NotEmpty(t, log.GetOutreachDeliveries())
		},
	}
}
