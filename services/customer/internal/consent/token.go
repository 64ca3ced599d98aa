package consent

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
)

// tokenPrefix marks double opt-in tokens, so secret scanners and people can
// tell one apart from other credentials.
const tokenPrefix = "cc_"

// NewToken returns a fresh confirmation token (256 random bits) and the
// hash that is all Rapport stores of it.
func NewToken() (token string, hash [32]byte) {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go ≥ 1.24)
	token = tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return token, HashToken(token)
}

// HashToken is the stored form of a token. A plain SHA-256 is enough: the
// token has 256 bits of entropy, so there is nothing to brute-force.
func HashToken(token string) [32]byte {
	return sha256.Sum256([]byte(token))
}
