package apikey

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// TestAuthFailureLog (SEC-09): every call refused by authentication or
// authorization is one row of auth_failures, through the real chain, with
// the kind of credential but never the credential; the rows are immutable.
func TestAuthFailureLog(t *testing.T) {
	t.Parallel()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: Schema, Migrations: Migrations()})
	failures := NewAuthFailureLog(pool, AuthFailureLogConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- failures.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })

	tenant := uuid.NewString()
	// "Bearer agent" is a verified agent of tenant; anything else goes
	// through the API key verifier or is refused as a JWT would be.
	jwt := func(ctx context.Context) (context.Context, error) {
		if raw, err := auth.AuthFromMD(ctx, "bearer"); err == nil && raw == "agent" {
			return authn.NewContext(ctx, authn.Principal{TenantID: tenant, Subject: "agent-1", Roles: []string{"agent"}}), nil
		}
		return nil, status.Error(codes.Unauthenticated, unauthenticatedMessage)
	}
	srv, err := grpcx.NewServer(grpcx.ServerConfig{
		AuthFunc:      AuthFunc(jwt, NewVerifier(pool, VerifierConfig{})),
		Authorize:     (&authz.Policy{}).Authorize,
		OnAuthFailure: failures.Record,
	})
	require.NoError(t, err)
	NewServer(pool, ServerConfig{}).Register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	client := accessv1.NewAccessServiceClient(conn)

	keyID := uuid.Must(uuid.NewV7())
	unknownKey := formatKey(keyID, newSecret())
	call := func(token, requestID string) codes.Code {
		md := []string{grpcx.RequestIDHeader, requestID}
		if token != "" {
			md = append(md, "authorization", "Bearer "+token)
		}
		_, err := client.ListApiKeys(metadata.AppendToOutgoingContext(context.Background(), md...), &accessv1.ListApiKeysRequest{})
		return status.Code(err)
	}
	require.Equal(t, codes.Unauthenticated, call("", "r-none"))
	require.Equal(t, codes.Unauthenticated, call("eyJhbGciOi.not.valid", "r-jwt"))
	require.Equal(t, codes.Unauthenticated, call(unknownKey, "r-key"))
	require.Equal(t, codes.PermissionDenied, call("agent", "r-denied"))

	require.Eventually(t, func() bool { return failures.Written() == 4 }, 10*time.Second, 10*time.Millisecond)
	rows, err := pool.Query(context.Background(), `
		SELECT request_id, code, credential, coalesce(api_key_id::text, ''), coalesce(tenant_id::text, ''),
		       coalesce(subject, ''), method, row_to_json(f)::text
		FROM auth_failures f ORDER BY id`)
	require.NoError(t, err)
	type row struct{ requestID, code, credential, keyID, tenant, subject string }
	var got []row
	for rows.Next() {
		var r row
		var method, all string
		require.NoError(t, rows.Scan(&r.requestID, &r.code, &r.credential, &r.keyID, &r.tenant, &r.subject, &method, &all))
		require.Equal(t, accessv1.AccessService_ListApiKeys_FullMethodName, method)
		require.NotContains(t, all, unknownKey[len(Prefix)+idHexLen+1:], "never the secret")
		require.NotContains(t, all, "eyJhbGciOi", "never the token")
		got = append(got, r)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []row{
		{"r-none", "unauthenticated", "none", "", "", ""},
		{"r-jwt", "unauthenticated", "jwt", "", "", ""},
		{"r-key", "unauthenticated", "api_key", keyID.String(), "", ""},
		{"r-denied", "permission_denied", "jwt", "", tenant, "agent-1"},
	}, got)

	_, err = pool.Exec(context.Background(), `UPDATE auth_failures SET code = 'unauthenticated'`)
	require.ErrorContains(t, err, "append-only")
	_, err = pool.Exec(context.Background(), `DELETE FROM auth_failures`)
	require.ErrorContains(t, err, "append-only")
}

// TestAuthFailureLogDropsWhenFull: Record never blocks a refused call; past
// the buffer it drops and counts.
func TestAuthFailureLogDropsWhenFull(t *testing.T) {
	t.Parallel()
	l := NewAuthFailureLog(nil, AuthFailureLogConfig{Buffer: 2})
	refused := status.Error(codes.Unauthenticated, "no")
	for range 5 {
		l.Record(context.Background(), "/x.v1.X/Y", refused)
	}
	l.Record(context.Background(), "/x.v1.X/Y", status.Error(codes.Unavailable, "not an auth failure"))
	require.Equal(t, uint64(3), l.Dropped())
	require.Len(t, l.queue, 2)
}

// TestAuthFailureRetention: refusals older than the retention are pruned;
// younger ones stay, and nobody can delete them.
func TestAuthFailureRetention(t *testing.T) {
	t.Parallel()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: Schema, Migrations: Migrations()})
	ctx := context.Background()
	old, young := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	for id, age := range map[uuid.UUID]time.Duration{old: AuthFailureRetention + time.Hour, young: AuthFailureRetention - time.Hour} {
		_, err := pool.Exec(ctx, `INSERT INTO auth_failures (id, occur_time, method, code, request_id, credential)
			VALUES ($1, now() - $2::interval, '/m', 'unauthenticated', 'r', 'none')`, id, age.String())
		require.NoError(t, err)
	}
	l := NewAuthFailureLog(pool, AuthFailureLogConfig{})
	require.Equal(t, int64(1), l.Prune(ctx))
	require.Zero(t, l.Prune(ctx), "nothing more to prune")
	var left []uuid.UUID
	rows, err := pool.Query(ctx, `SELECT id FROM auth_failures`)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		left = append(left, id)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []uuid.UUID{young}, left)
	_, err = pool.Exec(ctx, `DELETE FROM auth_failures WHERE id = $1`, young)
	require.ErrorContains(t, err, "append-only", "a young row cannot be deleted")
}
