package authn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

const (
	defaultLeeway          = 30 * time.Second
	maxLeeway              = 5 * time.Minute
	defaultRefreshInterval = 5 * time.Minute
	// minRefreshInterval keeps a misconfiguration from turning every token
	// with an unknown kid into a request to the identity provider.
	minRefreshInterval = time.Second
	defaultHTTPTimeout = 10 * time.Second
	// maxTokenBytes bounds the work an unauthenticated caller can ask for;
	// real access tokens are well under 4 KiB.
	maxTokenBytes = 8 << 10
)

// Algorithms a token may be signed with. The list is fixed rather than taken
// from the JWKS: "none" and every HMAC algorithm stay out, so a public key can
// never be used as a shared secret (RFC 8725 §2.1, §3.1).
var validMethods = []string{"ES256", "RS256"}

var (
	errTokenTooLong = fmt.Errorf("token longer than %d bytes", maxTokenBytes)
	errTokenType    = errors.New(`token type is neither "JWT" nor "at+jwt"`)
	errCritHeader   = errors.New("token header has critical extensions")
	errNoKeyID      = errors.New("token header has no key id")
	errUnknownKey   = errors.New("no verification key matches the token's key id and algorithm")
	errNoSubject    = errors.New("token has no subject")
	errTenantID     = errors.New("tenant_id claim is missing or not a UUID")
)

// Config configures a Verifier. Exactly one of JWKSFile and JWKSURL is set.
type Config struct {
	// Issuer must equal the token's iss.
	Issuer string
	// Audience must be one of the token's aud values.
	Audience string
	// JWKSFile is re-read whenever its modification time or size changes, so
	// keys rotate without a restart.
	JWKSFile string
	// JWKSURL must be https, except on a loopback host.
	JWKSURL string
	// Leeway absorbs clock skew in exp, nbf and iat. Zero means 30 s; at most 5 min.
	Leeway time.Duration
	// RefreshInterval paces JWKS refetches: the set is refetched in the
	// background once it is this old, and a token with an unknown kid triggers
	// at most one extra fetch per interval. Zero means 5 min.
	RefreshInterval time.Duration
	// HTTPClient fetches JWKSURL. Nil means a client with a 10 s timeout.
	HTTPClient *http.Client
	// Logger receives JWKS load failures and, at debug level, why a call was
	// refused. Nil discards.
	Logger *slog.Logger
}

// Verifier checks bearer tokens against a JWKS. It is safe for concurrent use.
type Verifier struct {
	parser *jwt.Parser
	keys   *keyCache
	log    *slog.Logger
}

// NewVerifier validates cfg and loads the key set once, failing if it cannot:
// a verifier that starts without keys would refuse every call while looking
// healthy. ctx bounds that first load only, which is also capped at 10 s.
//
// A Verifier starts no long-lived goroutine and needs no Close: refetches are
// started by Verify calls and end within their own 10 s timeout.
func NewVerifier(ctx context.Context, cfg Config) (*Verifier, error) {
	return newVerifier(ctx, cfg, time.Now)
}

// newVerifier takes the clock so tests can step past RefreshInterval without
// sleeping; the same clock judges exp and nbf.
func newVerifier(ctx context.Context, cfg Config, now func() time.Time) (*Verifier, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var src jwksSource = fileSource{path: cfg.JWKSFile}
	if cfg.JWKSURL != "" {
		client := cfg.HTTPClient
		if client == nil {
			client = &http.Client{Timeout: defaultHTTPTimeout}
		}
		src = urlSource{url: cfg.JWKSURL, client: client}
	}
	keys, err := newKeyCache(ctx, src, cfg.RefreshInterval, now, log)
	if err != nil {
		return nil, err
	}
	parser := jwt.NewParser(
		jwt.WithValidMethods(validMethods),
		jwt.WithIssuer(cfg.Issuer),
		jwt.WithAudience(cfg.Audience),
		jwt.WithExpirationRequired(),
		// RELIABILITY §1.6 requires nbf as well as exp.
		jwt.WithNotBeforeRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithTimeFunc(now),
		jwt.WithStrictDecoding(),
	)
	return &Verifier{parser: parser, keys: keys, log: log}, nil
}

// validate fills defaults and rejects a config that cannot verify anything.
func (c *Config) validate() error {
	var errs []error
	if c.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if c.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	switch {
	case c.JWKSFile == "" && c.JWKSURL == "":
		errs = append(errs, errors.New("one of JWKS file and JWKS URL is required"))
	case c.JWKSFile != "" && c.JWKSURL != "":
		errs = append(errs, errors.New("JWKS file and JWKS URL are exclusive"))
	case c.JWKSURL != "":
		if err := checkJWKSURL(c.JWKSURL); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Leeway == 0 {
		c.Leeway = defaultLeeway
	}
	if c.Leeway < 0 || c.Leeway > maxLeeway {
		errs = append(errs, fmt.Errorf("leeway %s is outside 0..%s", c.Leeway, maxLeeway))
	}
	if c.RefreshInterval == 0 {
		c.RefreshInterval = defaultRefreshInterval
	}
	if c.RefreshInterval < minRefreshInterval {
		errs = append(errs, fmt.Errorf("refresh interval %s is below %s", c.RefreshInterval, minRefreshInterval))
	}
	return errors.Join(errs...)
}

// checkJWKSURL insists on TLS, because whoever can rewrite the key set can
// mint any principal; plain http is allowed only to this machine, for
// development.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("parse JWKS URL: %w", err)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return errors.New("JWKS URL must use https unless its host is loopback")
	default:
		return fmt.Errorf("JWKS URL scheme %q is not https", u.Scheme)
	}
}

// claims is the token body Rapport reads. Unknown claims are ignored.
type claims struct {
	jwt.RegisteredClaims
	TenantID string   `json:"tenant_id"`
	Roles    []string `json:"roles,omitempty"`
}

// Verify checks rawToken's header, signature and claims and returns the
// principal it names. Every error wraps ErrUnauthenticated.
func (v *Verifier) Verify(ctx context.Context, rawToken string) (Principal, error) {
	p, err := v.verify(ctx, rawToken)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return p, nil
}

func (v *Verifier) verify(ctx context.Context, rawToken string) (Principal, error) {
	if len(rawToken) > maxTokenBytes {
		return Principal{}, errTokenTooLong
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(rawToken, &c, v.keyFunc(ctx)); err != nil {
		return Principal{}, err
	}
	if c.Subject == "" {
		return Principal{}, errNoSubject
	}
	tenantID, err := canonicalTenantID(c.TenantID)
	if err != nil {
		return Principal{}, err
	}
	return Principal{Subject: c.Subject, TenantID: tenantID, Roles: c.Roles}, nil
}

// keyFunc picks the verification key by kid from the configured JWKS only.
// jwt has already refused algorithms outside validMethods when this runs.
// Header parameters that name a key by other means (jku, x5u, jwk, x5c) are
// never read: honouring them would let the token choose its own verifier.
func (v *Verifier) keyFunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		if typ, ok := t.Header["typ"]; ok && !accessTokenType(typ) {
			return nil, errTokenType
		}
		// RFC 7515 §4.1.11: a recipient must refuse critical extensions it
		// does not understand, and Rapport understands none.
		if _, ok := t.Header["crit"]; ok {
			return nil, errCritHeader
		}
		kid, _ := t.Header["kid"].(string)
		if kid == "" {
			// Every issuer Rapport meets names its key; without a kid the key
			// choice, and the unknown-kid refetch, would be guesswork.
			return nil, errNoKeyID
		}
		return v.keys.key(ctx, kid, t.Method.Alg())
	}
}

// accessTokenType accepts the two typ values of an access token: "JWT" and
// RFC 9068's "at+jwt". Media types compare case-insensitively and may carry
// the "application/" prefix (RFC 7515 §4.1.9). Refusing the rest keeps ID
// tokens ("id_token", "JWT+id") and other JOSE objects from passing as access.
func accessTokenType(typ any) bool {
	s, ok := typ.(string)
	if !ok {
		return false
	}
	s = strings.TrimPrefix(strings.ToLower(s), "application/")
	return s == "jwt" || s == "at+jwt"
}

// canonicalTenantID accepts only the 36-character hyphenated form (uuid.Parse
// alone also takes braces, urn:uuid: and bare hex) and returns it lower case,
// so that tenant comparisons downstream are plain string equality.
func canonicalTenantID(s string) (string, error) {
	if len(s) != 36 {
		return "", errTenantID
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return "", errTenantID
	}
	return id.String(), nil
}
