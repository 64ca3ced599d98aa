package apikey

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/apikey/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/grpcx"
)

// AuthFailureLogConfig configures an AuthFailureLog; zero values are the
// defaults.
type AuthFailureLogConfig struct {
	Logger *slog.Logger
	// Buffer bounds the refusals waiting to be written; 0 means 4096.
	Buffer int
	// Batch bounds the rows of one insert; 0 means 500.
	Batch int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// AuthFailureLog writes every refused call to the access schema's
// auth_failures table. Record is grpcx.ServerConfig.OnAuthFailure; Run
// writes what Record queued, in batches.
//
// Record never blocks the refused call and never touches the database: a
// flood of bad credentials must not become a flood of inserts on the
// calls' goroutines. It queues into a bounded buffer; Run drains it with one
// INSERT per batch, and prunes rows older than AuthFailureRetention. When
// the buffer is full (a flood faster than the
// database), a refusal is dropped, counted (Dropped) and the count logged:
// the log is exact up to that bound. On shutdown Run writes what is queued.
type AuthFailureLog struct {
	pool    *pgxpool.Pool
	q       *dbgen.Queries
	log     *slog.Logger
	now     func() time.Time
	batch   int
	queue   chan authFailure
	dropped atomic.Uint64
	written atomic.Int64 // rows written
}

type authFailure struct {
	id         uuid.UUID
	time       time.Time
	method     string
	code       string
	requestID  string
	credential string
	apiKeyID   string
	tenantID   string
	subject    string
}

// NewAuthFailureLog returns a log writing to pool (the access schema's).
func NewAuthFailureLog(pool *pgxpool.Pool, cfg AuthFailureLogConfig) *AuthFailureLog {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 4096
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 500
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &AuthFailureLog{pool: pool, q: dbgen.New(), log: cfg.Logger, now: cfg.Now, batch: cfg.Batch,
		queue: make(chan authFailure, cfg.Buffer)}
}

// Record queues one refusal; it is grpcx.ServerConfig.OnAuthFailure.
func (l *AuthFailureLog) Record(ctx context.Context, fullMethod string, err error) {
	f := authFailure{id: uuid.Must(uuid.NewV7()), time: l.now().UTC(), method: fullMethod,
		requestID: grpcx.RequestID(ctx), credential: "none"}
	switch status.Code(err) {
	case codes.Unauthenticated:
		f.code = codeUnauthenticated
	case codes.PermissionDenied:
		f.code = codePermissionDenied
		if p, ok := authn.FromContext(ctx); ok {
			f.tenantID, f.subject = p.TenantID, p.Subject
		}
	default:
		return
	}
	if f.method == "" {
		f.method = "unknown"
	}
	if raw, err := auth.AuthFromMD(ctx, "bearer"); err == nil && raw != "" {
		f.credential = "jwt"
		if strings.HasPrefix(raw, Prefix) {
			f.credential = "api_key"
			if id, _, err := parseKey(raw); err == nil {
				f.apiKeyID = id.String() // the public half only
			}
		}
	}
	if _, err := uuid.Parse(f.tenantID); err != nil {
		f.tenantID = ""
	}
	select {
	case l.queue <- f:
	default:
		l.dropped.Add(1)
	}
}

// Dropped is how many refusals were not logged because the buffer was full.
func (l *AuthFailureLog) Dropped() uint64 { return l.dropped.Load() }

// Written is how many refusals were written (tests).
func (l *AuthFailureLog) Written() int64 { return l.written.Load() }

// Run writes queued refusals until ctx ends, then writes what is left.
func (l *AuthFailureLog) Run(ctx context.Context) error {
	var reported uint64
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	l.Prune(ctx)
	for {
		select {
		case <-prune.C:
			l.Prune(ctx)
		case <-ctx.Done():
			// Drain what is queued, bounded: the process is stopping.
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			for {
				batch := l.take(nil)
				if len(batch) == 0 {
					return nil
				}
				l.write(dctx, batch)
			}
		case f := <-l.queue:
			l.write(ctx, l.take([]authFailure{f}))
			if d := l.dropped.Load(); d != reported {
				l.log.WarnContext(ctx, "auth failures dropped: buffer full", "dropped_total", d)
				reported = d
			}
		}
	}
}

// AuthFailureRetention is how long refused calls are kept; the table's
// trigger refuses to delete anything younger.
const AuthFailureRetention = 90 * 24 * time.Hour

// Prune deletes the refusals older than AuthFailureRetention, in batches,
// and returns how many went. Run calls it hourly; a failure is logged and
// retried at the next hour.
func (l *AuthFailureLog) Prune(ctx context.Context) int64 {
	var total int64
	for ctx.Err() == nil {
		n, err := l.q.AuthFailuresPrune(ctx, l.pool)
		if err != nil {
			if ctx.Err() == nil {
				l.log.WarnContext(ctx, "prune auth failures", "err", err)
			}
			return total
		}
		total += n
		if n == 0 {
			return total
		}
	}
	return total
}

// take adds what is queued to batch, up to the batch size, without waiting.
func (l *AuthFailureLog) take(batch []authFailure) []authFailure {
	for len(batch) < l.batch {
		select {
		case f := <-l.queue:
			batch = append(batch, f)
		default:
			return batch
		}
	}
	return batch
}

func (l *AuthFailureLog) write(ctx context.Context, batch []authFailure) {
	p := dbgen.AuthFailuresInsertParams{}
	for _, f := range batch {
		p.Ids = append(p.Ids, f.id)
		p.OccurTimes = append(p.OccurTimes, f.time)
		p.Methods = append(p.Methods, f.method)
		p.Codes = append(p.Codes, f.code)
		p.RequestIds = append(p.RequestIds, f.requestID)
		p.Credentials = append(p.Credentials, f.credential)
		p.ApiKeyIds = append(p.ApiKeyIds, f.apiKeyID)
		p.TenantIds = append(p.TenantIds, f.tenantID)
		p.Subjects = append(p.Subjects, f.subject)
	}
	if err := l.q.AuthFailuresInsert(ctx, l.pool, p); err != nil {
		l.log.ErrorContext(ctx, "write auth failures", "rows", len(batch), "error", err.Error())
		return
	}
	l.written.Add(int64(len(batch)))
}
