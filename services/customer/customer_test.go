package customer_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer"
)

func TestMasterKey(t *testing.T) {
	t.Parallel()

	t.Run("NewRefusesAMissingOrShortKey", func(t *testing.T) {
		t.Parallel()
		deps := service.Deps{Pool: &pgxpool.Pool{}}
		_, err := customer.New(context.Background(), deps, customer.Config{})
		require.ErrorContains(t, err, "RAPPORT_MASTER_KEY")
		_, err = customer.New(context.Background(), deps, customer.Config{MasterKey: make([]byte, 16)})
		require.Error(t, err)
	})

	t.Run("ParsesBase64InEitherAlphabet", func(t *testing.T) {
		t.Parallel()
		k, err := customer.GenerateMasterKey()
		require.NoError(t, err)
		require.Len(t, k, customer.MasterKeySize)
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			got, err := customer.ParseMasterKey(" " + enc.EncodeToString(k) + "\n")
			require.NoError(t, err)
			require.Equal(t, k, got)
		}
	})

	t.Run("RefusesOtherLengthsAndNonBase64WithoutEchoingIt", func(t *testing.T) {
		t.Parallel()
		_, err := customer.ParseMasterKey(base64.StdEncoding.EncodeToString(make([]byte, 31)))
		require.ErrorContains(t, err, "32 bytes")
		_, err = customer.ParseMasterKey("not*base64*secretvalue")
		require.Error(t, err)
		require.NotContains(t, err.Error(), "secretvalue")
	})

	t.Run("TheDevKeyIsCreatedOnceAndKeptPrivate", func(t *testing.T) {
		t.Parallel()
		dir := filepath.Join(t.TempDir(), "dev-keys")
		keys := make([][]byte, 8)
		var wg sync.WaitGroup
		for i := range keys {
			wg.Go(func() {
				k, err := customer.LoadOrCreateDevMasterKey(dir)
				if err != nil {
					t.Error(err)
				}
				keys[i] = k
			})
		}
		wg.Wait()
		for _, k := range keys {
			require.Len(t, k, customer.MasterKeySize)
			require.True(t, bytes.Equal(keys[0], k), "processes starting together agree on one key")
		}
		again, err := customer.LoadOrCreateDevMasterKey(dir)
		require.NoError(t, err)
		require.Equal(t, keys[0], again, "a restart reads the same key")
		fi, err := os.Stat(filepath.Join(dir, "master.key"))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		require.Len(t, entries, 1, "no temporary files are left behind")
	})
}
