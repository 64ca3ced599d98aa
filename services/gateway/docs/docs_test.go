package docs_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/openapi"
	"github.com/rapporthq/rapport/services/gateway/docs"
)

// newMux mounts the page as the gateway does: the document at /openapi.json,
// one docs handler at /docs and /docs/.
func newMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /openapi.json", openapi.Handler())
	h := docs.Handler()
	mux.Handle("/docs", h)
	mux.Handle("/docs/", h)
	return mux
}

// do serves one request through h and returns the response with its body read.
func do(t *testing.T, h http.Handler, method, target string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	resp := rec.Result()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// requireSecurityHeaders checks the headers every response carries.
func requireSecurityHeaders(t *testing.T, h http.Header) {
	t.Helper()
	require.Equal(t, "nosniff", h.Get("X-Content-Type-Options"))
	require.Equal(t, "no-referrer", h.Get("Referrer-Policy"))

	csp := h.Get("Content-Security-Policy")
	require.NotEmpty(t, csp)
	directives := map[string]string{}
	for d := range strings.SplitSeq(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	require.Equal(t, "'none'", directives["default-src"], "csp: %s", csp)
	require.Equal(t, "'self'", directives["script-src"], "csp: %s", csp)
	require.Equal(t, "'self'", directives["style-src"], "csp: %s", csp)
	require.Equal(t, "'self' data:", directives["img-src"], "csp: %s", csp)
	require.Equal(t, "'self'", directives["connect-src"], "csp: %s", csp)
	require.Equal(t, "'none'", directives["frame-ancestors"], "csp: %s", csp)
	require.NotContains(t, csp, "unsafe-", "csp: %s", csp)
	require.NotContains(t, csp, "*", "csp: %s", csp)
}

// assetRefs returns the /docs/assets/ URLs the page links (src= and href=).
var assetRef = regexp.MustCompile(`(?:src|href)="(/docs/assets/[^"]+)"`)

func assetRefs(t *testing.T, index []byte) []string {
	t.Helper()
	var refs []string
	for _, m := range assetRef.FindAllSubmatch(index, -1) {
		refs = append(refs, string(m[1]))
	}
	return refs
}

func index(t *testing.T) []byte {
	t.Helper()
	resp, body := do(t, newMux(), http.MethodGet, "/docs", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return body
}

func TestIndex(t *testing.T) {
	t.Parallel()
	mux := newMux()

	for _, tc := range []struct{ name, target string }{
		{"WithoutTrailingSlash", "/docs"},
		{"WithTrailingSlash", "/docs/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, body := do(t, mux, http.MethodGet, tc.target, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
			require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
			require.NotEmpty(t, resp.Header.Get("ETag"))
			requireSecurityHeaders(t, resp.Header)
			require.Contains(t, string(body), "<title>Rapport API</title>")
			require.Contains(t, string(body), `<div id="swagger-ui"></div>`)
		})
	}

	t.Run("ExplainsAuthorisationAndIdempotency", func(t *testing.T) {
		t.Parallel()
		page := string(index(t))
		for _, want := range []string{"Authorize", "Bearer &lt;token&gt;", "rapport token", "Idempotency-Key", "requestId"} {
			require.Contains(t, page, want)
		}
	})

	t.Run("NoInlineScriptOrStyle", func(t *testing.T) {
		t.Parallel()
		page := index(t)
		scripts := regexp.MustCompile(`(?is)<script\b([^>]*)>(.*?)</script>`).FindAllSubmatch(page, -1)
		require.Len(t, scripts, 2, "the bundle and init.js")
		for _, s := range scripts {
			require.Regexp(t, `\bsrc="/docs/assets/`, string(s[1]), "script without src: %s", s[0])
			require.Empty(t, strings.TrimSpace(string(s[2])), "inline script: %s", s[0])
		}
		require.NotRegexp(t, `(?i)<style\b`, string(page))
		require.NotRegexp(t, `(?i)\sstyle=`, string(page))
		require.NotRegexp(t, `(?i)\son[a-z]+=`, string(page), "inline event handler")
		require.NotRegexp(t, `(?i)javascript:`, string(page))
		require.NotRegexp(t, `(?i)(src|href)="(https?:)?//`, string(page), "nothing from another origin")
	})

	t.Run("InitialisesSwaggerUI", func(t *testing.T) {
		t.Parallel()
		resp, body := do(t, mux, http.MethodGet, "/docs/assets/init.js", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		js := string(body)
		require.Contains(t, js, `url: "/openapi.json"`)
		require.Contains(t, js, `dom_id: "#swagger-ui"`)
		require.Contains(t, js, "deepLinking: true")
		require.Contains(t, js, "persistAuthorization: false")
		require.Contains(t, js, "queryConfigEnabled: false")
	})

	t.Run("RevalidatesWithETag", func(t *testing.T) {
		t.Parallel()
		resp, _ := do(t, mux, http.MethodGet, "/docs", nil)
		etag := resp.Header.Get("ETag")
		resp, body := do(t, mux, http.MethodGet, "/docs", http.Header{"If-None-Match": {etag}})
		require.Equal(t, http.StatusNotModified, resp.StatusCode)
		require.Empty(t, body)
	})

	t.Run("HeadAllowed", func(t *testing.T) {
		t.Parallel()
		resp, body := do(t, mux, http.MethodHead, "/docs", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "text/html; charset=utf-8", resp.Header.Get("Content-Type"))
		require.Empty(t, body)
	})

	t.Run("OtherMethodsRefused", func(t *testing.T) {
		t.Parallel()
		for _, target := range []string{"/docs", "/docs/", "/docs/assets/init.js"} {
			resp, _ := do(t, mux, http.MethodPost, target, nil)
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode, target)
			require.Equal(t, "GET, HEAD", resp.Header.Get("Allow"), target)
		}
	})
}

// wantContentType is the Content-Type each asset extension must be served with.
var wantContentType = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".txt": "text/plain; charset=utf-8",
	"":     "text/plain; charset=utf-8",
}

func TestAssets(t *testing.T) {
	t.Parallel()
	mux := newMux()

	t.Run("EveryReferencedAssetServed", func(t *testing.T) {
		t.Parallel()
		refs := assetRefs(t, index(t))
		var names []string
		for _, ref := range refs {
			p, query, _ := strings.Cut(ref, "?")
			name := strings.TrimPrefix(p, docs.AssetsPath)
			names = append(names, name)
			require.Regexp(t, `^v=[0-9a-f]{16}$`, query, "%s: not versioned by content", ref)

			resp, body := do(t, mux, http.MethodGet, ref, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, ref)
			want, ok := wantContentType[path.Ext(name)]
			require.True(t, ok, "%s: unexpected extension", ref)
			require.Equal(t, want, resp.Header.Get("Content-Type"), ref)
			require.Equal(t, "public, max-age=31536000, immutable", resp.Header.Get("Cache-Control"), ref)
			requireSecurityHeaders(t, resp.Header)

			disk, err := os.ReadFile("assets/" + name)
			require.NoError(t, err)
			require.True(t, bytes.Equal(disk, body), "%s: served bytes differ from assets/%s", ref, name)
		}
		require.ElementsMatch(t, []string{"swagger-ui.css", "docs.css", "swagger-ui-bundle.js", "init.js"}, names)
	})

	t.Run("UnversionedURLRevalidates", func(t *testing.T) {
		t.Parallel()
		for _, target := range []string{"/docs/assets/init.js", "/docs/assets/init.js?v=0000000000000000"} {
			resp, _ := do(t, mux, http.MethodGet, target, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, target)
			require.Equal(t, "no-cache", resp.Header.Get("Cache-Control"), target)
		}
	})

	t.Run("UnknownAssetNotFound", func(t *testing.T) {
		t.Parallel()
		h := docs.Handler() // unmounted: paths reach it uncleaned
		for _, target := range []string{
			"/docs/assets/missing.js",
			"/docs/assets/",
			"/docs/assets",
			"/docs/assets/swagger-ui.js", // in the package, not vendored
			"/docs/assets/../docs.go",
			"/docs/assets/assets/init.js",
			"/docs/index.html",
			"/docs/openapi.json",
			"/docsx",
		} {
			resp, _ := do(t, h, http.MethodGet, target, nil)
			require.Equal(t, http.StatusNotFound, resp.StatusCode, target)
			require.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), target)
		}
	})

	t.Run("ByteIdenticalToVendoredFiles", func(t *testing.T) {
		t.Parallel()
		entries, err := os.ReadDir("assets")
		require.NoError(t, err)
		require.NotEmpty(t, entries)
		for _, e := range entries {
			disk, err := os.ReadFile("assets/" + e.Name())
			require.NoError(t, err)
			resp, body := do(t, mux, http.MethodGet, docs.AssetsPath+e.Name(), nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, e.Name())
			require.True(t, bytes.Equal(disk, body), "assets/%s: served bytes differ from the file", e.Name())
		}
	})
}

// manifest is assets/VERSION: what tools/docs-assets/vendor.sh vendored.
type manifest struct {
	fields map[string]string
	files  map[string]string // name -> hex sha256
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	f, err := os.Open("assets/VERSION")
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	m := manifest{fields: map[string]string{}, files: map[string]string{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		require.True(t, ok, "VERSION: bad line %q", line)
		if key == "file" {
			name, sum, ok := strings.Cut(value, " sha256=")
			require.True(t, ok, "VERSION: bad file line %q", line)
			m.files[name] = sum
			continue
		}
		m.fields[key] = value
	}
	require.NoError(t, sc.Err())
	return m
}

func TestVendored(t *testing.T) {
	t.Parallel()

	t.Run("ManifestPinsExactVersion", func(t *testing.T) {
		t.Parallel()
		m := readManifest(t)
		require.Equal(t, "swagger-ui-dist", m.fields["package"])
		require.Regexp(t, `^5\.[0-9]+\.[0-9]+$`, m.fields["version"])
		require.Equal(t, "Apache-2.0", m.fields["license"])
		integrity, ok := strings.CutPrefix(m.fields["integrity"], "sha512-")
		require.True(t, ok, "integrity %q is not sha512", m.fields["integrity"])
		sum, err := base64.StdEncoding.DecodeString(integrity)
		require.NoError(t, err)
		require.Len(t, sum, 64)
	})

	t.Run("FilesMatchManifest", func(t *testing.T) {
		t.Parallel()
		m := readManifest(t)
		require.Equal(t, []string{"LICENSE", "NOTICE", "swagger-ui-bundle.js", "swagger-ui-bundle.js.LICENSE.txt", "swagger-ui.css"},
			slices.Sorted(maps.Keys(m.files)))
		for name, want := range m.files {
			disk, err := os.ReadFile("assets/" + name)
			require.NoError(t, err)
			got := sha256.Sum256(disk)
			require.Equal(t, want, hex.EncodeToString(got[:]), "assets/%s was edited after vendoring; run make docs-assets", name)
		}
	})
}
