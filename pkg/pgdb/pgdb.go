// Package pgdb owns how a Rapport service talks to PostgreSQL: one pgx pool per
// service whose search_path is the service's own schema, the one transaction
// shape, goose migrations embedded in each service, and the classification of
// database errors by SQLSTATE.
//
// It must not know any service's tables. The platform tables that every
// service carries (outbox, inbox, dead letters, idempotency keys) are migrated
// here because their owners (packages outbox, inbox and idem) are shared.
package pgdb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultMaxConns is a pool's size when neither Config.MaxConns nor the
// URL sets one (or at least pgxpool's default, which grows with the CPUs).
const DefaultMaxConns = 10

// Config says where a service's data lives.
type Config struct {
	// URL is a libpq connection string or URL.
	URL string
	// Schema is the service's schema; it becomes the pool's search_path, so
	// unqualified names in queries and migrations resolve inside it.
	Schema string
	// MaxConns bounds the pool. Zero means pool_max_conns from the URL if
	// it has one, else DefaultMaxConns (pgxpool's own default, 4 on two
	// cores, is too few for a service whose consumers, relay and schedules
	// each take a connection while API calls want theirs).
	MaxConns int32
	// StatementTimeout bounds every statement; zero means 30 s. Long
	// transactions delay the outbox and hold locks, so nothing runs unbounded.
	StatementTimeout time.Duration
	// IdleInTxTimeout ends sessions left idle inside a transaction; zero means 60 s.
	IdleInTxTimeout time.Duration
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidateSchema refuses schema names that would need quoting; they are
// interpolated into DDL and advisory-lock keys.
func ValidateSchema(schema string) error {
	if !schemaName.MatchString(schema) {
		return fmt.Errorf("schema %q: must match %s", schema, schemaName)
	}
	return nil
}

// Open returns a pool bound to cfg.Schema. It does not create the schema:
// Migrate does, so a pool can be opened before the first migration.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pcfg, err := PoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	return pool, nil
}

// PoolConfig builds the pgxpool configuration Open uses; tests and benchmarks
// that need a tweaked pool start from it.
func PoolConfig(cfg Config) (*pgxpool.Config, error) {
	if err := ValidateSchema(cfg.Schema); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// The parse error can echo the URL, password included.
		return nil, errors.New("parse database url: invalid connection string")
	}
	switch {
	case cfg.MaxConns > 0:
		pcfg.MaxConns = cfg.MaxConns
	case !strings.Contains(cfg.URL, "pool_max_conns") && pcfg.MaxConns < DefaultMaxConns:
		pcfg.MaxConns = DefaultMaxConns
	}
	// The health ping of an idle connection at Acquire is unbounded by
	// default: on a dead network it would hold a connection (and the pool's
	// Close) for as long as the kernel takes to give up.
	if pcfg.PingTimeout == 0 {
		pcfg.PingTimeout = 5 * time.Second
	}
	st := cfg.StatementTimeout
	if st == 0 {
		st = 30 * time.Second
	}
	idle := cfg.IdleInTxTimeout
	if idle == 0 {
		idle = 60 * time.Second
	}
	rp := pcfg.ConnConfig.RuntimeParams
	rp["search_path"] = cfg.Schema
	rp["statement_timeout"] = fmt.Sprint(st.Milliseconds())
	rp["idle_in_transaction_session_timeout"] = fmt.Sprint(idle.Milliseconds())
	rp["timezone"] = "UTC"
	if rp["application_name"] == "" {
		rp["application_name"] = "rapport-" + cfg.Schema
	}
	return pcfg, nil
}

// Beginner is what InTx needs: a pool, a connection or an outer transaction
// (which then opens a savepoint).
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction and commits when fn returns nil. A failed
// commit is returned as an error, never read as success.
func InTx(ctx context.Context, db Beginner, fn func(tx pgx.Tx) error) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", Classify(err))
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", Classify(err))
	}
	return nil
}
