package pgdb

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

//go:embed migrations/*.sql
var platformFS embed.FS

// Version tables, both inside the service's schema. The platform tables get
// their own so a service's numbering never collides with ours.
const (
	platformVersionTable = "platform_db_version"
	serviceVersionTable  = "goose_db_version"
)

// Migrate brings the pool's schema up to date: it creates the schema, applies
// the platform migrations (outbox, inbox, dead letters, idempotency keys), then
// the service's own migrations from service (a directory of goose SQL files;
// nil for none). Replicas starting together serialise on an advisory lock
// keyed by the schema, so each migration runs once.
func Migrate(ctx context.Context, pool *pgxpool.Pool, service fs.FS, logger *slog.Logger) error {
	schema := pool.Config().ConnConfig.RuntimeParams["search_path"]
	if err := ValidateSchema(schema); err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire migration lock connection: %w", err)
	}
	defer conn.Release()
	key := lockKey("rapport.migrate." + schema)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("take migration lock: %w", err)
	}
	defer func() {
		// Unlock on a context that outlives a cancelled ctx; the lock is
		// session-scoped and would otherwise stay with the pooled connection.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", key)
	}()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+schema); err != nil {
		return fmt.Errorf("create schema %s: %w", schema, err)
	}

	db := stdlib.OpenDBFromPool(pool)
	defer db.Close()

	platform, err := fs.Sub(platformFS, "migrations")
	if err != nil {
		return fmt.Errorf("platform migrations: %w", err)
	}
	steps := []struct {
		name  string
		fsys  fs.FS
		table string
	}{
		{"platform", platform, platformVersionTable},
		{"service", service, serviceVersionTable},
	}
	for _, s := range steps {
		if s.fsys == nil {
			continue
		}
		opts := []goose.ProviderOption{goose.WithTableName(s.table), goose.WithDisableGlobalRegistry(true)}
		p, err := goose.NewProvider(goose.DialectPostgres, db, s.fsys, opts...)
		if err != nil {
			return fmt.Errorf("%s migrations of %s: %w", s.name, schema, err)
		}
		results, err := p.Up(ctx)
		if err != nil {
			return fmt.Errorf("apply %s migrations of %s: %w", s.name, schema, err)
		}
		if logger != nil {
			for _, r := range results {
				logger.InfoContext(ctx, "migration applied", "schema", schema, "set", s.name,
					"version", r.Source.Version, "duration", r.Duration)
			}
		}
	}
	return nil
}

// lockKey turns a name into an advisory-lock key. Collisions only make two
// unrelated lockers wait for each other, never break correctness.
func lockKey(name string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(name))
	return int64(h.Sum64()) //nolint:gosec // wrapping is intended
}

// LockKey exposes lockKey for other packages' advisory locks (the outbox
// relay's leader election), so every key in the system is built one way.
func LockKey(name string) int64 { return lockKey(name) }

// PlatformMigrations returns the platform migration files, for tools that
// need their content (the test template's cache key).
func PlatformMigrations() fs.FS {
	sub, err := fs.Sub(platformFS, "migrations")
	if err != nil {
		// fs.Sub fails only on an invalid literal path.
		return platformFS
	}
	return sub
}
