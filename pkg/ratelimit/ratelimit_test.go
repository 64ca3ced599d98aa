package ratelimit_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/ratelimit"
)

// Tests identify the caller by metadata, standing in for authentication: a
// call without x-test-tenant is a public one.
const (
	tenantMD    = "x-test-tenant"
	principalMD = "x-test-principal"
)

func keyFromMetadata(ctx context.Context) (tenant, principal string, ok bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	t := md.Get(tenantMD)
	if len(t) == 0 {
		return "", "", false
	}
	p := md.Get(principalMD)
	if len(p) == 0 {
		return t[0], "", true
	}
	return t[0], p[0], true
}

// customers answers GetCustomer with the id it was asked for.
type customers struct {
	customerv1.UnimplementedCustomerServiceServer
	calls atomic.Int64
}

func (s *customers) GetCustomer(_ context.Context, req *customerv1.GetCustomerRequest) (*customerv1.Customer, error) {
	s.calls.Add(1)
	return &customerv1.Customer{Id: req.GetId()}, nil
}

type testBundle struct {
	clock   *grpcxtest.Clock
	limiter *ratelimit.Limiter
	service *customers
	conn    *grpc.ClientConn
	client  customerv1.CustomerServiceClient
}

// setup serves a CustomerService behind the limiter's interceptor on a
// 127.0.0.1:0 listener. cfg.Now is replaced by the bundle's clock.
func setup(t testing.TB, cfg ratelimit.Config) *testBundle {
	t.Helper()
	clk := grpcxtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg.Now = clk.Now
	lim := ratelimit.New(cfg)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := grpc.NewServer(grpc.ChainUnaryInterceptor(lim.UnaryServerInterceptor(keyFromMetadata)))
	svc := &customers{}
	customerv1.RegisterCustomerServiceServer(srv, svc)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		require.NoError(t, <-served)
	})

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return &testBundle{clock: clk, limiter: lim, service: svc, conn: conn, client: customerv1.NewCustomerServiceClient(conn)}
}

// result is one call's outcome and response header metadata.
type result struct {
	header metadata.MD
	err    error
}

func (r result) get(t testing.TB, key string) string {
	t.Helper()
	v := r.header.Get(key)
	require.Len(t, v, 1, "header %s in %v", key, r.header)
	return v[0]
}

func (r result) int(t testing.TB, key string) int {
	t.Helper()
	n, err := strconv.Atoi(r.get(t, key))
	require.NoError(t, err)
	return n
}

// call makes one GetCustomer call as principal of tenant; an empty tenant
// makes a public call.
func (b *testBundle) call(t testing.TB, tenant, principal string) result {
	t.Helper()
	ctx := t.Context()
	if tenant != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, tenantMD, tenant, principalMD, principal)
	}
	var hdr metadata.MD
	_, err := b.client.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: "c1"}, grpc.Header(&hdr))
	return result{header: hdr, err: err}
}

// requireRefused checks a refusal: RESOURCE_EXHAUSTED naming the wait, a
// RetryInfo of the same wait, and retry-after in whole seconds, at least 1.
func requireRefused(t testing.TB, r result, retryAfter int) {
	t.Helper()
	require.Equal(t, codes.ResourceExhausted, status.Code(r.err), "%v", r.err)
	st := status.Convert(r.err)
	require.Equal(t, fmt.Sprintf("rate limit exceeded; retry after %d s", retryAfter), st.Message())
	require.Equal(t, retryAfter, r.int(t, ratelimit.RetryAfterKey))
	require.GreaterOrEqual(t, retryAfter, 1)
	var info *errdetails.RetryInfo
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			info = ri
		}
	}
	require.NotNil(t, info, "RetryInfo detail")
	require.Equal(t, time.Duration(retryAfter)*time.Second, info.GetRetryDelay().AsDuration())
}

// requireFields checks the RateLimit fields.
func requireFields(t testing.TB, r result, limit, remaining, reset int) {
	t.Helper()
	require.Equal(t, []int{limit, remaining, reset}, []int{
		r.int(t, ratelimit.LimitKey), r.int(t, ratelimit.RemainingKey), r.int(t, ratelimit.ResetKey),
	}, "limit, remaining, reset")
}

func TestUnaryServerInterceptor(t *testing.T) {
	t.Parallel()

	// SEC-04's burst of twice the bucket, once for each bucket being the
	// tighter one.
	for _, tc := range []struct {
		name string
		cfg  ratelimit.Config
	}{
		{"TenantBucketPassesExactlyItsBurst", ratelimit.Config{TenantRPS: 1, TenantBurst: 10, PrincipalRPS: 50, PrincipalBurst: 100}},
		{"PrincipalBucketPassesExactlyItsBurst", ratelimit.Config{TenantRPS: 50, TenantBurst: 100, PrincipalRPS: 1, PrincipalBurst: 10}},
	} {
		t.Run("BurstOfTwice"+tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, tc.cfg)
			for i := range 20 {
				r := b.call(t, "tenant-a", "alice")
				if i < 10 {
					require.NoError(t, r.err, "call %d", i)
					require.Empty(t, r.header.Get(ratelimit.RetryAfterKey))
					// One token gone per call; a token takes 1 s to come back.
					requireFields(t, r, 10, 9-i, i+1)
					continue
				}
				requireRefused(t, r, 1)
				requireFields(t, r, 10, 0, 10)
			}
			require.EqualValues(t, 10, b.service.calls.Load(), "refused calls never reach the handler")
		})
	}

	t.Run("TenantsAreIndependent", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ratelimit.Config{TenantRPS: 1, TenantBurst: 3})
		for range 3 {
			require.NoError(t, b.call(t, "tenant-a", "alice").err)
		}
		requireRefused(t, b.call(t, "tenant-a", "alice"), 1)
		for i := range 3 {
			r := b.call(t, "tenant-b", "alice")
			require.NoError(t, r.err)
			requireFields(t, r, 3, 2-i, i+1)
		}
		requireRefused(t, b.call(t, "tenant-b", "alice"), 1)
	})

	t.Run("PrincipalBucketLimitsOnePrincipalNotItsTenant", func(t *testing.T) {
		t.Parallel()
		// Principals refill very slowly, so what a principal bucket holds
		// below is what calls left in it, not what time put back.
		b := setup(t, ratelimit.Config{TenantRPS: 1, TenantBurst: 5, PrincipalRPS: 0.001, PrincipalBurst: 3})
		for range 3 {
			require.NoError(t, b.call(t, "tenant-a", "alice").err)
		}
		// Alice's refusals take nothing from the tenant bucket: Bob still
		// gets the tenant's remaining two calls, no fewer.
		for range 5 {
			r := b.call(t, "tenant-a", "alice")
			requireRefused(t, r, 1000)
			requireFields(t, r, 3, 0, 3000) // alice's own bucket is the tighter one
		}
		for i := range 2 {
			r := b.call(t, "tenant-a", "bob")
			require.NoError(t, r.err)
			requireFields(t, r, 5, 1-i, 4+i) // the tenant's 5 − (3 + i + 1) left
		}
		r := b.call(t, "tenant-a", "bob")
		requireRefused(t, r, 1)
		requireFields(t, r, 5, 0, 5)
		// Nor did the tenant's refusal take from Bob's bucket: once the
		// tenant has tokens again, Bob has exactly his one left.
		b.clock.Advance(2 * time.Second)
		require.NoError(t, b.call(t, "tenant-a", "bob").err)
		require.Equal(t, codes.ResourceExhausted, status.Code(b.call(t, "tenant-a", "bob").err))
		require.NoError(t, b.call(t, "tenant-a", "carol").err, "the tenant still has a token")
	})

	t.Run("RefillsAsTheClockAdvances", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ratelimit.Config{TenantRPS: 2, TenantBurst: 4})
		for range 4 {
			require.NoError(t, b.call(t, "tenant-a", "alice").err)
		}
		// Half a second to the next token, rounded up to whole seconds.
		r := b.call(t, "tenant-a", "alice")
		requireRefused(t, r, 1)
		requireFields(t, r, 4, 0, 2)

		b.clock.Advance(500 * time.Millisecond)
		require.NoError(t, b.call(t, "tenant-a", "alice").err)
		requireRefused(t, b.call(t, "tenant-a", "alice"), 1)

		// Idle far longer than the refill: the bucket holds its burst, no more.
		b.clock.Advance(time.Hour)
		for range 4 {
			require.NoError(t, b.call(t, "tenant-a", "alice").err)
		}
		requireRefused(t, b.call(t, "tenant-a", "alice"), 1)
	})

	t.Run("RetryAfterWaitsForTheSlowerBucket", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ratelimit.Config{TenantRPS: 0.1, TenantBurst: 1, PrincipalRPS: 0.25, PrincipalBurst: 1})
		require.NoError(t, b.call(t, "tenant-a", "alice").err)
		r := b.call(t, "tenant-a", "alice")
		requireRefused(t, r, 10) // the tenant's 10 s, not the principal's 4 s
		requireFields(t, r, 1, 0, 10)
		b.clock.Advance(9 * time.Second)
		requireRefused(t, b.call(t, "tenant-a", "alice"), 1)
		b.clock.Advance(time.Second)
		require.NoError(t, b.call(t, "tenant-a", "alice").err)
	})

	t.Run("PublicCallsAreNeverLimited", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ratelimit.Config{TenantRPS: 1, TenantBurst: 1, PrincipalRPS: 1, PrincipalBurst: 1})
		for range 50 {
			r := b.call(t, "", "")
			require.NoError(t, r.err)
			require.Empty(t, r.header.Get(ratelimit.LimitKey))
		}
		tenants, principals := b.limiter.Size()
		require.Zero(t, tenants+principals, "public calls make no buckets")
	})

	t.Run("ConcurrentCallsNeverOvershoot", func(t *testing.T) {
		t.Parallel()
		b := setup(t, ratelimit.Config{TenantRPS: 1, TenantBurst: 50, PrincipalRPS: 1, PrincipalBurst: 15})
		var allowed, refused atomic.Int64
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Go(func() {
				r := b.call(t, "tenant-a", fmt.Sprintf("p%d", i%10))
				switch status.Code(r.err) {
				case codes.OK:
					allowed.Add(1)
				case codes.ResourceExhausted:
					refused.Add(1)
				}
			})
		}
		wg.Wait()
		require.EqualValues(t, 50, allowed.Load())
		require.EqualValues(t, 150, refused.Load())
	})
}

// intercept runs the interceptor without a server, for tests that only
// count buckets.
func intercept(t testing.TB, lim *ratelimit.Limiter, tenant, principal string) error {
	t.Helper()
	ctx := metadata.NewIncomingContext(t.Context(), metadata.Pairs(tenantMD, tenant, principalMD, principal))
	_, err := lim.UnaryServerInterceptor(keyFromMetadata)(ctx, nil, &grpc.UnaryServerInfo{FullMethod: "/test/Call"},
		func(context.Context, any) (any, error) { return "ok", nil })
	return err
}

func TestEviction(t *testing.T) {
	t.Parallel()

	newLimiter := func(cfg ratelimit.Config) (*ratelimit.Limiter, *grpcxtest.Clock) {
		clk := grpcxtest.NewClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
		cfg.Now = clk.Now
		return ratelimit.New(cfg), clk
	}

	t.Run("DropsIdleBuckets", func(t *testing.T) {
		t.Parallel()
		lim, clk := newLimiter(ratelimit.Config{})
		for i := range 1000 {
			require.NoError(t, intercept(t, lim, fmt.Sprintf("t%d", i), "alice"))
			require.NoError(t, intercept(t, lim, fmt.Sprintf("t%d", i), "bob"))
		}
		tenants, principals := lim.Size()
		require.Equal(t, []int{1000, 2000}, []int{tenants, principals})

		clk.Advance(10 * time.Minute)
		require.NoError(t, intercept(t, lim, "new", "carol"))
		tenants, principals = lim.Size()
		require.Equal(t, []int{1, 1}, []int{tenants, principals})
	})

	t.Run("KeepsBucketsInUse", func(t *testing.T) {
		t.Parallel()
		lim, clk := newLimiter(ratelimit.Config{})
		require.NoError(t, intercept(t, lim, "tenant-a", "idle"))
		for range 5 {
			require.NoError(t, intercept(t, lim, "tenant-a", "busy"))
			clk.Advance(4 * time.Minute)
		}
		tenants, principals := lim.Size()
		require.Equal(t, []int{1, 1}, []int{tenants, principals}, "only the idle principal goes")
	})

	t.Run("NeverDropsABucketBeforeItRefills", func(t *testing.T) {
		t.Parallel()
		// 1000 s to refill 10 tokens: longer than the 10 min idle TTL.
		lim, clk := newLimiter(ratelimit.Config{TenantRPS: 0.01, TenantBurst: 10})
		for range 10 {
			require.NoError(t, intercept(t, lim, "tenant-a", "alice"))
		}
		clk.Advance(11 * time.Minute) // 6.6 tokens back
		require.NoError(t, intercept(t, lim, "tenant-b", "bob"))
		tenants, _ := lim.Size()
		require.Equal(t, 2, tenants, "tenant-a is idle but not yet full")
		for range 6 {
			require.NoError(t, intercept(t, lim, "tenant-a", "alice"))
		}
		require.Equal(t, codes.ResourceExhausted, status.Code(intercept(t, lim, "tenant-a", "alice")),
			"a dropped and remade bucket would have passed a full burst")
	})
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	lim := ratelimit.New(ratelimit.Config{TenantRPS: 1, TenantBurst: 3, PrincipalRPS: 1, PrincipalBurst: 2, Now: func() time.Time {
		return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	}})
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(lim))
	for _, p := range []string{"alice", "alice", "alice", "bob", "bob"} {
		_ = intercept(t, lim, "tenant-a", p)
	}
	// alice: 2 allowed, 1 refused by her bucket; bob: 1 allowed, then the
	// tenant's 3 are spent.
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP rapport_ratelimit_buckets Token buckets held in this process, by kind; idle ones are dropped.
# TYPE rapport_ratelimit_buckets gauge
rapport_ratelimit_buckets{kind="principal"} 2
rapport_ratelimit_buckets{kind="tenant"} 1
# HELP rapport_ratelimit_calls_total Authenticated calls the rate limiter decided, by result: allowed, or refused by the tenant or the principal bucket.
# TYPE rapport_ratelimit_calls_total counter
rapport_ratelimit_calls_total{result="allowed"} 3
rapport_ratelimit_calls_total{result="refused_principal"} 1
rapport_ratelimit_calls_total{result="refused_tenant"} 1
`)))
}

// TestREST checks what a REST client sees through grpc-gateway: a refusal is
// HTTP 429, and the header metadata reaches HTTP headers on errors as well as
// on success, given an outgoing header matcher that maps the keys with
// HTTPHeader (as the gateway's does).
func TestREST(t *testing.T) {
	t.Parallel()
	b := setup(t, ratelimit.Config{TenantRPS: 1, TenantBurst: 2})
	mux := runtime.NewServeMux(
		runtime.WithIncomingHeaderMatcher(func(k string) (string, bool) {
			switch strings.ToLower(k) {
			case tenantMD, principalMD:
				return strings.ToLower(k), true
			}
			return runtime.DefaultHeaderMatcher(k)
		}),
		runtime.WithOutgoingHeaderMatcher(ratelimit.HTTPHeader),
	)
	require.NoError(t, customerv1.RegisterCustomerServiceHandler(t.Context(), mux, b.conn))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	get := func() *http.Response {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/v1/customers/c1", nil)
		require.NoError(t, err)
		req.Header.Set(tenantMD, "tenant-a")
		req.Header.Set(principalMD, "alice")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp
	}
	for i := range 2 {
		resp := get()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Equal(t, "2", resp.Header.Get("RateLimit-Limit"))
		require.Equal(t, strconv.Itoa(1-i), resp.Header.Get("RateLimit-Remaining"))
		require.Equal(t, strconv.Itoa(i+1), resp.Header.Get("RateLimit-Reset"))
		require.Empty(t, resp.Header.Get("Retry-After"))
	}
	resp := get()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	require.Equal(t, "1", resp.Header.Get("Retry-After"))
	require.Equal(t, "2", resp.Header.Get("RateLimit-Limit"))
	require.Equal(t, "0", resp.Header.Get("RateLimit-Remaining"))
	require.Equal(t, "2", resp.Header.Get("RateLimit-Reset"))
}

func TestKeyFromPrincipal(t *testing.T) {
	t.Parallel()
	_, _, ok := ratelimit.KeyFromPrincipal(t.Context())
	require.False(t, ok, "no principal: a public call")
	ctx := authn.NewContext(t.Context(), authn.Principal{TenantID: "tenant-a", Subject: "alice"})
	tenant, principal, ok := ratelimit.KeyFromPrincipal(ctx)
	require.True(t, ok)
	require.Equal(t, []string{"tenant-a", "alice"}, []string{tenant, principal})
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, ratelimit.Config{}.Validate())
	require.NoError(t, ratelimit.Config{TenantRPS: 0.5, TenantBurst: 1, PrincipalRPS: 3, PrincipalBurst: 2}.Validate())
	for name, cfg := range map[string]ratelimit.Config{
		"NegativeRate":  {TenantRPS: -1},
		"InfiniteRate":  {PrincipalRPS: math.Inf(1)},
		"NegativeBurst": {PrincipalBurst: -1},
		"NegativeTTL":   {IdleTTL: -time.Second},
	} {
		require.Error(t, cfg.Validate(), name)
	}
}
