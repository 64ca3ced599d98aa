package apikey_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/apikey"
	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// The JWT fallback of these tests accepts two fixed admin tokens, one per
// tenant; a real JWT verifier is authn's business and tested there.
const (
	tenantA     = "0190a000-0000-7000-8000-00000000000a"
	tenantB     = "0190b000-0000-7000-8000-00000000000b"
	adminTokenA = "test-admin-token-a"
	adminTokenB = "test-admin-token-b"
	adminA      = "admin@a"
	adminB      = "admin@b"
)

var spec = pgdbtest.Spec{Schema: apikey.Schema, Migrations: apikey.Migrations()}

type testBundle struct {
	dbURL    string
	pool     *pgxpool.Pool
	clock    *grpcxtest.Clock
	verifier *apikey.Verifier
	client   accessv1.AccessServiceClient
	logs     *grpcxtest.LogBuffer
	// queries counts statements by sqlc query name ("APIKeyLookup").
	queries *queryCounter
	// jwtCalls counts calls the JWT fallback saw.
	jwtCalls atomic.Int64
}

type setupOpts struct {
	cacheTTL time.Duration // 0: the default
}

func setup(t *testing.T, opts *setupOpts) *testBundle {
	t.Helper()
	if opts == nil {
		opts = &setupOpts{}
	}
	b := &testBundle{
		dbURL:   pgdbtest.NewDatabase(t, spec),
		clock:   grpcxtest.NewClock(time.Now().UTC()),
		logs:    &grpcxtest.LogBuffer{},
		queries: &queryCounter{},
	}
	pcfg, err := pgdb.PoolConfig(pgdb.Config{URL: b.dbURL, Schema: apikey.Schema})
	require.NoError(t, err)
	pcfg.ConnConfig.Tracer = b.queries
	b.pool, err = pgxpool.NewWithConfig(context.Background(), pcfg)
	require.NoError(t, err)
	t.Cleanup(b.pool.Close)

	logger := slog.New(slog.NewJSONHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b.verifier = apikey.NewVerifier(b.pool, apikey.VerifierConfig{CacheTTL: opts.cacheTTL, Now: b.clock.Now, Logger: logger})
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- b.verifier.Run(runCtx) }()
	t.Cleanup(func() {
		stopRun()
		require.NoError(t, <-ran)
	})

	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		Logger:    logger,
		AuthFunc:  apikey.AuthFunc(b.jwt, b.verifier),
		Authorize: (&authz.Policy{}).Authorize,
	})
	require.NoError(t, err)
	apikey.NewServer(b.pool, apikey.ServerConfig{Logger: logger, Now: b.clock.Now}).Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	b.client = accessv1.NewAccessServiceClient(conn)
	return b
}

// jwt stands in for the JWT verifier's AuthFunc.
func (b *testBundle) jwt(ctx context.Context) (context.Context, error) {
	b.jwtCalls.Add(1)
	tok, err := auth.AuthFromMD(ctx, "bearer")
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, "missing or invalid bearer token")
	}
	switch tok {
	case adminTokenA:
		return authn.NewContext(ctx, authn.Principal{Subject: adminA, TenantID: tenantA, Roles: []string{"admin"}}), nil
	case adminTokenB:
		return authn.NewContext(ctx, authn.Principal{Subject: adminB, TenantID: tenantB, Roles: []string{"admin"}}), nil
	}
	return nil, status.Error(codes.Unauthenticated, "missing or invalid bearer token")
}

// bearer returns an outgoing context carrying token.
func bearer(token string) context.Context {
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+token)
}

// createKey creates a key in tenant A (as its admin) with roles.
func (b *testBundle) createKey(tb testing.TB, roles ...accessv1.Role) *accessv1.CreateApiKeyResponse {
	tb.Helper()
	return b.createKeyAs(tb, bearer(adminTokenA), &accessv1.ApiKey{DisplayName: "test key", Roles: roles})
}

func (b *testBundle) createKeyAs(tb testing.TB, ctx context.Context, k *accessv1.ApiKey) *accessv1.CreateApiKeyResponse {
	tb.Helper()
	resp, err := b.client.CreateApiKey(ctx, &accessv1.CreateApiKeyRequest{ApiKey: k})
	require.NoError(tb, err)
	return resp
}

// get reads a key of tenant A as its admin.
func (b *testBundle) get(tb testing.TB, id string) *accessv1.ApiKey {
	tb.Helper()
	k, err := b.client.GetApiKey(bearer(adminTokenA), &accessv1.GetApiKeyRequest{Id: id})
	require.NoError(tb, err)
	return k
}

// useKey makes one call authenticated by key and returns its code. The call
// (ListApiKeys) needs the admin role, so a refused role shows as
// PERMISSION_DENIED, a refused key as UNAUTHENTICATED.
func (b *testBundle) useKey(key string) codes.Code {
	_, err := b.client.ListApiKeys(bearer(key), &accessv1.ListApiKeysRequest{PageSize: 1})
	return status.Code(err)
}

// secretOf is the secret part of a key: what must never be stored or shown.
func secretOf(key string) string { return key[len("rk_")+32+1:] }

// requireField asserts err is INVALID_ARGUMENT with a violation on a field
// starting with field.
func requireField(tb testing.TB, err error, field string) {
	tb.Helper()
	require.Equal(tb, codes.InvalidArgument, status.Code(err), "%v", err)
	fields := grpcxtest.ViolationFields(err)
	for _, f := range fields {
		if strings.HasPrefix(f, field) {
			return
		}
	}
	tb.Fatalf("no violation on %s; got %v (%v)", field, fields, err)
}

// queryCounter is a pgx tracer counting statements by their sqlc name.
type queryCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if _, rest, ok := strings.Cut(d.SQL, "-- name: "); ok {
		name, _, _ := strings.Cut(rest, " ")
		q.mu.Lock()
		if q.n == nil {
			q.n = map[string]int{}
		}
		q.n[name]++
		q.mu.Unlock()
	}
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (q *queryCounter) count(name string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n[name]
}
