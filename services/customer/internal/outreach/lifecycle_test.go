package outreach_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

func (b *testBundle) export(t testing.TB, customer uuid.UUID) *customerv1.OutreachExport {
	t.Helper()
	var out *customerv1.OutreachExport
	b.inTx(t, func(tx pgx.Tx) {
		m, err := b.srv.Export(context.Background(), tx, b.tenant, customer)
		require.NoError(t, err)
		out = m.(*customerv1.OutreachExport)
	})
	return out
}

// TestExport: the customer's log with the content sent, decrypted, and
// nothing of another customer's.
func TestExport(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.Equal(t, "outreach", b.srv.Section())
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "a@example.org", locale: "de"})
	other := b.newCustomer(t, b.tenant, person{email: "b@example.org"})
	vars := map[string]string{"first_name": "Ann", "code": "C1"}
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	b.send(t, &customerv1.SendOutreachRequest{CustomerId: other.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	refused := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: marketing, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	require.Equal(t, 2, b.deliverDue(t))

	ex := b.export(t, cust)
	require.Len(t, ex.GetDeliveries(), 2)
	first := ex.GetDeliveries()[0]
	require.Equal(t, d.GetId(), first.GetDelivery().GetId())
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, first.GetDelivery().GetStatus())
	require.Equal(t, "Alles Gute, Ann!", first.GetSubject())
	require.Equal(t, "Liebe(r) Ann, Ihr Code: C1.", first.GetTextBody())
	require.Contains(t, first.GetHtmlBody(), "<b>C1</b>")
	require.Equal(t, refused.GetId(), ex.GetDeliveries()[1].GetDelivery().GetId())
	require.Empty(t, ex.GetDeliveries()[1].GetTextBody(), "a refused delivery holds no content")
}

// TestMerge: the source's deliveries move to the primary, their content
// still opens, and a queued one goes to the primary's address.
func TestMerge(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	primary := b.newCustomer(t, b.tenant, person{email: "primary@example.org"})
	source := b.newCustomer(t, b.tenant, person{email: "source@example.org"})
	otherTenant := uuid.New()
	stranger := b.newCustomer(t, otherTenant, person{email: "x@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: source.String(), Purpose: service,
		Variables: map[string]string{"first_name": "S", "code": "C"},
		Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})

	b.inTx(t, func(tx pgx.Tx) {
		n, err := b.srv.Merge(context.Background(), tx, b.tenant, primary, []uuid.UUID{source, stranger})
		require.NoError(t, err)
		require.Equal(t, int64(1), n, "the other tenant's customer is not touched")
	})
	require.Empty(t, b.export(t, source).GetDeliveries())
	ex := b.export(t, primary)
	require.Len(t, ex.GetDeliveries(), 1)
	require.Equal(t, d.GetId(), ex.GetDeliveries()[0].GetDelivery().GetId())
	require.Equal(t, "Happy birthday, S!", ex.GetDeliveries()[0].GetSubject(), "content sealed for the source still opens")

	require.Equal(t, 1, b.deliverDue(t))
	require.Equal(t, []string{"primary@example.org"}, b.smtp.received()[0].To)

	// The profile marks the source merged; sending to it is refused.
	_, err := b.pool.Exec(context.Background(), `UPDATE customers SET merged_into = $3, merge_time = now()
		WHERE tenant_id = $1 AND id = $2`, b.tenant, source, primary)
	require.NoError(t, err)
	_, err = b.client.SendOutreach(b.ctx(), &customerv1.SendOutreachRequest{CustomerId: source.String(), Purpose: service,
		Variables: map[string]string{"first_name": "S", "code": "C"},
		Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	require.Equal(t, codes.FailedPrecondition, status.Code(err), "%v", err)
}

// TestErase: queued deliveries fail as erased (with their event), content
// is gone, the log stays; erasing again changes nothing.
func TestErase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "gone@example.org"})
	keep := b.newCustomer(t, b.tenant, person{email: "stays@example.org"})
	vars := map[string]string{"first_name": "G", "code": "C"}
	sent := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	require.Equal(t, 1, b.deliverDue(t))
	queued := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	kept := b.send(t, &customerv1.SendOutreachRequest{CustomerId: keep.String(), Purpose: service, Variables: vars,
		Template: &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})

	for range 2 {
		b.inTx(t, func(tx pgx.Tx) {
			require.NoError(t, b.srv.Erase(context.Background(), tx, b.tenant, cust))
		})
	}
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, b.delivery(t, sent).GetStatus())
	q := b.delivery(t, queued)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, q.GetStatus())
	require.Equal(t, outreach.ReasonErased, q.GetFailureReason())
	failed := failedEvents(t, b)
	require.Len(t, failed, 1, "one event, not one per erase")
	require.Equal(t, queued.GetId(), failed[0].GetDeliveryId())
	require.Equal(t, outreach.ReasonErased, failed[0].GetReason())

	var withContent int
	require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM outreach_deliveries
		WHERE tenant_id = $1 AND customer_id = $2 AND content_sealed IS NOT NULL`, b.tenant, cust).Scan(&withContent))
	require.Zero(t, withContent)
	for _, e := range b.export(t, cust).GetDeliveries() {
		require.Empty(t, e.GetTextBody())
	}

	require.Equal(t, 1, b.deliverDue(t), "only the other customer's delivery goes out")
	require.Equal(t, []string{"stays@example.org"}, b.smtp.received()[1].To)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, b.delivery(t, kept).GetStatus())
}

// TestKeyDestroyedBeforeSend: a queued delivery whose customer's key is
// gone fails as erased at send time and sends nothing.
func TestKeyDestroyedBeforeSend(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "k@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service,
		Variables: map[string]string{"first_name": "K", "code": "C"},
		Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	_, err := b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, cust)
	require.NoError(t, err)
	require.Equal(t, 1, b.deliverDue(t))
	require.Empty(t, b.smtp.received())
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, got.GetStatus())
	require.Equal(t, outreach.ReasonErased, got.GetFailureReason())
}
