package authn

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// whoAmIHealth answers health calls and reports, in response headers, the
// principal its handler found in the context.
type whoAmIHealth struct {
	healthpb.UnimplementedHealthServer
}

func principalHeader(ctx context.Context) metadata.MD {
	p, ok := FromContext(ctx)
	if !ok {
		return metadata.Pairs("x-authenticated", "false")
	}
	return metadata.Pairs("x-authenticated", "true", "x-subject", p.Subject, "x-tenant", p.TenantID,
		"x-roles", strings.Join(p.Roles, ","))
}

func (whoAmIHealth) Check(ctx context.Context, _ *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if err := grpc.SetHeader(ctx, principalHeader(ctx)); err != nil {
		return nil, err
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

func (whoAmIHealth) Watch(_ *healthpb.HealthCheckRequest, stream grpc.ServerStreamingServer[healthpb.HealthCheckResponse]) error {
	if err := stream.SetHeader(principalHeader(stream.Context())); err != nil {
		return err
	}
	return stream.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING})
}

// lockedBuffer collects log output written from server goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type interceptorBundle struct {
	key    testKey
	client healthpb.HealthClient
	logs   *lockedBuffer
}

// setupServer serves whoAmIHealth on a loopback :0 listener behind the authn
// interceptors, with public deciding which methods skip them.
func setupServer(t testing.TB, public func(string) bool) interceptorBundle {
	t.Helper()
	key := newECKey(t)
	logs := &lockedBuffer{}
	cfg := fileConfig(t, key)
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	v := mustVerifier(t, cfg, nil)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(
		grpc.ChainUnaryInterceptor(UnaryServerInterceptor(v, public)),
		grpc.ChainStreamInterceptor(StreamServerInterceptor(v, public)),
	)
	healthpb.RegisterHealthServer(srv, whoAmIHealth{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.GracefulStop()
		require.NoError(t, <-served)
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return interceptorBundle{key: key, client: healthpb.NewHealthClient(conn), logs: logs}
}

func withBearer(ctx context.Context, raw string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+raw)
}

func requireUnauthenticated(t testing.TB, err error) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "not a status error: %v", err)
	require.Equal(t, codes.Unauthenticated, st.Code())
	require.Equal(t, unauthenticatedMessage, st.Message())
}

func TestInterceptors(t *testing.T) {
	t.Parallel()

	t.Run("NoMetadataIsUnauthenticated", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)

		_, err := b.client.Check(t.Context(), &healthpb.HealthCheckRequest{})
		requireUnauthenticated(t, err)
	})

	t.Run("OtherSchemeIsUnauthenticated", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Basic dXNlcjpwdw==")

		_, err := b.client.Check(ctx, &healthpb.HealthCheckRequest{})
		requireUnauthenticated(t, err)
	})

	t.Run("RejectedTokenGetsGenericMessageAndIsLoggedWithoutToken", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)
		c := validClaims()
		c["aud"] = "other-api"
		raw := sign(t, b.key, c, nil)

		_, err := b.client.Check(withBearer(t.Context(), raw), &healthpb.HealthCheckRequest{})
		requireUnauthenticated(t, err)
		require.NotContains(t, err.Error(), raw)
		logs := b.logs.String()
		require.Contains(t, logs, "token has invalid audience", "the reason should reach the debug log")
		require.NotContains(t, logs, raw)
		require.NotContains(t, logs, strings.Split(raw, ".")[2])
	})

	t.Run("PrincipalReachesUnaryHandler", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)
		var header metadata.MD

		_, err := b.client.Check(withBearer(t.Context(), sign(t, b.key, validClaims(), nil)),
			&healthpb.HealthCheckRequest{}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{"true"}, header.Get("x-authenticated"))
		require.Equal(t, []string{testSubject}, header.Get("x-subject"))
		require.Equal(t, []string{testTenantID}, header.Get("x-tenant"))
		require.Equal(t, []string{"agent,supervisor"}, header.Get("x-roles"))
	})

	t.Run("PrincipalReachesStreamHandler", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)

		stream, err := b.client.Watch(withBearer(t.Context(), sign(t, b.key, validClaims(), nil)), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		require.NoError(t, err)
		header, err := stream.Header()
		require.NoError(t, err)
		require.Equal(t, []string{testSubject}, header.Get("x-subject"))
		require.Equal(t, []string{testTenantID}, header.Get("x-tenant"))
	})

	t.Run("StreamWithoutTokenIsUnauthenticated", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, nil)

		stream, err := b.client.Watch(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		requireUnauthenticated(t, err)
	})

	t.Run("PublicMethodPassesWithoutToken", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, PublicPrefixes("/grpc.health.v1.Health/"))
		var header metadata.MD

		_, err := b.client.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.Header(&header))
		require.NoError(t, err)
		require.Equal(t, []string{"false"}, header.Get("x-authenticated"))

		stream, err := b.client.Watch(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		require.NoError(t, err)
	})

	t.Run("OnlyListedMethodsArePublic", func(t *testing.T) {
		t.Parallel()
		b := setupServer(t, PublicPrefixes("/grpc.health.v1.Health/Check"))

		_, err := b.client.Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		stream, err := b.client.Watch(t.Context(), &healthpb.HealthCheckRequest{})
		require.NoError(t, err)
		_, err = stream.Recv()
		requireUnauthenticated(t, err)
	})
}

func TestPublicPrefixes(t *testing.T) {
	t.Parallel()

	prefixes := []string{"/grpc.health.v1.Health/"}
	public := PublicPrefixes(prefixes...)
	prefixes[0] = "/" // a later change to the caller's slice must not widen the set

	require.True(t, public("/grpc.health.v1.Health/Check"))
	require.False(t, public("/grpc.health.v1.HealthAdmin/Drop"))
	require.False(t, public("/rapport.ticket.v1.TicketService/GetTicket"))
	require.False(t, PublicPrefixes()("/grpc.health.v1.Health/Check"))
}
