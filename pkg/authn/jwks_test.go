package authn

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

// longLivedClaims outlive the test clock's steps past RefreshInterval.
func longLivedClaims() jwt.MapClaims {
	c := validClaims()
	c["exp"] = time.Now().Add(3 * time.Hour).Unix()
	return c
}

func TestJWKSFile(t *testing.T) {
	t.Parallel()

	t.Run("RotatedKeyVerifiesWithoutNewVerifier", func(t *testing.T) {
		t.Parallel()
		a, b := newECKey(t), newECKey(t)
		cfg := fileConfig(t, a)
		v := mustVerifier(t, cfg, nil)
		tokA, tokB := sign(t, a, validClaims(), nil), sign(t, b, validClaims(), nil)

		// Before rotation b is unknown. This also spends the hour's
		// unknown-kid reload, so only the file watch can pick up what follows.
		_, err := v.Verify(t.Context(), tokB)
		require.ErrorIs(t, err, errUnknownKey)

		writeJWKS(t, cfg.JWKSFile, a, b)
		_, err = v.Verify(t.Context(), tokB)
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), tokA)
		require.NoError(t, err)
	})

	t.Run("RemovedKeyStopsVerifying", func(t *testing.T) {
		t.Parallel()
		a, b := newECKey(t), newECKey(t)
		cfg := fileConfig(t, a, b)
		v := mustVerifier(t, cfg, nil)
		tokA := sign(t, a, validClaims(), nil)
		_, err := v.Verify(t.Context(), tokA)
		require.NoError(t, err)

		writeJWKS(t, cfg.JWKSFile, b)
		_, err = v.Verify(t.Context(), tokA)
		require.ErrorIs(t, err, errUnknownKey)
	})

	t.Run("ShortRSAKeyIsNeverUsed", func(t *testing.T) {
		t.Parallel()
		short, err := rsa.GenerateKey(rand.Reader, 1024)
		require.NoError(t, err)
		weak := testKey{kid: "rsa-1024", method: jwt.SigningMethodRS256, signer: short}
		v := mustVerifier(t, fileConfig(t, newECKey(t), weak), nil)

		_, err = v.Verify(t.Context(), sign(t, weak, validClaims(), nil))
		require.ErrorIs(t, err, errUnknownKey)
	})

	t.Run("KeyDeclaredForAnotherAlgorithmIsNotUsed", func(t *testing.T) {
		t.Parallel()
		// An RSA key published for PS256 only must not verify RS256,
		// although its type would allow it.
		r := newRSAKey(t)
		jwk, err := jwkset.NewJWKFromKey(r.signer.Public(), jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: r.kid, ALG: jwkset.AlgPS256, USE: jwkset.UseSig},
		})
		require.NoError(t, err)
		doc, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
		require.NoError(t, err)
		v := mustVerifier(t, Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: writeFile(t, string(doc))}, nil)

		_, err = v.Verify(t.Context(), sign(t, r, validClaims(), nil))
		require.ErrorIs(t, err, errUnknownKey)
	})

	t.Run("OtherKeyTypesAndUsesAreSkipped", func(t *testing.T) {
		t.Parallel()
		a := newECKey(t)
		var set map[string][]map[string]any
		require.NoError(t, json.Unmarshal(jwksDoc(t, a), &set))
		encKey := maps.Clone(set["keys"][0])
		encKey["use"], encKey["kid"] = "enc", "enc-key"
		set["keys"] = append(set["keys"],
			map[string]any{"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
			map[string]any{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
			encKey)
		doc, err := json.Marshal(set)
		require.NoError(t, err)
		path := writeFile(t, string(doc))
		v := mustVerifier(t, Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: path}, nil)

		require.Equal(t, []string{a.kid}, slices.Collect(maps.Keys(v.keys.set.Load().byKID)))
		_, err = v.Verify(t.Context(), sign(t, a, validClaims(), nil))
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), sign(t, testKey{kid: "enc-key", method: a.method, signer: a.signer}, validClaims(), nil))
		require.ErrorIs(t, err, errUnknownKey, "an encryption key verified a signature")
	})

	t.Run("BrokenFileKeepsPreviousKeys", func(t *testing.T) {
		t.Parallel()
		a, b := newECKey(t), newECKey(t)
		cfg := fileConfig(t, a)
		v := mustVerifier(t, cfg, nil)

		writeJWKSDoc(t, cfg.JWKSFile, []byte(`{"keys":`))
		_, err := v.Verify(t.Context(), sign(t, a, validClaims(), nil))
		require.NoError(t, err)
		require.False(t, v.keys.src.changed(v.keys.set.Load().stamp), "the broken file would be re-read on every call")

		writeJWKS(t, cfg.JWKSFile, b)
		_, err = v.Verify(t.Context(), sign(t, b, validClaims(), nil))
		require.NoError(t, err, "a fixed file must be picked up after a broken one")
	})
}

func TestJWKSURL(t *testing.T) {
	t.Parallel()

	t.Run("RandomKeyIDsFetchAtMostOncePerInterval", func(t *testing.T) {
		t.Parallel()
		a := newECKey(t)
		s := newJWKSServer(t, a)
		clock := newTestClock()
		v := mustVerifier(t, s.config(), clock)
		require.EqualValues(t, 1, s.hits.Load(), "the initial load")

		const n, workers = 1000, 16
		tokens := make(chan string, n)
		for range n {
			k := newECKey(t) // a fresh random kid every time
			tokens <- sign(t, k, validClaims(), nil)
		}
		close(tokens)
		var unknown atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for raw := range tokens {
					if _, err := v.Verify(t.Context(), raw); errors.Is(err, errUnknownKey) {
						unknown.Add(1)
					}
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, n, unknown.Load())
		require.LessOrEqual(t, s.hits.Load(), int64(2), "initial load plus at most one refetch")

		// The price of the bound: a key rotated in now waits for the next
		// interval.
		c := newECKey(t)
		s.serve(t, a, c)
		tokC := sign(t, c, longLivedClaims(), nil)
		_, err := v.Verify(t.Context(), tokC)
		require.ErrorIs(t, err, errUnknownKey)
		require.LessOrEqual(t, s.hits.Load(), int64(2))

		clock.Advance(time.Hour)
		_, err = v.Verify(t.Context(), tokC)
		require.NoError(t, err)
		require.LessOrEqual(t, s.hits.Load(), int64(4), "at most two fetches in the second interval")
	})

	t.Run("ConcurrentCallersShareOneFetch", func(t *testing.T) {
		t.Parallel()
		a, c := newECKey(t), newECKey(t)
		s := newJWKSServer(t, a)
		v := mustVerifier(t, s.config(), nil)
		s.serve(t, a, c)
		release := s.holdFetches()
		t.Cleanup(release)
		tokC := sign(t, c, validClaims(), nil)

		const callers = 50
		errs := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				_, err := v.Verify(t.Context(), tokC)
				errs <- err
			})
		}
		require.Eventually(t, func() bool { return s.hits.Load() == 2 }, 5*time.Second, time.Millisecond)
		release()
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err, "a caller did not get the shared fetch's result")
		}
		require.EqualValues(t, 2, s.hits.Load())
	})

	t.Run("CanceledCallerDoesNotCancelSharedFetch", func(t *testing.T) {
		t.Parallel()
		a, c := newECKey(t), newECKey(t)
		s := newJWKSServer(t, a)
		v := mustVerifier(t, s.config(), nil)
		s.serve(t, a, c)
		release := s.holdFetches()
		t.Cleanup(release)
		tokC := sign(t, c, validClaims(), nil)

		ctx, cancel := context.WithCancel(t.Context())
		first := make(chan error, 1)
		go func() {
			_, err := v.Verify(ctx, tokC)
			first <- err
		}()
		require.Eventually(t, func() bool { return s.hits.Load() == 2 }, 5*time.Second, time.Millisecond)
		second := make(chan error, 1)
		go func() {
			_, err := v.Verify(t.Context(), tokC)
			second <- err
		}()
		cancel()
		require.ErrorIs(t, <-first, context.Canceled)
		release()
		require.NoError(t, <-second)
	})

	t.Run("StaleKeySetRefetchedInBackground", func(t *testing.T) {
		t.Parallel()
		a, b := newECKey(t), newECKey(t)
		s := newJWKSServer(t, a, b)
		clock := newTestClock()
		v := mustVerifier(t, s.config(), clock)
		tokB := sign(t, b, longLivedClaims(), nil)

		s.serve(t, b) // a is revoked
		release := s.holdFetches()
		t.Cleanup(release)
		clock.Advance(time.Hour)
		// A known kid is served from the cache while the refetch is held:
		// the caller never waits on the identity provider.
		_, err := v.Verify(t.Context(), tokB)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return s.hits.Load() == 2 }, 5*time.Second, time.Millisecond)

		release()
		require.Eventually(t, func() bool {
			_, held := v.keys.set.Load().find(a.kid, "ES256")
			return !held
		}, 5*time.Second, time.Millisecond, "the revoked key is still held")
	})

	t.Run("FailedRefetchKeepsKeys", func(t *testing.T) {
		t.Parallel()
		a := newECKey(t)
		s := newJWKSServer(t, a)
		clock := newTestClock()
		v := mustVerifier(t, s.config(), clock)
		tokA := sign(t, a, longLivedClaims(), nil)

		s.fail(http.StatusInternalServerError)
		clock.Advance(time.Hour)
		_, err := v.Verify(t.Context(), tokA)
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), sign(t, newECKey(t), longLivedClaims(), nil))
		require.ErrorIs(t, err, errUnknownKey)
		require.GreaterOrEqual(t, s.hits.Load(), int64(2), "no refetch was tried")
		_, err = v.Verify(t.Context(), tokA)
		require.NoError(t, err)
	})

	t.Run("FailingAtStartupIsAnError", func(t *testing.T) {
		t.Parallel()
		s := newJWKSServer(t, newECKey(t))
		s.fail(http.StatusServiceUnavailable)

		_, err := NewVerifier(t.Context(), s.config())
		require.ErrorContains(t, err, "503")
	})

	t.Run("OversizedKeySetIsRefused", func(t *testing.T) {
		t.Parallel()
		big := make([]byte, maxJWKSBytes+1)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(big)
		}))
		t.Cleanup(srv.Close)

		_, err := NewVerifier(t.Context(), Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: srv.URL})
		require.ErrorContains(t, err, "larger than")
	})

	t.Run("PlainHTTPOnLoopbackIsAllowed", func(t *testing.T) {
		t.Parallel()
		a := newECKey(t)
		doc := jwksDoc(t, a)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write(doc)
		}))
		t.Cleanup(srv.Close)

		v, err := NewVerifier(t.Context(), Config{Issuer: testIssuer, Audience: testAudience, JWKSURL: srv.URL})
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), sign(t, a, validClaims(), nil))
		require.NoError(t, err)
	})
}
