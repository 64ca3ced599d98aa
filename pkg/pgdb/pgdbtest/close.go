package pgdbtest

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rapporthq/rapport/pkg/pgdb"
)

// CloseTimeout bounds a test pool's Close. pgxpool.Pool.Close waits, without
// limit, for every acquired connection to come back; one that was acquired
// and never released nor hijacked would hang the test binary until go test's
// -timeout, and the dump printed then does not say who acquired it. pgx
// bounds a connection's teardown at 15 s, so past this bound Close is, in
// practice, waiting for a connection someone still holds or has lost.
const CloseTimeout = 20 * time.Second

// MaxConns is the size of a test pool that nothing else sizes.
const MaxConns = 4

// Open opens a pool like pgdb.Open and closes it with ClosePool when tb ends.
// It also records where each connection was acquired, so a connection that
// is never released is reported with the code that took it.
//
// Unless cfg or the URL sizes it, the pool has MaxConns connections, not
// pgdb.DefaultMaxConns: test packages run side by side, each with pools of
// its own, against one server's max_connections.
func Open(tb testing.TB, cfg pgdb.Config) *pgxpool.Pool {
	tb.Helper()
	if cfg.MaxConns == 0 && !strings.Contains(cfg.URL, "pool_max_conns") {
		cfg.MaxConns = MaxConns
	}
	pcfg, err := pgdb.PoolConfig(cfg)
	if err != nil {
		tb.Fatalf("pgdbtest: %v", err)
	}
	if pcfg.ConnConfig.Tracer == nil {
		pcfg.ConnConfig.Tracer = &acquireTracker{held: map[*pgx.Conn]acquisition{}}
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), pcfg)
	if err != nil {
		tb.Fatalf("pgdbtest: open pool: %v", err)
	}
	tb.Cleanup(func() { ClosePool(tb, pool) })
	return pool
}

// ClosePool closes pool, and fails tb instead of hanging if Close has not
// returned within CloseTimeout: the failure lists the goroutines inside pgx
// and, for a pool opened by Open, where each unreleased connection was
// acquired. Tests that open pools themselves should close them with it too,
// e.g. t.Cleanup(func() { pgdbtest.ClosePool(t, pool) }).
func ClosePool(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	if err := closeWithin(pool, CloseTimeout); err != nil {
		tb.Errorf("%v", err)
	}
}

// closeWithin closes pool and returns an error with the diagnosis if Close
// takes longer than timeout. Close then goes on in the background: a blocked
// Close cannot be interrupted, only reported.
func closeWithin(pool *pgxpool.Pool, timeout time.Duration) error {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		pool.Close()
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-done:
		return nil
	case <-timer.C:
	}

	var b strings.Builder
	st := pool.Stat()
	fmt.Fprintf(&b, "pgdbtest: pool.Close blocked: a connection was acquired and never released "+
		"(Close still waiting after %s; %d connection(s) acquired, %d total)\n",
		timeout, st.AcquiredConns(), st.TotalConns())
	if t, ok := pool.Config().ConnConfig.Tracer.(*acquireTracker); ok {
		t.report(&b, start)
	}
	b.WriteString("goroutines inside pgx (runtime/pprof goroutine profile, debug=2, filtered to stacks with a jackc/pgx or jackc/puddle frame):\n\n")
	b.WriteString(pgxGoroutines())
	return fmt.Errorf("%s", b.String())
}

// pgxGoroutines returns the stacks of the goroutines that run pgx or puddle
// code: the blocked Close, and whoever holds or is tearing down a connection.
func pgxGoroutines() string {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 2); err != nil {
		return fmt.Sprintf("(goroutine profile: %v)\n", err)
	}
	var out strings.Builder
	for g := range strings.SplitSeq(buf.String(), "\n\n") {
		if strings.Contains(g, "github.com/jackc/pgx/") || strings.Contains(g, "github.com/jackc/puddle/") {
			out.WriteString(strings.TrimSpace(g))
			out.WriteString("\n\n")
		}
	}
	if out.Len() == 0 {
		return "(none)\n"
	}
	return out.String()
}

// acquireTracker remembers where each connection currently out of the pool
// was acquired. It is the pool's tracer: pgxpool calls TraceAcquireEnd and
// TraceRelease; the query hooks do nothing. Hijack is not traced, so a
// hijacked connection stays listed; the report says so.
type acquireTracker struct {
	mu   sync.Mutex
	held map[*pgx.Conn]acquisition
}

type acquisition struct {
	at  time.Time
	pid uint32
	pcs []uintptr
}

func (t *acquireTracker) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	return ctx
}

func (t *acquireTracker) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (t *acquireTracker) TraceAcquireStart(ctx context.Context, _ *pgxpool.Pool, _ pgxpool.TraceAcquireStartData) context.Context {
	return ctx
}

func (t *acquireTracker) TraceAcquireEnd(_ context.Context, _ *pgxpool.Pool, data pgxpool.TraceAcquireEndData) {
	if data.Err != nil || data.Conn == nil {
		return
	}
	pcs := make([]uintptr, 32)
	// Skip runtime.Callers, this method and pgxpool's deferred call into it.
	pcs = pcs[:runtime.Callers(3, pcs)]
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held[data.Conn] = acquisition{at: time.Now(), pid: data.Conn.PgConn().PID(), pcs: pcs}
}

func (t *acquireTracker) TraceRelease(_ *pgxpool.Pool, data pgxpool.TraceReleaseData) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.held, data.Conn)
}

// report writes where the connections not released were acquired, grouped
// by call site, oldest site first. Only what was recorded at acquisition is
// read: a connection may be in use by another goroutine right now.
func (t *acquireTracker) report(b *strings.Builder, closeStart time.Time) {
	t.mu.Lock()
	entries := slices.Collect(maps.Values(t.held))
	t.mu.Unlock()
	slices.SortFunc(entries, func(x, y acquisition) int { return x.at.Compare(y.at) })

	type site struct {
		pcs          []uintptr
		pids         []uint32
		oldest, last time.Time
	}
	var sites []*site
	byStack := map[string]*site{}
	for _, e := range entries {
		key := fmt.Sprint(e.pcs)
		s, ok := byStack[key]
		if !ok {
			s = &site{pcs: e.pcs, oldest: e.at}
			byStack[key] = s
			sites = append(sites, s)
		}
		s.pids = append(s.pids, e.pid)
		s.last = e.at
	}

	fmt.Fprintf(b, "connections acquired and not released: %d, by call site "+
		"(Hijack is not traced: hijacked connections, which Close does not wait for, are counted too):\n", len(entries))
	for _, s := range sites {
		fmt.Fprintf(b, "  %d connection(s), backend pids %v, acquired %s to %s before Close, at:\n", len(s.pids), s.pids,
			closeStart.Sub(s.oldest).Round(time.Millisecond), closeStart.Sub(s.last).Round(time.Millisecond))
		frames := runtime.CallersFrames(s.pcs)
		for {
			f, more := frames.Next()
			fmt.Fprintf(b, "    %s\n        %s:%d\n", f.Function, f.File, f.Line)
			if !more {
				break
			}
		}
	}
	b.WriteString("\n")
}
