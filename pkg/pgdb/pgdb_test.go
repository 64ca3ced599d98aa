package pgdb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

var widgets = fstest.MapFS{
	"00001_widgets.sql": {Data: []byte(`-- +goose Up
CREATE TABLE widgets (id int PRIMARY KEY, n int NOT NULL CHECK (n >= 0));
-- +goose Down
DROP TABLE widgets;
`)},
}

func TestMigrate(t *testing.T) {
	t.Parallel()

	t.Run("AppliesIntoTheServiceSchemaOnlyOnce", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		dbURL := pgdbtest.NewDatabase(t)
		pool := pgdbtest.Pool(t, dbURL, "widgetsvc")
		require.NoError(t, pgdb.Migrate(ctx, pool, widgets, nil))
		require.NoError(t, pgdb.Migrate(ctx, pool, widgets, nil), "a second run applies nothing and succeeds")

		var tables []string
		rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
			WHERE table_schema = 'widgetsvc' ORDER BY table_name`)
		require.NoError(t, err)
		tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Equal(t, []string{"dead_letters", "goose_db_version", "idempotency_keys", "inbox",
			"outbox", "platform_db_version", "widgets"}, tables)

		var applied int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&applied))
		require.Equal(t, 1, applied)
	})

	t.Run("ConcurrentReplicasMigrateOnce", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		dbURL := pgdbtest.NewDatabase(t)
		errs := make(chan error, 4)
		for range 4 {
			go func() {
				pool, err := pgdb.Open(ctx, pgdb.Config{URL: dbURL, Schema: "racing"})
				if err != nil {
					errs <- err
					return
				}
				defer pool.Close()
				errs <- pgdb.Migrate(ctx, pool, widgets, nil)
			}()
		}
		for range 4 {
			require.NoError(t, <-errs)
		}
	})

	t.Run("RefusesSchemaNamesThatNeedQuoting", func(t *testing.T) {
		t.Parallel()
		_, err := pgdb.Open(context.Background(), pgdb.Config{URL: pgdbtest.AdminURL(), Schema: `x"; DROP`})
		require.ErrorContains(t, err, "schema")
	})
}

func TestInTxAndClassify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: "widgetsvc", Migrations: widgets})

	t.Run("CommitsOnNil", func(t *testing.T) {
		err := pgdb.InTx(ctx, pool, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "INSERT INTO widgets VALUES (1, 1)")
			return err
		})
		require.NoError(t, err)
		var n int
		require.NoError(t, pool.QueryRow(ctx, "SELECT n FROM widgets WHERE id = 1").Scan(&n))
		require.Equal(t, 1, n)
	})

	t.Run("RollsBackOnError", func(t *testing.T) {
		boom := errors.New("boom")
		err := pgdb.InTx(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "INSERT INTO widgets VALUES (2, 1)"); err != nil {
				return err
			}
			return boom
		})
		require.ErrorIs(t, err, boom)
		var exists bool
		require.NoError(t, pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM widgets WHERE id = 2)").Scan(&exists))
		require.False(t, exists)
	})

	t.Run("ClassifiesBySQLSTATE", func(t *testing.T) {
		_, err := pool.Exec(ctx, "INSERT INTO widgets VALUES (1, 1)")
		require.ErrorIs(t, pgdb.Classify(err), pgdb.ErrAlreadyExists)
		require.Equal(t, "widgets_pkey", pgdb.ConstraintName(err))

		_, err = pool.Exec(ctx, "INSERT INTO widgets VALUES (3, -1)")
		require.ErrorIs(t, pgdb.Classify(err), pgdb.ErrCheckViolation)

		err = pool.QueryRow(ctx, "SELECT n FROM widgets WHERE id = 404").Scan(new(int))
		require.ErrorIs(t, pgdb.Classify(err), pgdb.ErrNotFound)

		other := errors.New("other")
		require.Same(t, other, pgdb.Classify(other))
	})

	t.Run("SearchPathIsTheServiceSchema", func(t *testing.T) {
		var sp string
		require.NoError(t, pool.QueryRow(ctx, "SHOW search_path").Scan(&sp))
		require.Equal(t, "widgetsvc", sp)
	})
}

// TestPoolSize: a pool gets DefaultMaxConns unless the config or the URL
// sizes it.
func TestPoolSize(t *testing.T) {
	t.Parallel()
	dbURL := pgdbtest.NewDatabase(t)
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	for _, c := range []struct {
		name string
		cfg  pgdb.Config
		want int32
	}{
		{"Default", pgdb.Config{URL: dbURL, Schema: "sized"}, pgdb.DefaultMaxConns},
		{"FromConfig", pgdb.Config{URL: dbURL, Schema: "sized", MaxConns: 3}, 3},
		{"FromURL", pgdb.Config{URL: dbURL + sep + "pool_max_conns=2", Schema: "sized"}, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			pool, err := pgdb.Open(context.Background(), c.cfg)
			require.NoError(t, err)
			t.Cleanup(func() { pgdbtest.ClosePool(t, pool) })
			require.Equal(t, c.want, pool.Config().MaxConns)
		})
	}
}
