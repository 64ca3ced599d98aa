package authn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/jwkset"
	"golang.org/x/sync/singleflight"
)

const (
	// maxJWKSBytes bounds what a JWKS file or endpoint can make us read;
	// real key sets are a few KiB.
	maxJWKSBytes = 1 << 20
	// minRSABits refuses keys too short to trust (RFC 7518 §3.3).
	minRSABits = 2048
)

// Reasons to reload the key set. Each is its own single-flight key, so a
// caller only ever joins a fetch made for the reason it has.
const (
	reloadChanged = "changed" // the file's stamp moved
	reloadStale   = "stale"   // RefreshInterval passed since the last fetch
	reloadUnknown = "unknown" // a token named a kid we do not hold
)

// jwksSource yields a JWK Set document.
type jwksSource interface {
	// read returns the document and a comparable stamp of its version.
	read(ctx context.Context) (doc []byte, stamp any, err error)
	// changed reports, without reading the document, whether its version
	// differs from stamp. It is called on every verification, so it must be cheap.
	changed(stamp any) bool
	// String names the source in errors and logs.
	String() string
}

// fileSource reads a JWKS file. Its stamp is the modification time and size,
// which every rewrite (in place, by rename, or by a Kubernetes volume's
// symlink swap, as os.Stat follows links) changes.
type fileSource struct{ path string }

type fileStamp struct {
	modTime int64
	size    int64
}

func stampOf(fi os.FileInfo) fileStamp {
	return fileStamp{modTime: fi.ModTime().UnixNano(), size: fi.Size()}
}

func (s fileSource) read(context.Context) ([]byte, any, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	// Stat the open file before reading it: if the file is replaced while
	// we read, the stamp is stale and the next changed() reloads it again.
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	doc, err := readLimited(f)
	return doc, stampOf(fi), err // the stamp even on error: see keyCache.load
}

func (s fileSource) changed(stamp any) bool {
	fi, err := os.Stat(s.path)
	if err != nil {
		// Missing for a moment mid-rotation, or gone: keep the keys we
		// have rather than refuse every call or retry on each one.
		return false
	}
	return stampOf(fi) != stamp
}

func (s fileSource) String() string { return "JWKS file " + s.path }

// urlSource fetches a JWKS over HTTP. It has no cheap change signal, so the
// cache refetches it by age and on unknown kids instead.
type urlSource struct {
	url    string
	client *http.Client
}

func (s urlSource) read(ctx context.Context) ([]byte, any, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("unexpected status %s", resp.Status)
	}
	doc, err := readLimited(resp.Body)
	return doc, nil, err
}

func (urlSource) changed(any) bool { return false }

func (s urlSource) String() string { return "JWKS URL " + s.url }

func readLimited(r io.Reader) ([]byte, error) {
	doc, err := io.ReadAll(io.LimitReader(r, maxJWKSBytes+1))
	if err != nil {
		return nil, err
	}
	if len(doc) > maxJWKSBytes {
		return nil, fmt.Errorf("JWKS larger than %d bytes", maxJWKSBytes)
	}
	return doc, nil
}

// verificationKey is one usable public key from the set.
type verificationKey struct {
	key any    // *ecdsa.PublicKey or *rsa.PublicKey
	alg string // the JWK's alg, empty if it named none
}

// keySet is an immutable snapshot; a reload swaps in a new one.
type keySet struct {
	byKID map[string][]verificationKey
	stamp any
}

// find returns the key for kid that can verify alg. A kid may repeat in a
// set (one EC and one RSA key, say); the algorithm decides between them.
func (s *keySet) find(kid, alg string) (any, bool) {
	for _, k := range s.byKID[kid] {
		if k.alg != "" && k.alg != alg {
			continue
		}
		if keyFitsAlg(k.key, alg) {
			return k.key, true
		}
	}
	return nil, false
}

// keyFitsAlg checks the key's type against the token's algorithm ourselves,
// rather than relying on a JWK's optional alg, so that a kid can never steer
// a token to a key of another kind (RFC 8725 §3.1).
func keyFitsAlg(key any, alg string) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		return alg == "ES256" && k.Curve == elliptic.P256()
	case *rsa.PublicKey:
		return alg == "RS256" && k.N.BitLen() >= minRSABits
	default:
		return false
	}
}

// parseJWKS turns a JWK Set document into verification keys. jwkset decodes
// and validates each key (points on the curve, x5c matching the key). Keys we
// can never use are skipped rather than failing the set: encryption keys,
// keys without a kid (tokens must name theirs), and key types other than EC
// and RSA. A malformed EC or RSA key fails the whole load, so that a broken
// set is noticed and the previous one kept.
func parseJWKS(doc []byte) (map[string][]verificationKey, error) {
	var set jwkset.JWKSMarshal
	if err := json.Unmarshal(doc, &set); err != nil {
		return nil, fmt.Errorf("decode JWK set: %w", err)
	}
	keys := make(map[string][]verificationKey)
	for i, m := range set.Keys {
		if m.KID == "" || (m.USE != "" && m.USE != jwkset.UseSig) {
			continue
		}
		if m.KTY != jwkset.KtyEC && m.KTY != jwkset.KtyRSA {
			continue
		}
		// The zero JWKMarshalOptions keep only public material, so a private
		// key published by mistake is never held here.
		jwk, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			return nil, fmt.Errorf("key %d (kid %q): %w", i, m.KID, err)
		}
		keys[m.KID] = append(keys[m.KID], verificationKey{key: jwk.Key(), alg: string(m.ALG)})
	}
	if len(keys) == 0 {
		return nil, errors.New("JWK set has no EC or RSA signing key with a kid")
	}
	return keys, nil
}

// keyCache holds the current key set and decides when to reload it.
//
// Reloads happen for three reasons, each paced so that callers cannot turn
// tokens into load on the key source:
//   - changed: the file's stamp moved. Reloaded before the token is judged,
//     so a rotated key works on its first use.
//   - stale: RefreshInterval passed since the last fetch. Refetched in the
//     background; the caller carries on with the keys in hand, so a slow or
//     failing identity provider never delays requests.
//   - unknown: a token names a kid we lack, perhaps a key rotated in without
//     notice. At most one such fetch per RefreshInterval however many unknown
//     kids arrive, so with the stale refetch at most two fetches happen per
//     interval. Concurrent callers join the fetch in flight and all see its
//     result; a caller arriving after it finds the new set already in place.
//
// A failed reload keeps the previous set: an outage at the identity provider
// should not log everyone out.
type keyCache struct {
	src      jwksSource
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	set    atomic.Pointer[keySet]
	flight singleflight.Group
	// loadMu serializes loads: flights for different reasons may overlap,
	// and without it an older document could be stored after a newer one.
	loadMu sync.Mutex

	mu          sync.Mutex
	lastFetch   time.Time // last fetch for any reason; paces stale refetches
	lastUnknown time.Time // last fetch for an unknown kid; paces those
}

func newKeyCache(ctx context.Context, src jwksSource, interval time.Duration, now func() time.Time, log *slog.Logger) (*keyCache, error) {
	c := &keyCache{src: src, interval: interval, now: now, log: log, lastFetch: now()}
	ctx, cancel := context.WithTimeout(ctx, defaultHTTPTimeout)
	defer cancel()
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads and parses the source and swaps the new set in.
func (c *keyCache) load(ctx context.Context) error {
	c.loadMu.Lock()
	defer c.loadMu.Unlock()
	doc, stamp, err := c.src.read(ctx)
	var keys map[string][]verificationKey
	if err == nil {
		keys, err = parseJWKS(doc)
	}
	if err != nil {
		// Remember the stamp of a version that failed, keeping the old keys,
		// so that a broken file is read once rather than on every call.
		if old := c.set.Load(); old != nil && stamp != nil {
			c.set.Store(&keySet{byKID: old.byKID, stamp: stamp})
		}
		return fmt.Errorf("load %s: %w", c.src, err)
	}
	c.set.Store(&keySet{byKID: keys, stamp: stamp})
	return nil
}

// key returns the verification key for kid and alg, reloading as described
// on keyCache.
func (c *keyCache) key(ctx context.Context, kid, alg string) (any, error) {
	if c.src.changed(c.set.Load().stamp) {
		if err := c.reload(ctx, reloadChanged); err != nil {
			return nil, err
		}
	} else if c.due() {
		// Nobody waits on this result; DoChan's buffered channel lets the
		// fetch finish and be collected on its own.
		c.flight.DoChan(reloadStale, c.fetchFunc(ctx, reloadStale))
	}
	if k, ok := c.set.Load().find(kid, alg); ok {
		return k, nil
	}
	if err := c.reload(ctx, reloadUnknown); err != nil {
		return nil, err
	}
	if k, ok := c.set.Load().find(kid, alg); ok {
		return k, nil
	}
	return nil, errUnknownKey
}

func (c *keyCache) due() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now().Sub(c.lastFetch) >= c.interval
}

// reload joins or starts the single fetch for reason and waits for it, or
// for ctx. A fetch that fails is logged, not returned: the caller goes on
// with the previous set, which may still hold its key.
func (c *keyCache) reload(ctx context.Context, reason string) error {
	select {
	case <-c.flight.DoChan(reason, c.fetchFunc(ctx, reason)):
		return nil
	case <-ctx.Done():
		return fmt.Errorf("wait for key set reload: %w", ctx.Err())
	}
}

// fetchFunc is the body of a single-flight reload. The pacing decision is
// taken inside the flight, so callers that arrive while it runs share both the
// decision and the fetch. The fetch outlives the caller that started it,
// because other callers may be waiting on it; it has its own timeout.
func (c *keyCache) fetchFunc(ctx context.Context, reason string) func() (any, error) {
	return func() (any, error) {
		if !c.claim(reason) {
			return nil, nil
		}
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), defaultHTTPTimeout)
		defer cancel()
		if err := c.load(fetchCtx); err != nil {
			c.log.WarnContext(ctx, "key set reload failed; keeping the previous keys",
				slog.String("reason", reason), slog.Any("error", err))
			return nil, err
		}
		return nil, nil
	}
}

// claim reports whether a fetch for reason may run now, and records it.
func (c *keyCache) claim(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	switch reason {
	case reloadChanged:
		// Callers queued behind a reload that already read the new file
		// must not read it again.
		if !c.src.changed(c.set.Load().stamp) {
			return false
		}
	case reloadStale:
		if now.Sub(c.lastFetch) < c.interval {
			return false
		}
	case reloadUnknown:
		if !c.lastUnknown.IsZero() && now.Sub(c.lastUnknown) < c.interval {
			return false
		}
		c.lastUnknown = now
	}
	c.lastFetch = now
	return true
}
