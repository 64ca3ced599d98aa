package care

import (
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
)

// Page tokens are grpcx keyset tokens: the filter's fingerprint and the
// (time, id) position of the page's last row.

func encodePageToken(filter string, c store.Cursor) string {
	return grpcx.EncodeKeysetToken(filter, grpcx.Keyset(c))
}

func decodePageToken(s, filter string) (store.Cursor, error) {
	k, err := grpcx.DecodeKeysetToken(s, filter)
	return store.Cursor(k), err
}
