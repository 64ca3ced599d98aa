package apikey

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
)

// FuzzParseKey (FUZZ-01, key parsing): no input panics, every refusal is
// errMalformed, and whatever parses has exactly one spelling: formatting its
// parts again gives the input back.
func FuzzParseKey(f *testing.F) {
	id := uuid.Must(uuid.NewV7())
	f.Add(formatKey(id, bytes.Repeat([]byte{0xa5}, secretBytes)))
	f.Add(formatKey(id, newSecret()))
	f.Add("")
	f.Add("rk_")
	f.Add("rk_" + strings.Repeat("0", idHexLen) + "_" + strings.Repeat("A", secretB64Len))
	f.Add("rk_" + strings.Repeat("f", idHexLen) + "_" + strings.Repeat("_", secretB64Len))
	f.Add("eyJhbGciOiJFUzI1NiJ9.e30.sig")
	f.Fuzz(func(t *testing.T, raw string) {
		gotID, hash, err := parseKey(raw)
		if err != nil {
			require.ErrorIs(t, err, errMalformed)
			return
		}
		secret, err := base64.RawURLEncoding.DecodeString(raw[len(Prefix)+idHexLen+1:])
		require.NoError(t, err)
		require.Equal(t, raw, formatKey(gotID, secret))
		require.Equal(t, secretHash(sha256.Sum256(secret)), hash)
	})
}

func TestFormatKeyParses(t *testing.T) {
	t.Parallel()
	for range 100 {
		id, secret := uuid.Must(uuid.NewV7()), newSecret()
		raw := formatKey(id, secret)
		require.Len(t, raw, keyLen)
		gotID, hash, err := parseKey(raw)
		require.NoError(t, err)
		require.Equal(t, id, gotID)
		require.Equal(t, secretHash(sha256.Sum256(secret)), hash)
	}
}
