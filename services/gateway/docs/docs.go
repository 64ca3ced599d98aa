// Package docs serves Rapport's browsable API reference for frontend teams:
// a small page of ours at /docs that runs Swagger UI over the gateway's
// /openapi.json.
//
// Swagger UI is the swagger-ui-dist package, vendored byte for byte into
// assets/ by `make docs-assets` (tools/docs-assets/vendor.sh), which pins the
// version and the tarball's sha512 integrity in assets/VERSION. Everything is
// embedded in the binary: the page loads nothing from another origin, and its
// Content-Security-Policy forbids it to.
//
// Mount one Handler at both /docs and /docs/ (it answers every path under
// /docs/ itself, 404 for unknown ones):
//
//	h := docs.Handler()
//	mux.Handle("/docs", h)
//	mux.Handle("/docs/", h)
package docs

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

const (
	// Path is where the page is served; Path+"/" serves it too.
	Path = "/docs"
	// AssetsPath prefixes the page's scripts and stylesheets.
	AssetsPath = Path + "/assets/"
	// SpecPath is the OpenAPI document the page shows (assets/init.js); the
	// gateway serves it.
	SpecPath = "/openapi.json"
)

// ContentSecurityPolicy is sent with every response. Scripts, styles, images
// and fetches come from this origin only: no inline script (Swagger UI starts
// from assets/init.js) and no inline style ('unsafe-inline' is not needed:
// Swagger UI sets styles through the DOM, which CSP allows, and the browser
// test fails on any CSP violation). data: images are Swagger UI's stylesheet
// icons (and the page's empty favicon).
const ContentSecurityPolicy = "default-src 'none'; " +
	"script-src 'self'; " +
	"style-src 'self'; " +
	"img-src 'self' data:; " +
	"connect-src 'self'; " +
	"base-uri 'none'; " +
	"form-action 'self'; " +
	"frame-ancestors 'none'"

// Cache-Control values. Asset URLs in the page carry their content's hash
// (?v=…), so a new release gets new URLs and the old ones can be cached for
// good; a URL without the current hash is revalidated instead.
const (
	cacheImmutable  = "public, max-age=31536000, immutable"
	cacheRevalidate = "no-cache"
)

// contentTypes maps the embedded assets' extensions to their types; loading
// fails on any other extension, so nothing is served with a guessed type.
var contentTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".txt": "text/plain; charset=utf-8",
	"":     "text/plain; charset=utf-8", // LICENSE, NOTICE, VERSION
}

//go:embed assets
var assetFS embed.FS

//go:embed index.html
var indexHTML string

// file is one response body, loaded once.
type file struct {
	body        []byte
	contentType string
	hash        string // hex sha256 prefix: the ?v= of its URL and its ETag
}

func newFile(body []byte, contentType string) *file {
	sum := sha256.Sum256(body)
	return &file{body: body, contentType: contentType, hash: hex.EncodeToString(sum[:8])}
}

func (f *file) etag() string { return `"` + f.hash + `"` }

// site is the page and its assets, built once from the embedded files.
type site struct {
	index  *file
	assets map[string]*file // by name in assets/
}

var theSite = mustLoad()

func mustLoad() *site {
	s, err := load()
	if err != nil {
		panic("docs: " + err.Error())
	}
	return s
}

func load() (*site, error) {
	s := &site{assets: make(map[string]*file)}
	entries, err := fs.ReadDir(assetFS, "assets")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			return nil, fmt.Errorf("assets/%s: not a regular file", e.Name())
		}
		ct, ok := contentTypes[path.Ext(e.Name())]
		if !ok {
			return nil, fmt.Errorf("assets/%s: no content type for %q", e.Name(), path.Ext(e.Name()))
		}
		body, err := assetFS.ReadFile("assets/" + e.Name())
		if err != nil {
			return nil, err
		}
		s.assets[e.Name()] = newFile(body, ct)
	}

	tmpl, err := template.New("index.html").Parse(indexHTML)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, indexData{s}); err != nil {
		return nil, err
	}
	s.index = newFile(buf.Bytes(), "text/html; charset=utf-8")
	return s, nil
}

// indexData is what index.html sees.
type indexData struct{ s *site }

// Asset returns the URL of an embedded asset, versioned by its content; an
// unknown name fails the template, so the page never links a missing file.
func (d indexData) Asset(name string) (string, error) {
	f, ok := d.s.assets[name]
	if !ok {
		return "", fmt.Errorf("index.html links assets/%s, which is not embedded", name)
	}
	return AssetsPath + name + "?v=" + f.hash, nil
}

// Handler serves the page at /docs and /docs/, and its assets under
// /docs/assets/; every other path is 404. Only GET and HEAD are allowed.
func Handler() http.Handler { return theSite }

func (s *site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")

	var (
		f     *file
		cache string
	)
	switch p := r.URL.Path; {
	case p == Path || p == Path+"/":
		f, cache = s.index, cacheRevalidate
	case strings.HasPrefix(p, AssetsPath):
		f = s.assets[strings.TrimPrefix(p, AssetsPath)]
		cache = cacheRevalidate
		if f != nil && r.URL.Query().Get("v") == f.hash {
			cache = cacheImmutable
		}
	}
	if f == nil {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h.Set("Content-Type", f.contentType)
	h.Set("Cache-Control", cache)
	h.Set("ETag", f.etag())
	// ServeContent answers HEAD, If-None-Match (304) and ranges.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
