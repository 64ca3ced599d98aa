package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/services/gateway"
)

const (
	allowedOrigin = "https://app.example.com"
	otherOrigin   = "https://evil.example.net"
)

type corsBundle struct {
	handler http.Handler
	// reached counts requests that got past CORS to the wrapped handler.
	reached int
}

func setupCORS(t testing.TB, origins ...string) *corsBundle {
	t.Helper()
	b := &corsBundle{}
	b.handler = gateway.CORS(origins, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		b.reached++
		w.Header().Set("X-Request-Id", "req-1")
		w.WriteHeader(http.StatusOK)
	}))
	return b
}

func (b *corsBundle) serve(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	b.handler.ServeHTTP(rec, req)
	return rec.Result()
}

// preflight is what a browser sends before a cross-origin PATCH with a
// bearer token and an idempotency key (header names lower-case and sorted,
// as the Fetch standard has them).
func preflight(t testing.TB, origin string) *http.Request {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodOptions, "/v1/customers/c1", nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", http.MethodPatch)
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type,idempotency-key,traceparent")
	return req
}

func get(t testing.TB, origin string) *http.Request {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/customers/c1", nil)
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	return req
}

// corsHeaders are the response's Access-Control-* headers.
func corsHeaders(resp *http.Response) http.Header {
	out := http.Header{}
	for k, v := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = v
		}
	}
	return out
}

func TestCORS(t *testing.T) {
	t.Parallel()

	t.Run("PreflightFromAnAllowedOriginIsAnswered", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin, "http://localhost:5173")
		resp := b.serve(t, preflight(t, allowedOrigin))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Equal(t, http.Header{
			"Access-Control-Allow-Origin":  {allowedOrigin},
			"Access-Control-Allow-Methods": {http.MethodPatch},
			"Access-Control-Allow-Headers": {"authorization,content-type,idempotency-key,traceparent"},
			"Access-Control-Max-Age":       {"600"},
		}, corsHeaders(resp), "and never Allow-Credentials")
		require.Contains(t, strings.Join(resp.Header.Values("Vary"), ","), "Origin")
		require.Zero(t, b.reached, "a preflight never reaches the API")
	})

	t.Run("OriginsCompareCaseInsensitively", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, "HTTPS://App.Example.COM")
		resp := b.serve(t, preflight(t, allowedOrigin))
		require.Equal(t, allowedOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
	})

	t.Run("PreflightFromAnotherOriginIsNotAllowed", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin)
		for _, origin := range []string{otherOrigin, "https://app.example.com.evil.net", "http://app.example.com", "null"} {
			resp := b.serve(t, preflight(t, origin))
			require.Empty(t, corsHeaders(resp), origin)
		}
		require.Zero(t, b.reached)
	})

	t.Run("PreflightForAnUnlistedMethodOrHeaderIsNotAllowed", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin)
		req := preflight(t, allowedOrigin)
		req.Header.Set("Access-Control-Request-Method", "TRACE")
		require.Empty(t, corsHeaders(b.serve(t, req)))
		req = preflight(t, allowedOrigin)
		req.Header.Set("Access-Control-Request-Headers", "authorization,x-internal-debug")
		require.Empty(t, corsHeaders(b.serve(t, req)))
	})

	t.Run("GetFromAnAllowedOriginMayReadTheExposedHeaders", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin)
		resp := b.serve(t, get(t, allowedOrigin))
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, 1, b.reached)
		require.Equal(t, allowedOrigin, resp.Header.Get("Access-Control-Allow-Origin"))
		require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
		var exposed []string
		for _, h := range strings.Split(resp.Header.Get("Access-Control-Expose-Headers"), ",") {
			exposed = append(exposed, http.CanonicalHeaderKey(strings.TrimSpace(h)))
		}
		require.ElementsMatch(t, []string{
			"X-Request-Id", "Retry-After", "Ratelimit-Limit", "Ratelimit-Remaining", "Ratelimit-Reset",
		}, exposed)
		require.Contains(t, strings.Join(resp.Header.Values("Vary"), ","), "Origin")
	})

	t.Run("GetFromAnotherOriginGetsNoCORSHeaders", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin)
		resp := b.serve(t, get(t, otherOrigin))
		// The request is served (CORS is the browser's to enforce), but the
		// browser will not let the page read the answer.
		require.Equal(t, 1, b.reached)
		require.Empty(t, corsHeaders(resp))
	})

	t.Run("SameOriginRequestsAreUntouched", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, allowedOrigin)
		resp := b.serve(t, get(t, ""))
		require.Equal(t, 1, b.reached)
		require.Empty(t, corsHeaders(resp))
	})

	t.Run("EmptyListAllowsNoCrossOriginCalls", func(t *testing.T) {
		t.Parallel()
		for _, origins := range [][]string{nil, {}, {" ", ""}} {
			b := setupCORS(t, origins...)
			require.Empty(t, corsHeaders(b.serve(t, preflight(t, allowedOrigin))))
			require.Empty(t, corsHeaders(b.serve(t, get(t, allowedOrigin))))
			resp := b.serve(t, get(t, allowedOrigin))
			require.Empty(t, resp.Header.Values("Vary"), "no CORS handling at all")
			require.Equal(t, 3, b.reached, "even the preflight goes to the API, which refuses it")
		}
	})

	t.Run("StarAloneAllowsAnyOriginWithoutCredentials", func(t *testing.T) {
		t.Parallel()
		b := setupCORS(t, "*")
		resp := b.serve(t, preflight(t, otherOrigin))
		require.Equal(t, http.StatusNoContent, resp.StatusCode)
		require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
		require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
		resp = b.serve(t, get(t, otherOrigin))
		require.Equal(t, "*", resp.Header.Get("Access-Control-Allow-Origin"))
		require.Empty(t, resp.Header.Get("Access-Control-Allow-Credentials"))
	})

	t.Run("BadListFailsClosed", func(t *testing.T) {
		t.Parallel()
		for _, origins := range [][]string{
			{"*", allowedOrigin},
			{allowedOrigin, "https://*.example.com"},
		} {
			b := setupCORS(t, origins...)
			require.Empty(t, corsHeaders(b.serve(t, preflight(t, allowedOrigin))), "%q", origins)
			require.Empty(t, corsHeaders(b.serve(t, get(t, otherOrigin))), "%q", origins)
		}
	})
}

func TestCheckCORSOrigins(t *testing.T) {
	t.Parallel()
	for _, ok := range [][]string{
		nil,
		{"*"},
		{allowedOrigin},
		{allowedOrigin, "http://localhost:5173", "https://[::1]:8443"},
		{" " + allowedOrigin + " ", ""},
	} {
		require.NoError(t, gateway.CheckCORSOrigins(ok), "%q", ok)
	}
	for _, tc := range []struct {
		origins []string
		names   string
	}{
		{[]string{"*", allowedOrigin}, `"*" must be the only entry`},
		{[]string{allowedOrigin + "/"}, allowedOrigin + "/"},
		{[]string{allowedOrigin + "/app"}, "/app"},
		{[]string{"app.example.com"}, "app.example.com"},
		{[]string{"https://*.example.com"}, "wildcards"},
		{[]string{"null"}, "null"},
		{[]string{"ftp://files.example.com"}, "ftp://"},
		{[]string{"https://user@app.example.com"}, "user@"},
		{[]string{"https://app.example.com?x=1"}, "?x=1"},
		{[]string{"https://"}, "no host"},
	} {
		err := gateway.CheckCORSOrigins(tc.origins)
		require.Error(t, err, "%q", tc.origins)
		require.Contains(t, err.Error(), tc.names)
	}
}
