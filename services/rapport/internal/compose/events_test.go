package compose

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

var projection = fstest.MapFS{"00001_seen.sql": {Data: []byte(`-- +goose Up
CREATE TABLE seen (
    event_id    text PRIMARY KEY,
    subject     text NOT NULL,
    customer_id uuid NOT NULL,
    version     bigint NOT NULL,
    applied     int NOT NULL DEFAULT 1
);
-- +goose Down
DROP TABLE seen;
`)}}

// TestCustomerEventsReachAConsumerExactlyOnce proves the pipe: each committed
// change of the slice is written with an outbox row, relayed to JetStream and
// applied exactly once by an inbox consumer; refused requests publish nothing.
func TestCustomerEventsReachAConsumerExactlyOnce(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: "projection", Migrations: projection})
	_, js, err := natsx.Connect(ctx, natsx.Config{URL: b.natsURL, Name: "slice-test"})
	require.NoError(t, err)
	consumer, err := inbox.New(pool, js, inbox.Config{
		Consumer: "slice-test", Stream: natsx.StreamName("customer"), Workers: 4,
	}, func(ctx context.Context, tx pgx.Tx, m inbox.Message) error {
		var customerID string
		var version int64
		switch m.Subject {
		case "rapport.customer.customer.created":
			ev := &customerv1.CustomerCreated{}
			if err := proto.Unmarshal(m.Data, ev); err != nil {
				return inbox.Permanent(err)
			}
			customerID, version = ev.GetCustomerId(), ev.GetAggregateVersion()
		case "rapport.customer.customer.updated":
			ev := &customerv1.CustomerUpdated{}
			if err := proto.Unmarshal(m.Data, ev); err != nil {
				return inbox.Permanent(err)
			}
			customerID, version = ev.GetCustomerId(), ev.GetAggregateVersion()
		default:
			return inbox.Permanent(fmt.Errorf("unexpected subject %s", m.Subject))
		}
		_, err := tx.Exec(ctx, `INSERT INTO seen (event_id, subject, customer_id, version) VALUES ($1, $2, $3, $4)
			ON CONFLICT (event_id) DO UPDATE SET applied = seen.applied + 1`, m.ID, m.Subject, customerID, version)
		return err
	})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()

	tenant := uuid.NewString()
	tok := b.token(t, tenant, "pipe")
	api := b.apis()[0]
	const customers = 20
	var ids []string
	for i := range customers {
		r := api.create(t, tok, ada(), "")
		require.Equal(t, codes.OK, r.code)
		ids = append(ids, r.customer.GetId())
		if i%2 == 0 {
			up := api.update(t, tok, &customerv1.Customer{Id: r.customer.GetId(), Email: fmt.Sprintf("c%d@example.com", i)}, []string{"email"}, "")
			require.Equal(t, codes.OK, up.code)
		}
		bad := ada()
		bad.TimeZone = "Nowhere/Land"
		require.Equal(t, codes.InvalidArgument, api.create(t, tok, bad, "").code, "a refused create publishes nothing")
	}
	const want = customers + customers/2

	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM seen").Scan(&n))
		return n >= want
	}, 20*time.Second, 50*time.Millisecond)

	var n, dup int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE applied > 1) FROM seen").Scan(&n, &dup))
	require.Equal(t, want, n, "every committed change arrives")
	require.Zero(t, dup, "no change is applied twice")

	// The events are exactly the committed outbox rows of this tenant.
	rows, err := b.customerPool(t).Query(ctx, "SELECT id::text FROM outbox WHERE tenant_id = $1 ORDER BY id", tenant)
	require.NoError(t, err)
	committed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	rows, err = pool.Query(ctx, "SELECT event_id FROM seen ORDER BY event_id")
	require.NoError(t, err)
	seen, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, committed, seen)

	// Each customer's versions arrived complete: 1 for all, 2 for the updated.
	for i, id := range ids {
		rows, err := pool.Query(ctx, "SELECT version FROM seen WHERE customer_id = $1 ORDER BY version", id)
		require.NoError(t, err)
		versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		require.NoError(t, err)
		wantV := []int64{1}
		if i%2 == 0 {
			wantV = []int64{1, 2}
		}
		require.Equal(t, wantV, versions, "customer %d", i)
	}
	cancel()
	require.NoError(t, <-done)
}
