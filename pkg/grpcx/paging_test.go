package grpcx_test

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/grpcx"
)

func TestPageSize(t *testing.T) {
	t.Parallel()
	for requested, want := range map[int32]int{0: 50, 1: 1, 50: 50, 500: 500, 501: 500, 100000: 500} {
		require.Equal(t, want, grpcx.PageSize(requested), "requested %d", requested)
	}
}

func TestPageTokens(t *testing.T) {
	t.Parallel()
	k := grpcx.Keyset{Time: time.Date(2026, 11, 24, 8, 30, 0, 123456000, time.UTC), ID: uuid.New()}
	tok := grpcx.EncodeKeysetToken("purchases:c1", k)
	got, err := grpcx.DecodeKeysetToken(tok, "purchases:c1")
	require.NoError(t, err)
	require.Equal(t, k, got, "round trip, microseconds kept")

	_, err = grpcx.DecodeKeysetToken(tok, "purchases:c2")
	require.ErrorContains(t, err, "other filters", "a token of another list or filter is refused")
	for _, bad := range []string{"", "!!", "AQ", tok[:len(tok)-2], grpcx.EncodePageToken("purchases:c1", []byte("short"))} {
		_, err = grpcx.DecodeKeysetToken(bad, "purchases:c1")
		require.ErrorContains(t, err, "not a token from this API", "%q", bad)
	}

	pos, err := grpcx.DecodePageToken(grpcx.EncodePageToken("templates", []byte("welcome")), "templates")
	require.NoError(t, err)
	require.Equal(t, []byte("welcome"), pos)
}
