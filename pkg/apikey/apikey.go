// Package apikey owns API keys: the credentials other systems use to call
// Rapport server to server, over REST and gRPC, as "Authorization: Bearer
// rk_…". It issues and revokes them (the AccessService API), stores them in
// the platform schema "access", and turns a presented key into an
// authn.Principal (Verifier, AuthFunc).
//
// It must not decide what a principal may do: a key carries roles, and the
// authz policy judges them like a token's. It must not log or return a secret
// except once, in CreateApiKey's response.
//
// # The key
//
// A key reads rk_<id>_<secret>: id is the key's UUIDv7 in 32 lower-case hex
// digits, secret is 32 random bytes in unpadded base64url (43 characters).
// Only SHA-256(secret) is stored. A slow password hash would add nothing: the
// secret has 256 bits of entropy, so no dictionary or brute force applies,
// and a fast hash keeps verification cheap. Hashes are compared in constant
// time.
//
// # Revocation and caching
//
// Verify caches what it learns for VerifierConfig.CacheTTL (30 s by default),
// the good and the bad, so a busy caller costs no query per call and a flood
// of made-up keys costs at most one query per distinct key and TTL. Hence a
// revoked key keeps working for up to CacheTTL on each replica that used it
// just before. Expiry is exact: a cached key is checked against its
// expire_time on every call.
//
// # Who may manage keys
//
// Every AccessService method requires the admin role. The tenant is always
// the caller's; an admin may create keys with any roles in it, admin
// included. A key can therefore create keys only if it holds the admin role
// itself, and such a key can mint more admin keys: grant admin to a key only
// where a person would have it.
//
// # Refused calls
//
// AuthFailureLog writes every call the gRPC chain refuses to auth_failures;
// ListAuthFailures shows an admin the refusals of their own tenant. A
// refusal has a tenant only when something verified names it: the principal
// of an authorization refusal, or, for an authentication refusal, an API key
// id that one of the tenant's keys has (ids are unique across tenants, so at
// most one tenant owns it; an id no key has is shown to nobody). Refusals
// without a credential or with a bad JWT belong to no tenant: a JWT that
// failed verification may claim any tenant.
package apikey

import (
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"

	"github.com/google/uuid"
)

// Schema is the platform schema holding the keys; open its pool with this
// search_path and migrate it with pgdb.Migrate(…, Migrations(), …).
const Schema = "access"

// Prefix starts every key; AuthFunc tells keys from JWTs by it.
const Prefix = "rk_"

const (
	idHexLen     = 32 // a UUID's 16 bytes in hex
	secretBytes  = 32
	secretB64Len = 43 // base64url of 32 bytes, unpadded
	// keyLen is the length of every well-formed key.
	keyLen = len(Prefix) + idHexLen + 1 + secretB64Len
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the goose migrations of the access schema.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		// fs.Sub fails only on an invalid literal path.
		return migrationFiles
	}
	return sub
}

// errMalformed says nothing about where the key went wrong: the key is a
// credential, and its shape is documented anyway.
var errMalformed = errors.New("api key malformed")

// secretHash is SHA-256 of a key's secret bytes: what the database keeps.
type secretHash [sha256.Size]byte

// newSecret draws a key's secret.
func newSecret() []byte {
	b := make([]byte, secretBytes)
	// crypto/rand.Read never fails (it panics when the OS cannot give
	// randomness, which no caller could handle better).
	_, _ = rand.Read(b)
	return b
}

// formatKey returns the key a client sends.
func formatKey(id uuid.UUID, secret []byte) string {
	return Prefix + hex.EncodeToString(id[:]) + "_" + base64.RawURLEncoding.EncodeToString(secret)
}

// parseKey splits a presented key into its id and the hash of its secret. It
// is strict, so each key has one spelling: exact length, lower-case hex, a
// version-7 id, the base64url alphabet with canonical trailing bits. The
// secret may contain '_' itself, so fields are cut by position, not by
// separator. Errors never quote the input.
func parseKey(raw string) (uuid.UUID, secretHash, error) {
	if len(raw) != keyLen || raw[:len(Prefix)] != Prefix || raw[len(Prefix)+idHexLen] != '_' {
		return uuid.Nil, secretHash{}, errMalformed
	}
	idHex := raw[len(Prefix) : len(Prefix)+idHexLen]
	enc := raw[len(Prefix)+idHexLen+1:]
	for i := range len(idHex) {
		if c := idHex[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return uuid.Nil, secretHash{}, errMalformed
		}
	}
	for i := range len(enc) {
		if !base64URLChar(enc[i]) {
			return uuid.Nil, secretHash{}, errMalformed
		}
	}
	var id uuid.UUID
	if _, err := hex.Decode(id[:], []byte(idHex)); err != nil {
		return uuid.Nil, secretHash{}, errMalformed
	}
	if id.Version() != 7 || id.Variant() != uuid.RFC4122 {
		return uuid.Nil, secretHash{}, errMalformed
	}
	secret, err := base64.RawURLEncoding.Strict().DecodeString(enc)
	if err != nil || len(secret) != secretBytes {
		return uuid.Nil, secretHash{}, errMalformed
	}
	return id, sha256.Sum256(secret), nil
}

func base64URLChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// subject is the principal subject of calls a key makes.
func subject(id uuid.UUID) string { return "apikey:" + id.String() }
