package authn

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

const (
	devKeyFile     = "dev-signing-key.pem"
	devJWKSFile    = "dev-jwks.json"
	defaultMintTTL = time.Hour
)

// DevKey is a local ES256 signing key for development: `rapport token` mints
// with it and `rapport serve` in dev mode verifies against its JWKS file, the
// same path a production JWKS takes. It is not a production issuer: the key
// sits unencrypted on disk and anyone who can read it can mint any principal.
type DevKey struct {
	dir string
	key *ecdsa.PrivateKey
	kid string
}

// LoadOrCreateDevKey loads the P-256 key in dir/dev-signing-key.pem, creating
// dir and the key (mode 0600) if needed, and writes its public JWKS to
// dir/dev-jwks.json. Concurrent callers on one dir, such as `rapport token`
// racing `rapport serve`, all end up with the same key.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dev key directory: %w", err)
	}
	keyPath := filepath.Join(dir, devKeyFile)
	key, err := readDevKey(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createDevKey(dir, keyPath)
	}
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	k := &DevKey{dir: dir, key: key, kid: kid}
	if err := k.writeJWKS(); err != nil {
		return nil, err
	}
	return k, nil
}

// JWKSPath is the public key set to give Config.JWKSFile.
func (k *DevKey) JWKSPath() string { return filepath.Join(k.dir, devJWKSFile) }

// KeyID is the kid of minted tokens: the key's RFC 7638 thumbprint, so it is
// stable across restarts and changes only with the key.
func (k *DevKey) KeyID() string { return k.kid }

// MintOptions describe a development token. Every string is required;
// TenantID must be a UUID. TTL zero means one hour.
type MintOptions struct {
	Issuer   string
	Audience string
	Subject  string
	TenantID string
	Roles    []string
	TTL      time.Duration
}

// Mint signs an access token (typ "at+jwt") that a Verifier configured with
// the same issuer, audience and JWKSPath accepts. It refuses options the
// Verifier would refuse, so a bad token fails here and not on first use.
func (k *DevKey) Mint(o MintOptions) (string, error) {
	var errs []error
	if o.Issuer == "" {
		errs = append(errs, errors.New("issuer is required"))
	}
	if o.Audience == "" {
		errs = append(errs, errors.New("audience is required"))
	}
	if o.Subject == "" {
		errs = append(errs, errors.New("subject is required"))
	}
	tenantID, err := canonicalTenantID(o.TenantID)
	if err != nil {
		errs = append(errs, err)
	}
	if o.TTL < 0 {
		errs = append(errs, fmt.Errorf("ttl %s is negative", o.TTL))
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("mint token: %w", err)
	}
	ttl := o.TTL
	if ttl == 0 {
		ttl = defaultMintTTL
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodES256, claims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    o.Issuer,
			Subject:   o.Subject,
			Audience:  jwt.ClaimStrings{o.Audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
		},
		TenantID: tenantID,
		Roles:    o.Roles,
	})
	t.Header["kid"] = k.kid
	t.Header["typ"] = "at+jwt"
	signed, err := t.SignedString(k.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return signed, nil
}

// readDevKey parses a PKCS #8 or SEC 1 ("EC PRIVATE KEY", as openssl writes)
// P-256 key.
func readDevKey(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read dev signing key: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("dev signing key %s: no PEM block", path)
	}
	var parsed any
	switch block.Type {
	case "PRIVATE KEY":
		parsed, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		parsed, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("dev signing key %s: unexpected PEM type %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse dev signing key %s: %w", path, err)
	}
	key, ok := parsed.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("dev signing key %s: not a P-256 ECDSA key", path)
	}
	return key, nil
}

// createDevKey writes a new key to a temporary file and links it into place.
// The link fails if the key already exists, so a process that lost a race
// adopts the winner's key instead of replacing it, and no reader ever sees a
// half-written file.
func createDevKey(dir, keyPath string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate dev signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode dev signing key: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	tmp, err := writeTemp(dir, devKeyFile, data, 0o600)
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp)
	err = os.Link(tmp, keyPath)
	if errors.Is(err, fs.ErrExist) {
		return readDevKey(keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("install dev signing key: %w", err)
	}
	return key, nil
}

// writeJWKS writes the public key set, leaving an up-to-date file untouched
// so that its modification time, which running Verifiers watch, moves only
// when the key does.
func (k *DevKey) writeJWKS() error {
	jwk, err := jwkset.NewJWKFromKey(&k.key.PublicKey, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{ALG: jwkset.AlgES256, KID: k.kid, USE: jwkset.UseSig},
	})
	if err != nil {
		return fmt.Errorf("build dev JWKS: %w", err)
	}
	doc, err := json.MarshalIndent(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode dev JWKS: %w", err)
	}
	doc = append(doc, '\n')
	path := k.JWKSPath()
	if current, err := os.ReadFile(path); err == nil && bytes.Equal(current, doc) {
		return nil
	}
	tmp, err := writeTemp(k.dir, devJWKSFile, doc, 0o644)
	if err != nil {
		return err
	}
	// Rename replaces atomically, so a Verifier never reads a partial set.
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("install dev JWKS: %w", err)
	}
	return nil
}

// writeTemp writes data to a new file in dir and returns its path.
func writeTemp(dir, name string, data []byte, perm os.FileMode) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return "", fmt.Errorf("create temporary %s: %w", name, err)
	}
	path := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("write temporary %s: %w", name, err)
	}
	return path, nil
}

// thumbprint is the RFC 7638 JWK thumbprint of a P-256 key: SHA-256 over the
// required members in lexicographic order, without whitespace, base64url.
func thumbprint(pub *ecdsa.PublicKey) (string, error) {
	point, err := pub.Bytes() // 0x04 || X || Y, each 32 bytes for P-256
	if err != nil {
		return "", fmt.Errorf("encode dev public key: %w", err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	members := `{"crv":"P-256","kty":"EC","x":"` + b64(point[1:33]) + `","y":"` + b64(point[33:65]) + `"}`
	sum := sha256.Sum256([]byte(members))
	return b64(sum[:]), nil
}
