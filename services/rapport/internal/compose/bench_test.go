package compose

import (
	"context"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// BenchmarkCreateCustomer compares the whole stack with the SQL it runs.
// Read the sub-benchmarks as ratios of one run (the machine is shared):
// GRPC/SQL is what authentication, validation, the interceptors and the
// domain cost over the bare transaction; REST/GRPC is the gateway's cost.
func BenchmarkCreateCustomer(b *testing.B) {
	tb := setup(b)
	tenant := uuid.NewString()
	tok := tb.token(b, tenant, "bench")
	ctx := authCtx(tok)
	client := customerv1.NewCustomerServiceClient(tb.grpcConn)

	b.Run("GRPC", func(b *testing.B) {
		for b.Loop() {
			_, err := client.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: ada()})
			require.NoError(b, err)
		}
	})
	b.Run("GRPCWithRequestID", func(b *testing.B) {
		for b.Loop() {
			_, err := client.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: ada(), RequestId: uuid.NewString()})
			require.NoError(b, err)
		}
	})
	b.Run("REST", func(b *testing.B) {
		body := `{"displayName":"Ada Lovelace","email":"ada@example.com","phone":"+442071234567","locale":"en-GB","timeZone":"Europe/London","tags":["vip","newsletter"]}`
		for b.Loop() {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, tb.httpBase+"/v1/customers", strings.NewReader(body))
			require.NoError(b, err)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(b, err)
			_ = resp.Body.Close()
			require.Equal(b, http.StatusOK, resp.StatusCode)
		}
	})
	// SQL is the same transaction by hand: the customer row and its outbox
	// row with the marshalled event, over the same pool settings.
	b.Run("SQL", func(b *testing.B) {
		pool := tb.customerPool(b)
		for b.Loop() {
			id := uuid.Must(uuid.NewV7())
			now := time.Now().UTC()
			tx, err := pool.Begin(context.Background())
			require.NoError(b, err)
			// The customer's wrapped data key, then the row with its sealed
			// fields (random stand-ins of the real sizes: Tink adds 45 bytes)
			// and blind indexes.
			_, err = tx.Exec(context.Background(), `INSERT INTO customer_keys (tenant_id, customer_id, keyset)
				VALUES ($1, $2, $3)`, tenant, id, sealedStandIn(161))
			require.NoError(b, err)
			_, err = tx.Exec(context.Background(), `INSERT INTO customers
				(tenant_id, id, display_name_sealed, email_sealed, phone_sealed, email_bidx, phone_bidx,
				 locale, time_zone, tags, create_time, update_time)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING *`,
				tenant, id, sealedStandIn(len("Ada Lovelace")+45), sealedStandIn(len("ada@example.com")+45),
				sealedStandIn(len("+442071234567")+45), 12345, 54321, "en-GB", "Europe/London",
				[]string{"newsletter", "vip"}, now)
			require.NoError(b, err)
			payload, err := proto.Marshal(&customerv1.CustomerCreated{TenantId: tenant, CustomerId: id.String(),
				AggregateVersion: 1, OccurredAt: timestamppb.New(now), Locale: "en-GB", TimeZone: "Europe/London",
				Tags: []string{"newsletter", "vip"}})
			require.NoError(b, err)
			_, err = tx.Exec(context.Background(), `INSERT INTO outbox
				(id, tenant_id, subject, event_type, aggregate_type, aggregate_id, aggregate_version, payload, occurred_at)
				VALUES ($1, $2, 'rapport.customer.customer.created', 'rapport.customer.v1.CustomerCreated', 'customer', $3, 1, $4, $5)`,
				uuid.Must(uuid.NewV7()), tenant, id.String(), payload, now)
			require.NoError(b, err)
			require.NoError(b, tx.Commit(context.Background()))
		}
	})
}

// sealedStandIn is n random bytes, the size of a sealed value.
func sealedStandIn(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
