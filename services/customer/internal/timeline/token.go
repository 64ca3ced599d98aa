package timeline

import (
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// Page tokens are grpcx keyset tokens: the filter's fingerprint and the
// (time, id) position of the page's last row.

func encodePageToken(filter string, c store.Cursor) string {
	return grpcx.EncodeKeysetToken(filter, grpcx.Keyset(c))
}

// decodePageToken returns the position a request's page token holds: the
// zero Cursor (the start) without one, INVALID_ARGUMENT on page_token for a
// token of another list or other filters.
func decodePageToken(tok, filter string) (store.Cursor, error) {
	if tok == "" {
		return store.Cursor{}, nil
	}
	k, err := grpcx.DecodeKeysetToken(tok, filter)
	if err != nil {
		return store.Cursor{}, toStatus(&fieldError{field: "page_token", reason: err.Error()})
	}
	return store.Cursor(k), nil
}
