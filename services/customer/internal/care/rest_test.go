package care_test

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
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

// TestREST drives CareService through grpc-gateway's generated handler,
// dialing the gRPC server as the gateway does: paths, bodies, query
// parameters, the Idempotency-Key header and status codes.
func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	c := b.newCustomer(t, customerOpts{})
	conn := grpcxtest.Serve(t, b.server.Register)
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(func(key string) (string, bool) {
		if k := strings.ToLower(key); strings.HasPrefix(k, "x-test-") || k == grpcx.IdempotencyKeyMetadata {
			return k, true
		}
		return runtime.DefaultHeaderMatcher(key)
	}))
	require.NoError(t, customerv1.RegisterCareServiceHandler(context.Background(), mux, conn))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	do := func(t *testing.T, tenant uuid.UUID, roles, method, path, body string, header ...string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(grpcxtest.MDTenant, tenant.String())
		req.Header.Set(grpcxtest.MDSubject, "agent-7")
		req.Header.Set(grpcxtest.MDRoles, roles)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		out := map[string]any{}
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
		return resp.StatusCode, out
	}

	code, st := do(t, b.tenant, "admin", http.MethodPatch, "/v1/care/settings?updateMask=birthday_enabled,due_hour",
		`{"birthdayEnabled":true,"dueHour":8}`)
	require.Equal(t, http.StatusOK, code, "%v", st)
	require.Equal(t, true, st["birthdayEnabled"])
	// Without a mask the gateway derives one from the body: only due_hour.
	code, st = do(t, b.tenant, "admin", http.MethodPatch, "/v1/care/settings", `{"dueHour":7}`)
	require.Equal(t, http.StatusOK, code, "%v", st)
	require.Equal(t, float64(7), st["dueHour"])
	require.Equal(t, true, st["birthdayEnabled"], "fields outside the body keep their values")
	code, _ = do(t, b.tenant, "agent", http.MethodPatch, "/v1/care/settings", `{"dueHour":8}`)
	require.Equal(t, http.StatusForbidden, code)
	code, bad := do(t, b.tenant, "admin", http.MethodPatch, "/v1/care/settings?updateMask=default_time_zone", `{"defaultTimeZone":"Nowhere/Land"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, bad["message"], "settings.default_time_zone")

	code, h := do(t, b.tenant, "marketer", http.MethodPost, "/v1/care/holidays", `{"name":"Spring Festival","date":"2027-02-06"}`)
	require.Equal(t, http.StatusOK, code, "%v", h)
	code, hs := do(t, b.tenant, "agent", http.MethodGet, "/v1/care/holidays?year=2027", "")
	require.Equal(t, http.StatusOK, code)
	require.Len(t, hs["holidays"], 1)
	code, _ = do(t, b.tenant, "admin", http.MethodDelete, "/v1/care/holidays/"+h["id"].(string), "")
	require.Equal(t, http.StatusOK, code)
	code, _ = do(t, b.tenant, "admin", http.MethodDelete, "/v1/care/holidays/"+h["id"].(string), "")
	require.Equal(t, http.StatusNotFound, code)

	plan := `{"title":"Check in","tasks":[{"title":"Call","assignee":"agent-7","dueTime":"2026-06-03T09:00:00Z"}]}`
	key := uuid.NewString()
	code, p := do(t, b.tenant, "agent", http.MethodPost, "/v1/customers/"+c.String()+"/carePlans", plan, "Idempotency-Key", key)
	require.Equal(t, http.StatusOK, code, "%v", p)
	code, again := do(t, b.tenant, "agent", http.MethodPost, "/v1/customers/"+c.String()+"/carePlans", plan, "Idempotency-Key", key)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, p["id"], again["id"], "the retry returns the first plan")
	code, _ = do(t, b.tenant, "agent", http.MethodGet, "/v1/customers/"+c.String()+"/carePlans/"+p["id"].(string), "")
	require.Equal(t, http.StatusOK, code)
	code, _ = do(t, uuid.New(), "agent", http.MethodGet, "/v1/customers/"+c.String()+"/carePlans/"+p["id"].(string), "")
	require.Equal(t, http.StatusNotFound, code, "another tenant")

	taskID := p["tasks"].([]any)[0].(map[string]any)["id"].(string)
	code, done := do(t, b.tenant, "agent", http.MethodPost, "/v1/care/tasks/"+taskID+":complete", `{"outcomeNote":"All good"}`)
	require.Equal(t, http.StatusOK, code, "%v", done)
	require.Equal(t, "CARE_TASK_STATUS_DONE", done["status"])
	code, _ = do(t, b.tenant, "agent", http.MethodPost, "/v1/care/tasks/"+taskID+":complete", `{}`)
	require.Equal(t, http.StatusBadRequest, code, "FAILED_PRECONDITION is 400 at the edge")

	code, list := do(t, b.tenant, "agent", http.MethodGet, "/v1/care/tasks?assignee=agent-7&status=CARE_TASK_STATUS_DONE&dueBefore=2026-07-01T00:00:00Z", "")
	require.Equal(t, http.StatusOK, code, "%v", list)
	require.Len(t, list["careTasks"], 1)
	code, occ := do(t, b.tenant, "agent", http.MethodGet, "/v1/care/occasions?startDate=2026-06-01&endDate=2026-06-30&kind=CARE_OCCASION_KIND_BIRTHDAY", "")
	require.Equal(t, http.StatusOK, code, "%v", occ)
	code, _ = do(t, b.tenant, "agent", http.MethodGet, "/v1/care/occasions?startDate=2026-06-01", "")
	require.Equal(t, http.StatusBadRequest, code)
}
