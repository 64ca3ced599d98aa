package outreach_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

// rest serves the OutreachService's REST mapping the way the gateway does
// (a grpc-gateway client of the gRPC server, unknown JSON fields refused).
func (b *testBundle) rest(t testing.TB) func(method, path, body string) (int, map[string]any) {
	t.Helper()
	// The test principal rides in headers the test's mux maps to the
	// metadata grpcxtest trusts (the gateway maps real credentials).
	principal := func(key string) (string, bool) {
		switch strings.ToLower(key) {
		case grpcxtest.MDTenant, grpcxtest.MDRoles:
			return strings.ToLower(key), true
		}
		return runtime.DefaultHeaderMatcher(key)
	}
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(principal), runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{EmitUnpopulated: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}))
	require.NoError(t, customerv1.RegisterOutreachServiceHandler(context.Background(), mux, b.conn))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return func(method, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(grpcxtest.MDTenant, b.tenant.String())
		req.Header.Set(grpcxtest.MDRoles, "admin")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer func() { _ = resp.Body.Close() }()
		raw, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		var out map[string]any
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
		return resp.StatusCode, out
	}
}

// TestREST: the REST paths work end to end, a PATCH body derives the mask
// (and a field outside the allowed paths is a 400), and bad input is a 400
// naming the field.
func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t)
	call := b.rest(t)
	code, tpl := call("POST", "/v1/outreachTemplates", `{"key":"welcome","channel":"CONTACT_CHANNEL_EMAIL","defaultLocale":"en",
		"variants":[{"locale":"en","subject":"Welcome {{.name}}","textBody":"Hi {{.name}}"},{"locale":"de","subject":"Willkommen","textBody":"Hallo"}]}`)
	require.Equal(t, http.StatusOK, code, "%v", tpl)
	id := tpl["id"].(string)

	code, upd := call("PATCH", "/v1/outreachTemplates/"+id, `{"defaultLocale":"de"}`)
	require.Equal(t, http.StatusOK, code, "%v", upd)
	require.Equal(t, "de", upd["defaultLocale"])
	require.Len(t, upd["variants"], 2, "variants not in the derived mask: kept")
	require.Equal(t, "welcome", upd["key"])

	code, bad := call("PATCH", "/v1/outreachTemplates/"+id, `{"channel":"CONTACT_CHANNEL_SMS"}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, bad["message"], "update_mask")

	code, bad = call("POST", "/v1/outreachTemplates", `{"key":"x","channel":"CONTACT_CHANNEL_EMAIL","defaultLocale":"en",
		"variants":[{"locale":"en","subject":"s","textBody":"{{.oops"}]}`)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, bad["message"], "outreach_template.variants[0].text_body")

	cust := b.newCustomer(t, b.tenant, person{email: "rest@example.org"})
	code, d := call("POST", "/v1/customers/"+cust.String()+":sendOutreach",
		`{"templateKey":"welcome","purpose":"CONTACT_PURPOSE_SERVICE","variables":{"name":"Ann"}}`)
	require.Equal(t, http.StatusOK, code, "%v", d)
	require.Equal(t, "OUTREACH_STATUS_QUEUED", d["status"])
	require.Equal(t, "de", d["locale"], "the customer has no locale: the template's default, now de")

	code, got := call("GET", "/v1/customers/"+cust.String()+"/outreachDeliveries/"+d["id"].(string), "")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, d["id"], got["id"])
	code, list := call("GET", "/v1/customers/"+cust.String()+"/outreachDeliveries?statuses=OUTREACH_STATUS_SENT", "")
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, list["outreachDeliveries"])

	code, _ = call("DELETE", "/v1/outreachTemplates/"+id, "")
	require.Equal(t, http.StatusOK, code)
	code, _ = call("GET", "/v1/outreachTemplates/"+id, "")
	require.Equal(t, http.StatusNotFound, code)
}
