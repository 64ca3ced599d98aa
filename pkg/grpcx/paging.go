package grpcx

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"

	"github.com/google/uuid"
)

// Page sizes of every List method (DESIGN.md §3, AIP-158): zero asks for the
// default, anything above the maximum is coerced to it (a negative size is
// refused earlier, by the request's validation rules).
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// PageSize applies the paging rule to a requested page size.
func PageSize(requested int32) int {
	switch {
	case requested <= 0:
		return DefaultPageSize
	case requested > MaxPageSize:
		return MaxPageSize
	}
	return int(requested)
}

// Page tokens are opaque to clients: a version byte, a fingerprint of the
// list's filters (a token used with other filters is refused rather than
// paging wrongly) and the position after which the next page starts, in
// whatever bytes the list orders by.
const pageTokenVersion = 1

// Errors of DecodePageToken, worded to follow the field name in a
// FieldViolation on page_token.
var (
	errForeignToken = errors.New("is not a token from this API")
	errOtherFilters = errors.New("was issued for other filters; repeat the first request's filters")
)

// EncodePageToken returns the token of position in a list with filter (a
// string naming the list and every filter of the request).
func EncodePageToken(filter string, position []byte) string {
	h := sha256.Sum256([]byte(filter))
	b := make([]byte, 0, 1+8+len(position))
	b = append(b, pageTokenVersion)
	b = append(b, h[:8]...)
	return base64.RawURLEncoding.EncodeToString(append(b, position...))
}

// DecodePageToken returns the position a token of EncodePageToken holds,
// refusing a token of another list or other filters.
func DecodePageToken(token, filter string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(b) < 9 || b[0] != pageTokenVersion {
		return nil, errForeignToken
	}
	h := sha256.Sum256([]byte(filter))
	if !bytes.Equal(b[1:9], h[:8]) {
		return nil, errOtherFilters
	}
	return b[9:], nil
}

// Keyset is the position of a list ordered by time and then id (newest
// first, or oldest first). Time is kept in microseconds, Postgres's
// precision.
type Keyset struct {
	Time time.Time
	ID   uuid.UUID
}

// EncodeKeysetToken is EncodePageToken of a Keyset.
func EncodeKeysetToken(filter string, k Keyset) string {
	pos := binary.BigEndian.AppendUint64(make([]byte, 0, 24), uint64(k.Time.UnixMicro())) //nolint:gosec // round-trips through int64
	return EncodePageToken(filter, append(pos, k.ID[:]...))
}

// DecodeKeysetToken is DecodePageToken of a Keyset.
func DecodeKeysetToken(token, filter string) (Keyset, error) {
	pos, err := DecodePageToken(token, filter)
	if err != nil {
		return Keyset{}, err
	}
	if len(pos) != 24 {
		return Keyset{}, errForeignToken
	}
	id, err := uuid.FromBytes(pos[8:])
	if err != nil {
		return Keyset{}, errForeignToken
	}
	t := time.UnixMicro(int64(binary.BigEndian.Uint64(pos[:8]))).UTC() //nolint:gosec // written from an int64
	return Keyset{Time: t, ID: id}, nil
}
