// Package pgdbtest gives each test its own migrated PostgreSQL database,
// cheaply: the migrations run once into a template database named by a hash
// of their content, and each test clones it with CREATE DATABASE … TEMPLATE.
//
// Tests use the real server at RAPPORT_TEST_DATABASE_URL (default: the local
// trust-auth server on 127.0.0.1:5432). `make test` starts one when none
// answers. A test that cannot reach it fails; it never skips, so a missing
// database cannot pass for a green run.
package pgdbtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

// EnvURL names the variable holding the admin connection URL for tests.
const EnvURL = "RAPPORT_TEST_DATABASE_URL"

const defaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// Spec is one service schema and its migrations.
type Spec struct {
	Schema     string
	Migrations fs.FS // nil: platform tables only
}

// AdminURL is the URL of the server's maintenance database.
func AdminURL() string {
	if u := os.Getenv(EnvURL); u != "" {
		return u
	}
	return defaultURL
}

// WithDatabase returns base with its database name replaced.
func WithDatabase(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", fmt.Errorf("parse %s: %w", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String(), nil
}

var templates sync.Map // template name -> *sync.Once-guarded result

type templateResult struct {
	once sync.Once
	err  error
}

// NewDatabase creates a fresh database holding every spec's schema, migrated,
// and returns its URL. It is dropped when the test ends.
func NewDatabase(tb testing.TB, specs ...Spec) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tpl, err := templateName(specs)
	if err != nil {
		tb.Fatalf("pgdbtest: %v", err)
	}
	v, _ := templates.LoadOrStore(tpl, &templateResult{})
	res := v.(*templateResult)
	res.once.Do(func() { res.err = ensureTemplate(ctx, tpl, specs) })
	if res.err != nil {
		tb.Fatalf("pgdbtest: template %s: %v", tpl, res.err)
	}

	name := "rapport_test_" + randomHex(8)
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("pgdbtest: connect to %s (is PostgreSQL running? `make test` starts one): %v", EnvURL, err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, tpl)); err != nil {
		tb.Fatalf("pgdbtest: clone %s: %v", tpl, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			tb.Errorf("pgdbtest: drop %s: %v", name, err)
			return
		}
		defer func() { _ = c.Close(context.Background()) }()
		if _, err := c.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name)); err != nil {
			tb.Errorf("pgdbtest: drop %s: %v", name, err)
		}
	})
	dbURL, err := WithDatabase(AdminURL(), name)
	if err != nil {
		tb.Fatalf("pgdbtest: %v", err)
	}
	return dbURL
}

// NewPool creates a fresh migrated database for spec and returns a pool bound
// to spec.Schema, closed when the test ends.
func NewPool(tb testing.TB, spec Spec) *pgxpool.Pool {
	tb.Helper()
	return Pool(tb, NewDatabase(tb, spec), spec.Schema)
}

// Pool opens a pool on dbURL bound to schema, closed when the test ends
// (see Open and ClosePool: a connection never released fails the test
// instead of hanging it).
func Pool(tb testing.TB, dbURL, schema string) *pgxpool.Pool {
	tb.Helper()
	return Open(tb, pgdb.Config{URL: dbURL, Schema: schema})
}

// templateName hashes the schema names and every migration file, platform
// ones included, so a changed migration gets a new template and a stale one
// is never cloned.
func templateName(specs []Spec) (string, error) {
	h := sha256.New()
	if err := hashFS(h, pgdb.PlatformMigrations()); err != nil {
		return "", err
	}
	for _, s := range specs {
		fmt.Fprintf(h, "schema:%s\n", s.Schema)
		if s.Migrations != nil {
			if err := hashFS(h, s.Migrations); err != nil {
				return "", err
			}
		}
	}
	return "rapport_tpl_" + hex.EncodeToString(h.Sum(nil))[:16], nil
}

func hashFS(h interface{ Write([]byte) (int, error) }, fsys fs.FS) error {
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			names = append(names, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("hash migrations: %w", err)
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return fmt.Errorf("hash migrations: %w", err)
		}
		fmt.Fprintf(h, "%s:%d\n", n, len(b))
		_, _ = h.Write(b)
	}
	return nil
}

// ensureTemplate builds the template once per server. Test binaries of
// different packages run at the same time, so the check and the build happen
// under an advisory lock on the admin connection.
func ensureTemplate(ctx context.Context, tpl string, specs []Spec) error {
	admin, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return fmt.Errorf("connect to %s (is PostgreSQL running? `make test` starts one): %w", EnvURL, err)
	}
	defer func() { _ = admin.Close(context.Background()) }()
	key := pgdb.LockKey("rapport.pgdbtest." + tpl)
	if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer func() { _, _ = admin.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", key) }()

	var exists bool
	if err := admin.QueryRow(ctx,
		"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1 AND datistemplate)", tpl).Scan(&exists); err != nil {
		return fmt.Errorf("look up template: %w", err)
	}
	if exists {
		return nil
	}
	// A half-built template from a crashed run is not marked datistemplate.
	if _, err := admin.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", tpl)); err != nil {
		return fmt.Errorf("drop stale template: %w", err)
	}
	if _, err := admin.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s", tpl)); err != nil {
		return fmt.Errorf("create template: %w", err)
	}
	tplURL, err := WithDatabase(AdminURL(), tpl)
	if err != nil {
		return err
	}
	for _, s := range specs {
		pool, err := pgdb.Open(ctx, pgdb.Config{URL: tplURL, Schema: s.Schema})
		if err != nil {
			return err
		}
		err = pgdb.Migrate(ctx, pool, s.Migrations, nil)
		pool.Close()
		if err != nil {
			return err
		}
	}
	// Marking it a template also keeps anyone from dropping it by accident;
	// cloning needs no other session connected to it.
	if _, err := admin.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s WITH IS_TEMPLATE true ALLOW_CONNECTIONS false", tpl)); err != nil {
		return fmt.Errorf("mark template: %w", err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
