package authn

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func mintOpts() MintOptions {
	return MintOptions{
		Issuer:   testIssuer,
		Audience: testAudience,
		Subject:  testSubject,
		TenantID: testTenantID,
		Roles:    []string{"admin"},
	}
}

func TestLoadOrCreateDevKey(t *testing.T) {
	t.Parallel()

	t.Run("CreatesDirectoryKeyAndKeySet", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "nested", "dev")

		k, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		fi, err := os.Stat(filepath.Join(dir, "dev-signing-key.pem"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		require.Equal(t, filepath.Join(dir, "dev-jwks.json"), k.JWKSPath())
		doc, err := os.ReadFile(k.JWKSPath())
		require.NoError(t, err)
		require.NotContains(t, string(doc), `"d"`, "the public key set holds private material")
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 2, "temporary files were left behind")
	})

	t.Run("ReloadKeepsKeyAndKeySet", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		first, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		before, err := os.Stat(first.JWKSPath())
		require.NoError(t, err)
		past := before.ModTime().Add(-time.Hour)
		require.NoError(t, os.Chtimes(first.JWKSPath(), past, past))

		second, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		require.Equal(t, first.KeyID(), second.KeyID())
		after, err := os.Stat(second.JWKSPath())
		require.NoError(t, err)
		require.True(t, after.ModTime().Equal(past), "an unchanged key set was rewritten, so running verifiers reload it")
	})

	t.Run("StaleKeySetIsRewritten", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		k, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(k.JWKSPath(), []byte(`{"keys":[]}`), 0o644))

		k, err = LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		_, err = NewVerifier(t.Context(), Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: k.JWKSPath()})
		require.NoError(t, err)
	})

	t.Run("KeyIDIsRFC7638Thumbprint", func(t *testing.T) {
		t.Parallel()
		k, err := LoadOrCreateDevKey(t.TempDir())
		require.NoError(t, err)
		doc, err := os.ReadFile(k.JWKSPath())
		require.NoError(t, err)
		var set struct {
			Keys []struct{ Kty, Crv, X, Y, Kid, Alg, Use string }
		}
		require.NoError(t, json.Unmarshal(doc, &set))
		require.Len(t, set.Keys, 1)
		jwk := set.Keys[0]

		// RFC 7638 §3.2: required members, lexicographic order, no whitespace.
		canonical := `{"crv":"` + jwk.Crv + `","kty":"` + jwk.Kty + `","x":"` + jwk.X + `","y":"` + jwk.Y + `"}`
		sum := sha256.Sum256([]byte(canonical))
		require.Equal(t, base64.RawURLEncoding.EncodeToString(sum[:]), k.KeyID())
		require.Equal(t, k.KeyID(), jwk.Kid)
		require.Equal(t, "ES256", jwk.Alg)
		require.Equal(t, "sig", jwk.Use)
	})

	t.Run("ConcurrentCallersAgreeOnOneKey", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "dev")
		const callers = 8
		kids := make(chan string, callers)
		errs := make(chan error, callers)
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				k, err := LoadOrCreateDevKey(dir)
				if err != nil {
					errs <- err
					return
				}
				kids <- k.KeyID()
			})
		}
		wg.Wait()
		close(kids)
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		final, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		for kid := range kids {
			require.Equal(t, final.KeyID(), kid)
		}
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 2, "temporary files were left behind")
	})

	t.Run("CorruptKeyIsAnErrorAndKept", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		path := filepath.Join(dir, "dev-signing-key.pem")
		require.NoError(t, os.WriteFile(path, []byte("not a key"), 0o600))

		_, err := LoadOrCreateDevKey(dir)
		require.Error(t, err)
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		require.Equal(t, "not a key", string(data))
	})

	t.Run("RefusesOtherCurves", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dev-signing-key.pem"),
			pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))

		_, err = LoadOrCreateDevKey(dir)
		require.ErrorContains(t, err, "P-256")
	})

	t.Run("AcceptsOpenSSLStyleKey", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		require.NoError(t, err)
		der, err := x509.MarshalECPrivateKey(key)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, "dev-signing-key.pem"),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600))

		k, err := LoadOrCreateDevKey(dir)
		require.NoError(t, err)
		want, err := thumbprint(&key.PublicKey)
		require.NoError(t, err)
		require.Equal(t, want, k.KeyID())
	})
}

func TestDevKeyMint(t *testing.T) {
	t.Parallel()

	t.Run("MintedTokenVerifies", func(t *testing.T) {
		t.Parallel()
		k, err := LoadOrCreateDevKey(t.TempDir())
		require.NoError(t, err)
		v, err := NewVerifier(t.Context(), Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: k.JWKSPath()})
		require.NoError(t, err)

		raw, err := k.Mint(mintOpts())
		require.NoError(t, err)
		p, err := v.Verify(t.Context(), raw)
		require.NoError(t, err)
		require.Equal(t, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"admin"}}, p)

		tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
		require.NoError(t, err)
		require.Equal(t, "at+jwt", tok.Header["typ"])
		require.Equal(t, k.KeyID(), tok.Header["kid"])
		exp, err := tok.Claims.GetExpirationTime()
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().Add(time.Hour), exp.Time, time.Minute, "default TTL")
	})

	t.Run("TTLIsHonoured", func(t *testing.T) {
		t.Parallel()
		k, err := LoadOrCreateDevKey(t.TempDir())
		require.NoError(t, err)
		o := mintOpts()
		o.TTL = 5 * time.Minute

		raw, err := k.Mint(o)
		require.NoError(t, err)
		tok, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
		require.NoError(t, err)
		exp, err := tok.Claims.GetExpirationTime()
		require.NoError(t, err)
		require.WithinDuration(t, time.Now().Add(5*time.Minute), exp.Time, time.Minute)
	})

	t.Run("TokenFromAnotherDevKeyIsRejected", func(t *testing.T) {
		t.Parallel()
		mine, err := LoadOrCreateDevKey(t.TempDir())
		require.NoError(t, err)
		theirs, err := LoadOrCreateDevKey(t.TempDir())
		require.NoError(t, err)
		v, err := NewVerifier(t.Context(), Config{Issuer: testIssuer, Audience: testAudience, JWKSFile: mine.JWKSPath()})
		require.NoError(t, err)

		raw, err := theirs.Mint(mintOpts())
		require.NoError(t, err)
		_, err = v.Verify(t.Context(), raw)
		require.ErrorIs(t, err, errUnknownKey)
	})

	cases := []struct {
		name   string
		mutate func(o *MintOptions)
	}{
		{"RefusesMissingIssuer", func(o *MintOptions) { o.Issuer = "" }},
		{"RefusesMissingAudience", func(o *MintOptions) { o.Audience = "" }},
		{"RefusesMissingSubject", func(o *MintOptions) { o.Subject = "" }},
		{"RefusesNonUUIDTenant", func(o *MintOptions) { o.TenantID = "acme" }},
		{"RefusesNegativeTTL", func(o *MintOptions) { o.TTL = -time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			k, err := LoadOrCreateDevKey(t.TempDir())
			require.NoError(t, err)
			o := mintOpts()
			tc.mutate(&o)

			raw, err := k.Mint(o)
			require.Error(t, err)
			require.Empty(t, raw)
		})
	}
}
