package natsx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
)

// TestEnsureStreamExists: a consumer starting before the stream's owner
// creates it with the owner's configuration; the owner's EnsureStream then
// changes nothing, and a stream the owner configured is never touched.
func TestEnsureStreamExists(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := t.Context()

	require.NoError(t, natsx.EnsureStreamExists(ctx, js, "survey", 1))
	require.NoError(t, natsx.EnsureStreamExists(ctx, js, "survey", 1), "twice is harmless")
	st, err := js.Stream(ctx, "RAPPORT_SURVEY")
	require.NoError(t, err)
	created := st.CachedInfo().Config
	require.NoError(t, natsx.CheckStreamConfig(created))

	owned, err := natsx.EnsureStream(ctx, js, "survey", 1)
	require.NoError(t, err)
	info, err := owned.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, created, info.Config, "the owner's EnsureStream finds its own configuration")

	// An existing stream is left as it is, even when asked with other
	// replicas: its owner decides.
	require.NoError(t, natsx.EnsureStreamExists(ctx, js, "survey", 3))
	info, err = owned.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, info.Config.Replicas)

	require.Error(t, natsx.EnsureStreamExists(ctx, js, "Bad.Name", 1), "service names are checked")
}
