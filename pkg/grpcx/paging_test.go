package grpcx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/grpcx"
)

func TestPageSize(t *testing.T) {
	t.Parallel()
	for requested, want := range map[int32]int{0: 50, 1: 1, 50: 50, 500: 500, 501: 500, 100000: 500} {
		require.Equal(t, want, grpcx.PageSize(requested), "requested %d", requested)
	}
}
