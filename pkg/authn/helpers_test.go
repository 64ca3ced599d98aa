package authn

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

const (
	testIssuer   = "https://id.rapport.test/"
	testAudience = "rapport-api"
	testTenantID = "0190f3a4-7b5c-7d2e-9f10-1234567890ab"
	testSubject  = "user-7"
)

// testKey is a signing key and the kid its JWK carries.
type testKey struct {
	kid    string
	method jwt.SigningMethod
	signer crypto.Signer
	// omitAlg leaves alg out of the key's JWK, as some issuers do, so that
	// only the key's type ties it to an algorithm.
	omitAlg bool
}

func newECKey(tb testing.TB) testKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(tb, err)
	return testKey{kid: "ec-" + rand.Text()[:8], method: jwt.SigningMethodES256, signer: k}
}

func newRSAKey(tb testing.TB) testKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(tb, err)
	return testKey{kid: "rsa-" + rand.Text()[:8], method: jwt.SigningMethodRS256, signer: k}
}

// jwksDoc is the public JWK Set for keys, each with its kid and alg.
func jwksDoc(tb testing.TB, keys ...testKey) []byte {
	tb.Helper()
	set := jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{}}
	for _, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.signer.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.ALG(k.method.Alg()), USE: jwkset.UseSig},
		})
		if k.omitAlg {
			jwk, err = jwkset.NewJWKFromKey(k.signer.Public(), jwkset.JWKOptions{
				Metadata: jwkset.JWKMetadataOptions{KID: k.kid, USE: jwkset.UseSig},
			})
		}
		require.NoError(tb, err)
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	doc, err := json.Marshal(set)
	require.NoError(tb, err)
	return doc
}

// writeJWKS writes the key set and moves the file's modification time one
// second past its previous one: real rotations are seconds apart, while two
// writes in one test can share a timestamp tick.
func writeJWKS(tb testing.TB, path string, keys ...testKey) {
	tb.Helper()
	writeJWKSDoc(tb, path, jwksDoc(tb, keys...))
}

func writeJWKSDoc(tb testing.TB, path string, doc []byte) {
	tb.Helper()
	var prev time.Time
	if fi, err := os.Stat(path); err == nil {
		prev = fi.ModTime()
	}
	require.NoError(tb, os.WriteFile(path, doc, 0o600))
	if !prev.IsZero() {
		require.NoError(tb, os.Chtimes(path, prev.Add(time.Second), prev.Add(time.Second)))
	}
}

// validClaims is a token body the test verifiers accept; cases change or
// delete one claim at a time.
func validClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":       testIssuer,
		"aud":       testAudience,
		"sub":       testSubject,
		"tenant_id": testTenantID,
		"roles":     []string{"agent", "supervisor"},
		"iat":       now.Unix(),
		"nbf":       now.Unix(),
		"exp":       now.Add(10 * time.Minute).Unix(),
	}
}

// signOpts changes a token's header: a nil value deletes the parameter.
type signOpts struct {
	header map[string]any
}

func sign(tb testing.TB, k testKey, c jwt.MapClaims, opts *signOpts) string {
	tb.Helper()
	t := jwt.NewWithClaims(k.method, c)
	t.Header["kid"] = k.kid
	if opts != nil {
		for name, v := range opts.header {
			if v == nil {
				delete(t.Header, name)
				continue
			}
			t.Header[name] = v
		}
	}
	raw, err := t.SignedString(k.signer)
	require.NoError(tb, err)
	return raw
}

// jwksServer serves a JWK Set over TLS and counts fetches.
type jwksServer struct {
	srv   *httptest.Server
	hits  atomic.Int64
	mu    sync.Mutex
	doc   []byte
	code  int
	block chan struct{} // when set, fetches wait for it to close
}

func newJWKSServer(tb testing.TB, keys ...testKey) *jwksServer {
	tb.Helper()
	s := &jwksServer{doc: jwksDoc(tb, keys...), code: http.StatusOK}
	s.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		doc, code, block := s.doc, s.code, s.block
		s.mu.Unlock()
		if block != nil {
			<-block
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(code)
		_, _ = w.Write(doc)
	}))
	tb.Cleanup(s.srv.Close)
	return s
}

func (s *jwksServer) serve(tb testing.TB, keys ...testKey) {
	tb.Helper()
	doc := jwksDoc(tb, keys...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.doc, s.code = doc, http.StatusOK
}

func (s *jwksServer) fail(code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.code = code
}

// holdFetches makes later fetches wait until the returned func is called.
func (s *jwksServer) holdFetches() (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.block = ch
	s.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

func (s *jwksServer) config() Config {
	return Config{
		Issuer:          testIssuer,
		Audience:        testAudience,
		JWKSURL:         s.srv.URL + "/.well-known/jwks.json",
		HTTPClient:      s.srv.Client(),
		RefreshInterval: time.Hour,
	}
}

// testClock is a settable clock, so tests step past RefreshInterval instead
// of sleeping through it.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.Now()} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// fileConfig writes keys to a JWKS file in a fresh directory.
func fileConfig(tb testing.TB, keys ...testKey) Config {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "jwks.json")
	writeJWKS(tb, path, keys...)
	return Config{
		Issuer:          testIssuer,
		Audience:        testAudience,
		JWKSFile:        path,
		RefreshInterval: time.Hour,
	}
}

func mustVerifier(tb testing.TB, cfg Config, clock *testClock) *Verifier {
	tb.Helper()
	now := time.Now
	if clock != nil {
		now = clock.Now
	}
	v, err := newVerifier(context.Background(), cfg, now)
	require.NoError(tb, err)
	return v
}

// writeFile writes content to a fresh file and returns its path.
func writeFile(tb testing.TB, content string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "jwks.json")
	require.NoError(tb, os.WriteFile(path, []byte(content), 0o600))
	return path
}
