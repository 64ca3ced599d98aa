package compose

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

type httpReply struct {
	status int
	header http.Header
	body   string
}

// call makes one HTTP request to the system's gateway.
func (b *testBundle) call(tb testing.TB, method, path, token string, headers map[string]string, body string) httpReply {
	tb.Helper()
	return httpCall(tb, b.httpBase, method, path, token, headers, body)
}

// httpCall makes one HTTP request to base+path, with token as a bearer
// credential when set, and reads the whole answer.
func httpCall(tb testing.TB, base, method, path, token string, headers map[string]string, body string) httpReply {
	tb.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, base+path, strings.NewReader(body))
	require.NoError(tb, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return httpReply{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func TestGatewayEdge(t *testing.T) {
	b := setup(t)
	tok := b.token(t, tenantA, "edge")
	created := b.apis()[1].create(t, tok, ada(), "")
	require.Equal(t, codes.OK, created.code)
	id := created.customer.GetId()

	t.Run("PatchWithoutMaskChangesOnlyTheBodysFields", func(t *testing.T) {
		r := b.call(t, http.MethodPatch, "/v1/customers/"+id, tok, nil, `{"phone":"+4915123456789"}`)
		require.Equal(t, http.StatusOK, r.status, r.body)
		c := &customerv1.Customer{}
		require.NoError(t, protojson.Unmarshal([]byte(r.body), c))
		require.Equal(t, "+4915123456789", c.GetPhone())
		require.Equal(t, "ada@example.com", c.GetEmail())
	})

	t.Run("PatchOfAReadOnlyFieldIsRefused", func(t *testing.T) {
		r := b.call(t, http.MethodPatch, "/v1/customers/"+id, tok, nil, `{"version":"99"}`)
		require.Equal(t, http.StatusBadRequest, r.status, r.body)
		require.Contains(t, r.body, "update_mask")
	})

	t.Run("UnknownBodyFieldsAreRefused", func(t *testing.T) {
		r := b.call(t, http.MethodPost, "/v1/customers", tok, nil, `{"displayName":"Eve","tenantId":"`+tenantB+`"}`)
		require.Equal(t, http.StatusBadRequest, r.status, r.body)
		require.Equal(t, 0, countCustomers(t, b, tenantB))
	})

	t.Run("IdempotencyKeyAndBodyRequestIDMustAgree", func(t *testing.T) {
		// request_id is a request field, so REST clients reach it only
		// through the header; a malformed header is refused like the field.
		r := b.call(t, http.MethodPost, "/v1/customers", tok, map[string]string{"Idempotency-Key": "not-a-uuid"}, `{"displayName":"Eve"}`)
		require.Equal(t, http.StatusBadRequest, r.status, r.body)
		require.Contains(t, r.body, `"field":"request_id"`)
	})

	t.Run("OversizedBodiesGet413", func(t *testing.T) {
		big := `{"displayName":"` + strings.Repeat("a", 2<<20) + `"}`
		r := b.call(t, http.MethodPost, "/v1/customers", tok, nil, big)
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status)
	})

	t.Run("RequestIDIsEchoed", func(t *testing.T) {
		rid := uuid.NewString()
		r := b.call(t, http.MethodGet, "/v1/customers/"+id, tok, map[string]string{"X-Request-Id": rid}, "")
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, rid, r.header.Get("X-Request-Id"))
		r = b.call(t, http.MethodGet, "/v1/customers/"+id, tok, nil, "")
		require.NotEmpty(t, r.header.Get("X-Request-Id"), "a request id is made when none is sent")
		require.Empty(t, r.header.Get("Grpc-Metadata-Content-Type"), "gRPC transport headers stay inside")
	})

	t.Run("UnauthenticatedIs401WithJSON", func(t *testing.T) {
		r := b.call(t, http.MethodGet, "/v1/customers", "", nil, "")
		require.Equal(t, http.StatusUnauthorized, r.status)
		var e struct {
			Code int `json:"code"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.body), &e))
		require.Equal(t, int(codes.Unauthenticated), e.Code)
	})

	t.Run("ARoleWithoutTheMethodIs403", func(t *testing.T) {
		analyst := b.tokenAs(t, tenantA, "analyst", "analyst")
		r := b.call(t, http.MethodGet, "/v1/customers/"+id, analyst, nil, "")
		require.Equal(t, http.StatusForbidden, r.status, r.body)
		require.NotContains(t, r.body, "Ada", "a refusal carries no data")
	})

	t.Run("OpenAPIDocumentListsTheSlice", func(t *testing.T) {
		r := b.call(t, http.MethodGet, "/openapi.json", "", nil, "")
		require.Equal(t, http.StatusOK, r.status)
		var doc struct {
			Swagger string                    `json:"swagger"`
			Paths   map[string]map[string]any `json:"paths"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.body), &doc))
		require.Equal(t, "2.0", doc.Swagger)
		require.Contains(t, doc.Paths, "/v1/customers")
		require.Contains(t, doc.Paths["/v1/customers"], "post")
		require.Contains(t, doc.Paths, "/v1/customers/{id}")
		require.Contains(t, doc.Paths, "/v1/customers/{customer.id}")
	})

	t.Run("HealthEndpoints", func(t *testing.T) {
		require.Equal(t, http.StatusOK, b.call(t, http.MethodGet, "/healthz", "", nil, "").status)
		r := b.call(t, http.MethodGet, "/readyz", "", nil, "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		m := b.call(t, http.MethodGet, "/metrics", "", nil, "")
		require.Equal(t, http.StatusOK, m.status)
		require.Contains(t, m.body, "grpc_server_handled_total")
		require.Contains(t, m.body, "rapport_outbox_published_total")
	})
}

// TestRateLimitOverREST: a caller over its burst gets 429 with Retry-After
// and the RateLimit fields; another tenant is unaffected; a browser origin
// on the allow-list gets CORS headers that expose them.
func TestRateLimitOverREST(t *testing.T) {
	const origin = "https://app.example.com"
	b := setupWith(t, Options{}, func(c *Config) {
		c.RateLimit = RateLimitConfig{TenantRPS: 0.01, TenantBurst: 3, PrincipalRPS: 0.01, PrincipalBurst: 3, IdleTTL: time.Minute}
		c.CORSAllowedOrigins = []string{origin}
	})
	tok := b.token(t, tenantA, "busy")
	hdr := map[string]string{"Origin": origin}
	for i := range 3 {
		r := b.call(t, http.MethodGet, "/v1/customers", tok, hdr, "")
		require.Equal(t, http.StatusOK, r.status, "call %d: %s", i, r.body)
		require.Equal(t, fmt.Sprint(2-i), r.header.Get("RateLimit-Remaining"))
	}
	r := b.call(t, http.MethodGet, "/v1/customers", tok, hdr, "")
	require.Equal(t, http.StatusTooManyRequests, r.status, r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.Equal(t, "3", r.header.Get("RateLimit-Limit"))
	require.Equal(t, "0", r.header.Get("RateLimit-Remaining"))
	require.Equal(t, origin, r.header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, r.header.Get("Access-Control-Expose-Headers"), "Retry-After")

	other := b.call(t, http.MethodGet, "/v1/customers", b.token(t, tenantB, "calm"), nil, "")
	require.Equal(t, http.StatusOK, other.status, "another tenant has its own budget")

	stranger := b.call(t, http.MethodGet, "/v1/customers", b.token(t, tenantB, "calm2"),
		map[string]string{"Origin": "https://evil.example"}, "")
	require.Empty(t, stranger.header.Get("Access-Control-Allow-Origin"))
}

func TestDocsPageIsServed(t *testing.T) {
	b := setup(t)
	r := b.call(t, http.MethodGet, "/docs", "", nil, "")
	require.Equal(t, http.StatusOK, r.status)
	require.Contains(t, r.body, "Rapport API")
	require.NotEmpty(t, r.header.Get("Content-Security-Policy"))
}
