package insight_test

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

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

// TestREST drives InsightService through grpc-gateway's generated handler,
// dialing the gRPC server as the gateway does: paths, query parameters
// (months, timestamps, enums), status codes and field names.
func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := newRetentionFixture(t, b)
	conn := grpcxtest.Serve(t, b.server.Register)
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
		if k := strings.ToLower(key); strings.HasPrefix(k, "x-test-") {
			return k, true
		}
		return runtime.DefaultHeaderMatcher(key)
	}))
	require.NoError(t, customerv1.RegisterInsightServiceHandler(context.Background(), mux, conn))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	do := func(t *testing.T, tenant uuid.UUID, role, method, path string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, nil)
		require.NoError(t, err)
		req.Header.Set(grpcxtest.MDTenant, tenant.String())
		req.Header.Set(grpcxtest.MDRoles, role)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out := map[string]any{}
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
		return resp.StatusCode, out
	}

	t.Run("RetentionReport", func(t *testing.T) {
		t.Parallel()
		code, got := do(t, f.tenant, "marketer", http.MethodGet,
			"/v1/insights/retention?startMonth=2026-01&endMonth=2026-02&monthsAfter=1&segment=SEGMENT_IMPORTANT")
		require.Equal(t, http.StatusOK, code, "%v", got)
		cohorts := got["cohorts"].([]any)
		require.Len(t, cohorts, 2)
		jan := cohorts[0].(map[string]any)
		require.Equal(t, "2026-01", jan["month"])
		require.Equal(t, "2", jan["size"], "int64 is a string in JSON: c1, c3")
		require.InDelta(t, 0.5, jan["periods"].([]any)[1].(map[string]any)["retentionRate"], 1e-9)
	})

	t.Run("CustomerMetrics", func(t *testing.T) {
		t.Parallel()
		code, got := do(t, f.tenant, "supervisor", http.MethodGet,
			"/v1/insights/customerMetrics?startTime=2026-03-01T00:00:00Z&endTime=2026-04-01T00:00:00Z")
		require.Equal(t, http.StatusOK, code, "%v", got)
		total := got["total"].(map[string]any)
		require.Equal(t, "4", total["activeCustomers"])
		require.InDelta(t, 1.25, total["purchaseFrequency"], 1e-9)
		require.InDelta(t, 0.8, total["churnRate"], 1e-9)
	})

	t.Run("BadInputIs400NamingTheField", func(t *testing.T) {
		t.Parallel()
		code, got := do(t, f.tenant, "admin", http.MethodGet, "/v1/insights/retention?startMonth=2026-03&endMonth=2026-02")
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, got["message"], "end_month")
		code, got = do(t, f.tenant, "admin", http.MethodGet,
			"/v1/insights/customerMetrics?startTime=2025-01-01T00:00:00Z&endTime=2026-03-01T00:00:00Z")
		require.Equal(t, http.StatusBadRequest, code)
		require.Contains(t, got["message"], "end_time")
	})

	t.Run("Recommendations", func(t *testing.T) {
		t.Parallel()
		path := "/v1/customers/" + f.c[1].String() + "/recommendations?pageSize=5"
		code, got := do(t, f.tenant, "agent", http.MethodGet, path)
		require.Equal(t, http.StatusOK, code, "%v", got)
		code, _ = do(t, f.other, "agent", http.MethodGet, path)
		require.Equal(t, http.StatusNotFound, code, "another tenant's customer")
		code, _ = do(t, f.tenant, "analyst", http.MethodGet, path)
		require.Equal(t, http.StatusForbidden, code)
	})
}
