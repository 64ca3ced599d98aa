package compose

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

var benchClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}

func restCall(tb testing.TB, method, url, token, body string) {
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	require.NoError(tb, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := benchClient.Do(req)
	require.NoError(tb, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	require.Equal(tb, http.StatusOK, resp.StatusCode)
}

// BenchmarkGateway compares REST through the gateway with direct gRPC, and
// the gateway's two ways to reach the server (loopback TCP, in memory), in
// one run. Ratios: REST/GRPC is the edge's cost; InMemory/Loopback is what
// a TCP hop on loopback costs the gateway.
func BenchmarkGateway(b *testing.B) {
	loop := setup(b)
	mem := setupWith(b, Options{GatewayInMemory: true})
	body := `{"displayName":"Ada Lovelace","email":"ada@example.com","timeZone":"Europe/London","tags":["vip"]}`

	for _, sys := range []struct {
		name string
		b    *testBundle
	}{{"Loopback", loop}, {"InMemory", mem}} {
		tok := sys.b.token(b, tenantA, "bench")
		client := customerv1.NewCustomerServiceClient(sys.b.grpcConn)
		created, err := client.CreateCustomer(authCtx(tok), &customerv1.CreateCustomerRequest{Customer: ada()})
		require.NoError(b, err)
		id := created.GetId()

		b.Run("GetCustomer/GRPC/"+sys.name, func(b *testing.B) {
			ctx := authCtx(tok)
			for b.Loop() {
				_, err := client.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: id})
				require.NoError(b, err)
			}
		})
		b.Run("GetCustomer/REST/"+sys.name, func(b *testing.B) {
			for b.Loop() {
				restCall(b, http.MethodGet, sys.b.httpBase+"/v1/customers/"+id, tok, "")
			}
		})
		b.Run("CreateCustomer/GRPC/"+sys.name, func(b *testing.B) {
			ctx := authCtx(tok)
			for b.Loop() {
				_, err := client.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: ada()})
				require.NoError(b, err)
			}
		})
		b.Run("CreateCustomer/REST/"+sys.name, func(b *testing.B) {
			for b.Loop() {
				restCall(b, http.MethodPost, sys.b.httpBase+"/v1/customers", tok, body)
			}
		})
	}
}

func TestGatewayInMemoryServesTheSameAPI(t *testing.T) {
	b := setupWith(t, Options{GatewayInMemory: true})
	tok := b.token(t, tenantA, "mem")
	rest := restAPI{base: b.httpBase, b: b}
	r := rest.create(t, tok, ada(), "")
	require.NotEmpty(t, r.customer.GetId())
	got := rest.get(t, tok, r.customer.GetId())
	require.Equal(t, "Ada Lovelace", got.customer.GetDisplayName())
	// Interceptors run on this path too: no token, no data.
	require.Equal(t, "Unauthenticated", rest.get(t, "", r.customer.GetId()).code.String())
}
