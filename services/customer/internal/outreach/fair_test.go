package outreach_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

// backlog makes n due email deliveries of tenant: one through SendOutreach,
// the rest copies of its row (new ids, due a microsecond apart after it),
// as a tenant's campaign would queue them. It returns their ids. Call it
// once per tenant (it creates the tenant's template).
func (b *testBundle) backlog(t testing.TB, tenant uuid.UUID, n int) []string {
	t.Helper()
	ctx := grpcxtest.As(tenant)
	_, err := b.client.CreateOutreachTemplate(ctx, &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: emailTemplate("birthday")})
	require.NoError(t, err)
	cust := b.newCustomer(t, tenant, person{email: "bulk@example.org"})
	d, err := b.client.SendOutreach(ctx, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service,
		Variables: map[string]string{"first_name": "B", "code": "C"},
		Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	require.NoError(t, err)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED, d.GetStatus())
	_, err = b.pool.Exec(context.Background(), `INSERT INTO outreach_deliveries
		SELECT (jsonb_populate_record(d, jsonb_build_object(
			'id', gen_random_uuid(), 'request_id', NULL,
			'next_attempt_time', d.next_attempt_time + i * interval '1 microsecond'))).*
		FROM outreach_deliveries d, generate_series(1, $2::int - 1) i
		WHERE d.tenant_id = $3 AND d.id = $1`, d.GetId(), n, tenant)
	require.NoError(t, err)
	rows, err := b.pool.Query(context.Background(),
		`SELECT id::text FROM outreach_deliveries WHERE tenant_id = $1 AND customer_id = $2`, tenant, cust)
	require.NoError(t, err)
	var ids []string
	for rows.Next() {
		var id string
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, ids, n)
	return ids
}

// sentOrder is the delivery ids in the order the SMTP server received
// them (the Message-Id is the delivery id).
func (b *testBundle) sentOrder(t testing.TB) []string {
	t.Helper()
	var ids []string
	for _, m := range b.smtp.received() {
		id, _, _ := strings.Cut(strings.Trim(parseMail(t, m.Data).Header.Get("Message-Id"), "<>"), "@")
		ids = append(ids, id)
	}
	return ids
}

// TestClaimFairAcrossTenants: tenant A queued 200 deliveries, then tenant
// B queued 2; the worker's first batch (20) already sends B's two, though
// all of A's were due earlier, and every delivery goes out exactly once.
func TestClaimFairAcrossTenants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenantB := uuid.New()
	a := b.backlog(t, b.tenant, 200)
	b.clock.Advance(time.Second)
	bIDs := b.backlog(t, tenantB, 2)
	b.clock.Advance(time.Minute)

	require.Equal(t, 202, b.deliverDue(t))
	order := b.sentOrder(t)
	require.Len(t, order, 202)
	require.Subset(t, order[:20], bIDs, "B's deliveries in the first batch")
	require.ElementsMatch(t, append(append([]string{}, a...), bIDs...), order, "each sent once")
}

// TestClaimFairReplicas: three workers drain two tenants' backlogs at once;
// every delivery is claimed and sent exactly once.
func TestClaimFairReplicas(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ids := b.backlog(t, b.tenant, 60)
	ids = append(ids, b.backlog(t, uuid.New(), 45)...)
	ids = append(ids, b.backlog(t, uuid.New(), 3)...)
	b.clock.Advance(time.Minute)
	cfg := outreach.Config{SMTP: outreach.SMTPConfig{Addr: b.smtp.addr, TLS: "none", From: "care@acme.example"}}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		total int
	)
	for range 3 {
		w, err := outreach.New(b.pool, b.sealer, cfg, b.clock.Now, nil)
		require.NoError(t, err)
		wg.Go(func() {
			k, err := w.DeliverDue(context.Background())
			require.NoError(t, err)
			mu.Lock()
			total += k
			mu.Unlock()
		})
	}
	wg.Wait()
	// A worker ends its round on a short batch, which a concurrent claim
	// can cause while deliveries remain: one more round takes the rest.
	total += b.deliverDue(t)
	require.Equal(t, len(ids), total, "each claimed once")
	require.ElementsMatch(t, ids, b.sentOrder(t), "each sent once")
}
