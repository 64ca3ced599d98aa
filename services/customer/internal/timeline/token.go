package timeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// Page tokens are opaque to clients: a version byte, a fingerprint of the
// list's filter (so a token used with another customer or other kinds is
// refused rather than paging wrongly), and the keyset position of the page's
// last row (time in microseconds, the precision stored, and id).
const (
	tokenVersion = 1
	tokenLen     = 1 + 8 + 8 + 16
)

func encodePageToken(filter string, c store.Cursor) string {
	b := make([]byte, 0, tokenLen)
	b = append(b, tokenVersion)
	h := sha256.Sum256([]byte(filter))
	b = append(b, h[:8]...)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Time.UnixMicro())) //nolint:gosec // round-trips through int64
	b = append(b, c.ID[:]...)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s, filter string) (store.Cursor, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != tokenLen || b[0] != tokenVersion {
		return store.Cursor{}, errors.New("is not a token from this API")
	}
	h := sha256.Sum256([]byte(filter))
	if !bytes.Equal(b[1:9], h[:8]) {
		return store.Cursor{}, errors.New("was issued for other filters; repeat the first request's filters")
	}
	micros := int64(binary.BigEndian.Uint64(b[9:17])) //nolint:gosec // written from an int64
	id, err := uuid.FromBytes(b[17:])
	if err != nil {
		return store.Cursor{}, errors.New("is not a token from this API")
	}
	t := time.UnixMicro(micros).UTC()
	if t.IsZero() {
		return store.Cursor{}, errors.New("is not a token from this API")
	}
	return store.Cursor{Time: t, ID: id}, nil
}
