package outreach_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
)

// TestReplicasSendEachOnce: three workers (as on three replicas) drain 45
// deliveries together; every delivery goes out exactly once.
func TestReplicasSendEachOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	const n = 45
	for range n {
		cust := b.newCustomer(t, b.tenant, person{email: "r@example.org"})
		b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service,
			Variables: map[string]string{"first_name": "R", "code": "C"},
			Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})
	}
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
	require.Equal(t, n, total, "each claimed once")
	ids := map[string]bool{}
	for _, m := range b.smtp.received() {
		p := parseMail(t, m.Data)
		ids[p.Header.Get("Message-Id")] = true
	}
	require.Len(t, ids, n, "each sent once")
	require.Len(t, sentEvents(t, b), n)
}

// TestLeaseTakeover: a worker that claimed a delivery and died leaves it
// leased; after the lease it is claimed again (a new attempt), and the dead
// worker's late outcome would be ignored (its attempt count is stale).
func TestLeaseTakeover(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	cust := b.newCustomer(t, b.tenant, person{email: "l@example.org"})
	d := b.send(t, &customerv1.SendOutreachRequest{CustomerId: cust.String(), Purpose: service,
		Variables: map[string]string{"first_name": "L", "code": "C"},
		Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}})

	// The claim of a worker that dies before recording anything.
	_, err := b.pool.Exec(context.Background(), `UPDATE outreach_deliveries
		SET attempts = attempts + 1, next_attempt_time = $2 WHERE id = $1`, d.GetId(), t0.Add(time.Minute+5*time.Second))
	require.NoError(t, err)
	require.Zero(t, b.deliverDue(t), "leased")
	b.clock.Advance(2 * time.Minute)
	require.Equal(t, 1, b.deliverDue(t))
	got := b.delivery(t, d)
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_SENT, got.GetStatus())
	require.Equal(t, int32(2), got.GetAttempts())
	require.Len(t, b.smtp.received(), 1)
}
