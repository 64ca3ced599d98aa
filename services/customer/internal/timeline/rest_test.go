package timeline_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

// TestREST drives the API through grpc-gateway's generated handler, dialing
// the gRPC server like the gateway does: paths, bodies, the kinds query
// parameter and status codes.
func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)
	conn := grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) { b.server.Register(r) })
	// The test principal travels as x-test-* headers, passed on as metadata.
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
		if k := strings.ToLower(key); strings.HasPrefix(k, "x-test-") {
			return k, true
		}
		return runtime.DefaultHeaderMatcher(key)
	}))
	require.NoError(t, customerv1.RegisterTimelineServiceHandler(context.Background(), mux, conn))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	do := func(t *testing.T, tenant uuid.UUID, method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(grpcxtest.MDTenant, tenant.String())
		req.Header.Set(grpcxtest.MDSubject, "agent-9")
		req.Header.Set(grpcxtest.MDRoles, "agent")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out := map[string]any{}
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
		return resp.StatusCode, out
	}
	base := "/v1/customers/" + c.String() + "/interactions"

	code, created := do(t, b.tenant, http.MethodPost, base, `{"kind":"INTERACTION_KIND_VISIT","summary":"Came by the shop"}`)
	require.Equal(t, http.StatusOK, code, "%v", created)
	require.Equal(t, "agent-9", created["agentId"])
	code, _ = do(t, b.tenant, http.MethodPost, base, `{"kind":"INTERACTION_KIND_CALL","direction":"INTERACTION_DIRECTION_OUTBOUND"}`)
	require.Equal(t, http.StatusOK, code)

	code, got := do(t, b.tenant, http.MethodGet, base+"/"+created["id"].(string), "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "Came by the shop", got["summary"])

	code, list := do(t, b.tenant, http.MethodGet, base+"?kinds=INTERACTION_KIND_VISIT&pageSize=10", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, list["interactions"], 1)

	code, bad := do(t, b.tenant, http.MethodPost, base, `{"kind":"INTERACTION_KIND_NOTE","direction":"INTERACTION_DIRECTION_INBOUND","summary":"x"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, bad["message"], "interaction.direction")

	code, _ = do(t, uuid.New(), http.MethodGet, base, "")
	require.Equal(t, http.StatusNotFound, code, "another tenant")
	code, _ = do(t, b.tenant, http.MethodGet, base+"/"+uuid.NewString(), "")
	require.Equal(t, http.StatusNotFound, code)
}
