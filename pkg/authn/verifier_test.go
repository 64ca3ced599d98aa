package authn

import (
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

type verifyBundle struct {
	ec, rsa  testKey
	verifier *Verifier
}

// sources builds a verifier over the same two keys from each kind of JWKS
// source, so every case runs against both.
var sources = []struct {
	name  string
	setup func(t *testing.T) verifyBundle
}{
	{"File", func(t *testing.T) verifyBundle {
		ec, rsaKey := newECKey(t), newRSAKey(t)
		return verifyBundle{ec: ec, rsa: rsaKey, verifier: mustVerifier(t, fileConfig(t, ec, rsaKey), nil)}
	}},
	{"FileWithoutAlg", func(t *testing.T) verifyBundle {
		ec, rsaKey := newECKey(t), newRSAKey(t)
		ec.omitAlg, rsaKey.omitAlg = true, true
		return verifyBundle{ec: ec, rsa: rsaKey, verifier: mustVerifier(t, fileConfig(t, ec, rsaKey), nil)}
	}},
	{"URL", func(t *testing.T) verifyBundle {
		ec, rsaKey := newECKey(t), newRSAKey(t)
		return verifyBundle{ec: ec, rsa: rsaKey, verifier: mustVerifier(t, newJWKSServer(t, ec, rsaKey).config(), nil)}
	}},
}

func TestVerifyAccepts(t *testing.T) {
	t.Parallel()

	cases := []struct {
		name  string
		token func(t *testing.T, b verifyBundle) string
		want  Principal
	}{
		{"ES256", func(t *testing.T, b verifyBundle) string {
			return sign(t, b.ec, validClaims(), nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"RS256", func(t *testing.T, b verifyBundle) string {
			return sign(t, b.rsa, validClaims(), nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"AccessTokenType", func(t *testing.T, b verifyBundle) string {
			return sign(t, b.ec, validClaims(), &signOpts{header: map[string]any{"typ": "at+jwt"}})
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"AccessTokenMediaType", func(t *testing.T, b verifyBundle) string {
			return sign(t, b.ec, validClaims(), &signOpts{header: map[string]any{"typ": "application/AT+JWT"}})
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"MissingType", func(t *testing.T, b verifyBundle) string {
			return sign(t, b.ec, validClaims(), &signOpts{header: map[string]any{"typ": nil}})
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"AudienceList", func(t *testing.T, b verifyBundle) string {
			c := validClaims()
			c["aud"] = []string{"other-api", testAudience}
			return sign(t, b.ec, c, nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"NoRoles", func(t *testing.T, b verifyBundle) string {
			c := validClaims()
			delete(c, "roles")
			return sign(t, b.ec, c, nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID}},
		{"UpperCaseTenantIDComesBackCanonical", func(t *testing.T, b verifyBundle) string {
			c := validClaims()
			c["tenant_id"] = strings.ToUpper(testTenantID)
			return sign(t, b.ec, c, nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
		{"ExpiredWithinLeeway", func(t *testing.T, b verifyBundle) string {
			c := validClaims()
			c["exp"] = time.Now().Add(-10 * time.Second).Unix()
			return sign(t, b.ec, c, nil)
		}, Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"agent", "supervisor"}}},
	}
	for _, src := range sources {
		for _, tc := range cases {
			t.Run(src.name+tc.name, func(t *testing.T) {
				t.Parallel()
				b := src.setup(t)

				got, err := b.verifier.Verify(t.Context(), tc.token(t, b))
				require.NoError(t, err)
				require.Equal(t, tc.want, got)
			})
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	t.Parallel()

	// withClaim returns a validly signed ES256 token with one claim changed
	// (nil deletes it), so the change is the only thing wrong with it.
	withClaim := func(name string, v any) func(t *testing.T, b verifyBundle) string {
		return func(t *testing.T, b verifyBundle) string {
			c := validClaims()
			if v == nil {
				delete(c, name)
			} else {
				c[name] = v
			}
			return sign(t, b.ec, c, nil)
		}
	}
	withHeader := func(name string, v any) func(t *testing.T, b verifyBundle) string {
		return func(t *testing.T, b verifyBundle) string {
			return sign(t, b.ec, validClaims(), &signOpts{header: map[string]any{name: v}})
		}
	}

	cases := []struct {
		name  string
		token func(t *testing.T, b verifyBundle) string
		// wantErr names the check that must refuse the token, so a case
		// refused for some other reason fails.
		wantErr error
	}{
		{"AlgNone", func(t *testing.T, b verifyBundle) string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, validClaims())
			tok.Header["kid"] = b.ec.kid
			raw, err := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			require.NoError(t, err)
			return raw
		}, jwt.ErrTokenSignatureInvalid},
		{"HS256KeyedWithRSAPublicKey", func(t *testing.T, b verifyBundle) string {
			// The classic algorithm confusion: the attacker knows the RSA
			// public key and uses its PEM bytes as the HMAC secret.
			der, err := x509.MarshalPKIXPublicKey(b.rsa.signer.Public().(*rsa.PublicKey))
			require.NoError(t, err)
			secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, validClaims())
			tok.Header["kid"] = b.rsa.kid
			raw, err := tok.SignedString(secret)
			require.NoError(t, err)
			return raw
		}, jwt.ErrTokenSignatureInvalid},
		{"RS256UnderECKeyID", func(t *testing.T, b verifyBundle) string {
			return sign(t, testKey{kid: b.ec.kid, method: b.rsa.method, signer: b.rsa.signer}, validClaims(), nil)
		}, errUnknownKey},
		{"ES256UnderRSAKeyID", func(t *testing.T, b verifyBundle) string {
			return sign(t, testKey{kid: b.rsa.kid, method: b.ec.method, signer: b.ec.signer}, validClaims(), nil)
		}, errUnknownKey},
		{"SignedByStrangerUnderKnownKeyID", func(t *testing.T, b verifyBundle) string {
			stranger := newECKey(t)
			stranger.kid = b.ec.kid
			return sign(t, stranger, validClaims(), nil)
		}, jwt.ErrTokenSignatureInvalid},
		{"TamperedPayload", func(t *testing.T, b verifyBundle) string {
			parts := strings.Split(sign(t, b.ec, validClaims(), nil), ".")
			c := validClaims()
			c["roles"] = []string{"admin"}
			other := strings.Split(sign(t, b.ec, c, nil), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}, jwt.ErrTokenSignatureInvalid},
		{"WrongIssuer", withClaim("iss", "https://evil.test/"), jwt.ErrTokenInvalidIssuer},
		{"MissingIssuer", withClaim("iss", nil), jwt.ErrTokenRequiredClaimMissing},
		{"WrongAudience", withClaim("aud", "other-api"), jwt.ErrTokenInvalidAudience},
		{"MissingAudience", withClaim("aud", nil), jwt.ErrTokenRequiredClaimMissing},
		{"Expired", withClaim("exp", time.Now().Add(-2*time.Minute).Unix()), jwt.ErrTokenExpired},
		{"MissingExpiry", withClaim("exp", nil), jwt.ErrTokenRequiredClaimMissing},
		{"NotBeforeInFuture", withClaim("nbf", time.Now().Add(2*time.Minute).Unix()), jwt.ErrTokenNotValidYet},
		{"MissingNotBefore", withClaim("nbf", nil), jwt.ErrTokenRequiredClaimMissing},
		{"IssuedInFuture", withClaim("iat", time.Now().Add(2*time.Minute).Unix()), jwt.ErrTokenUsedBeforeIssued},
		{"MissingSubject", withClaim("sub", nil), errNoSubject},
		{"MissingTenantID", withClaim("tenant_id", nil), errTenantID},
		{"NonUUIDTenantID", withClaim("tenant_id", "acme"), errTenantID},
		{"BracedTenantID", withClaim("tenant_id", "{"+testTenantID+"}"), errTenantID},
		{"URNTenantID", withClaim("tenant_id", "urn:uuid:"+testTenantID), errTenantID},
		{"NilTenantID", withClaim("tenant_id", "00000000-0000-0000-0000-000000000000"), errTenantID},
		{"NumericTenantID", withClaim("tenant_id", 42), jwt.ErrTokenMalformed},
		{"IDTokenType", withHeader("typ", "id_token"), errTokenType},
		{"OIDCIDTokenType", withHeader("typ", "JWT+id"), errTokenType},
		{"NonStringType", withHeader("typ", 1), errTokenType},
		{"CriticalHeader", withHeader("crit", []string{"exp"}), errCritHeader},
		{"UnknownKeyID", withHeader("kid", "no-such-key"), errUnknownKey},
		{"MissingKeyID", withHeader("kid", nil), errNoKeyID},
		{"JKUPointsAtAttackerKeySet", func(t *testing.T, b verifyBundle) string {
			// The attacker publishes its own key set and names it in jku.
			// Honouring jku would fetch it and accept the token.
			attacker := newECKey(t)
			evil := newJWKSServer(t, attacker)
			t.Cleanup(func() { require.Zero(t, evil.hits.Load(), "the jku URL was fetched") })
			return sign(t, attacker, validClaims(), &signOpts{header: map[string]any{"jku": evil.srv.URL}})
		}, errUnknownKey},
		{"EmbeddedJWK", func(t *testing.T, b verifyBundle) string {
			attacker := newECKey(t)
			var embedded map[string]any
			require.NoError(t, jsonUnmarshalFirstKey(jwksDoc(t, attacker), &embedded))
			return sign(t, attacker, validClaims(), &signOpts{header: map[string]any{"jwk": embedded}})
		}, errUnknownKey},
		{"Oversized", withClaim("pad", strings.Repeat("x", maxTokenBytes)), errTokenTooLong},
		{"Garbage", func(*testing.T, verifyBundle) string { return "not.a.jwt" }, jwt.ErrTokenMalformed},
		{"Empty", func(*testing.T, verifyBundle) string { return "" }, jwt.ErrTokenMalformed},
	}
	for _, src := range sources {
		for _, tc := range cases {
			t.Run(src.name+tc.name, func(t *testing.T) {
				t.Parallel()
				b := src.setup(t)
				raw := tc.token(t, b)

				got, err := b.verifier.Verify(t.Context(), raw)
				require.ErrorIs(t, err, ErrUnauthenticated)
				require.ErrorIs(t, err, tc.wantErr)
				require.Zero(t, got)
				if raw != "" {
					require.NotContains(t, err.Error(), raw)
					if parts := strings.Split(raw, "."); len(parts) == 3 && len(parts[2]) > 8 {
						require.NotContains(t, err.Error(), parts[2], "the error quotes the signature")
					}
				}
			})
		}
	}
}

func TestNewVerifierRefusesBadConfig(t *testing.T) {
	t.Parallel()

	ok := fileConfig(t, newECKey(t))
	cases := []struct {
		name   string
		mutate func(t *testing.T, c *Config)
	}{
		{"MissingIssuer", func(t *testing.T, c *Config) { c.Issuer = "" }},
		{"MissingAudience", func(t *testing.T, c *Config) { c.Audience = "" }},
		{"NoKeySet", func(t *testing.T, c *Config) { c.JWKSFile = "" }},
		{"FileAndURL", func(t *testing.T, c *Config) { c.JWKSURL = "https://id.rapport.test/jwks.json" }},
		{"PlainHTTPOffLoopback", func(t *testing.T, c *Config) { c.JWKSFile, c.JWKSURL = "", "http://id.rapport.test/jwks.json" }},
		{"UnknownScheme", func(t *testing.T, c *Config) { c.JWKSFile, c.JWKSURL = "", "ftp://127.0.0.1/jwks.json" }},
		{"NegativeLeeway", func(t *testing.T, c *Config) { c.Leeway = -time.Second }},
		{"HugeLeeway", func(t *testing.T, c *Config) { c.Leeway = time.Hour }},
		{"TinyRefreshInterval", func(t *testing.T, c *Config) { c.RefreshInterval = time.Millisecond }},
		{"MissingFile", func(t *testing.T, c *Config) { c.JWKSFile += ".missing" }},
		{"FileWithoutUsableKey", func(t *testing.T, c *Config) {
			c.JWKSFile = writeFile(t, `{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]}`)
		}},
		{"FileWithMalformedKey", func(t *testing.T, c *Config) {
			c.JWKSFile = writeFile(t, `{"keys":[{"kty":"EC","kid":"bad","crv":"P-256","x":"AQ","y":"AQ"}]}`)
		}},
		{"FileNotJSON", func(t *testing.T, c *Config) { c.JWKSFile = writeFile(t, `{"keys":`) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tc.mutate(t, &cfg)

			_, err := NewVerifier(t.Context(), cfg)
			require.Error(t, err)
		})
	}

	t.Run("AcceptsTheBaseConfig", func(t *testing.T) {
		t.Parallel()
		_, err := NewVerifier(t.Context(), ok)
		require.NoError(t, err)
	})
}

func FuzzVerify(f *testing.F) {
	key := newECKey(f)
	v := mustVerifier(f, fileConfig(f, key), nil)
	f.Add(sign(f, key, validClaims(), nil))
	f.Add(sign(f, key, validClaims(), &signOpts{header: map[string]any{"typ": "id_token"}}))
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	f.Add("a.b.c")
	f.Add("")

	f.Fuzz(func(t *testing.T, raw string) {
		p, err := v.Verify(context.Background(), raw)
		if err == nil {
			// Only a token our key signed can pass, and it carries a tenant.
			require.NotEmpty(t, p.TenantID)
			return
		}
		require.ErrorIs(t, err, ErrUnauthenticated)
		if len(raw) >= 16 {
			require.NotContains(t, err.Error(), raw)
		}
	})
}

// jsonUnmarshalFirstKey decodes the first key of a JWK Set document.
func jsonUnmarshalFirstKey(doc []byte, into *map[string]any) error {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return err
	}
	*into = set.Keys[0]
	return nil
}
