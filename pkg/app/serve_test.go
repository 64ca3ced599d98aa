package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/app"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// slowCustomers answers GetCustomer after work, or fails when its context
// ends first (the server cut the call).
type slowCustomers struct {
	customerv1.UnimplementedCustomerServiceServer
	work    time.Duration
	started chan struct{}
}

func (s *slowCustomers) GetCustomer(ctx context.Context, req *customerv1.GetCustomerRequest) (*customerv1.Customer, error) {
	s.started <- struct{}{}
	select {
	case <-time.After(s.work):
		return &customerv1.Customer{Id: req.GetId()}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type serveBundle struct {
	addr   string
	cancel context.CancelFunc
	done   chan error // ServeGRPC's / ServeHTTP's result
}

// wait returns what the serve function returned and when, failing the test
// if it does not return within limit.
func (b *serveBundle) wait(t *testing.T, limit time.Duration) (error, time.Time) {
	t.Helper()
	select {
	case err := <-b.done:
		return err, time.Now()
	case <-time.After(limit):
		require.FailNow(t, "serve did not return", "within %s", limit)
		return nil, time.Time{}
	}
}

func startGRPC(t *testing.T, svc customerv1.CustomerServiceServer, grace time.Duration) *serveBundle {
	t.Helper()
	srv := grpc.NewServer()
	customerv1.RegisterCustomerServiceServer(srv, svc)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	b := &serveBundle{addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- app.ServeGRPC(ctx, srv, lis, grace) }()
	t.Cleanup(func() {
		cancel()
		srv.Stop()
	})
	return b
}

// refusesConnections reports whether nothing listens on addr any more.
func refusesConnections(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	_ = c.Close()
	return false
}

type callResult struct {
	resp *customerv1.Customer
	err  error
}

func TestServeGRPC(t *testing.T) {
	t.Parallel()

	t.Run("GracefulStopLetsInFlightCallsFinish", func(t *testing.T) {
		t.Parallel()
		const calls = 20
		svc := &slowCustomers{work: time.Second, started: make(chan struct{}, calls)}
		const grace = 10 * time.Second
		b := startGRPC(t, svc, grace)
		client := customerv1.NewCustomerServiceClient(dial(t, b.addr))

		results := make(chan callResult, calls)
		for range calls {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				resp, err := client.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: "c-1"})
				results <- callResult{resp, err}
			}()
		}
		for range calls {
			<-svc.started
		}

		cancelled := time.Now()
		b.cancel()
		// New connections are refused at once while the calls drain.
		require.Eventually(t, func() bool { return refusesConnections(b.addr) }, 5*time.Second, 5*time.Millisecond)
		for range calls {
			r := <-results
			require.NoError(t, r.err, "an in-flight call was cut by a graceful stop")
			require.Equal(t, "c-1", r.resp.GetId())
		}
		err, returned := b.wait(t, grace+5*time.Second)
		require.NoError(t, err)
		require.Less(t, returned.Sub(cancelled), grace, "ServeGRPC waited out the grace period with nothing in flight")
	})

	t.Run("ForcedStopCutsACallStuckPastGrace", func(t *testing.T) {
		t.Parallel()
		svc := &slowCustomers{work: time.Hour, started: make(chan struct{}, 1)}
		const grace = 300 * time.Millisecond
		b := startGRPC(t, svc, grace)
		client := customerv1.NewCustomerServiceClient(dial(t, b.addr))

		results := make(chan callResult, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			resp, err := client.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: "c-1"})
			results <- callResult{resp, err}
		}()
		<-svc.started

		cancelled := time.Now()
		b.cancel()
		err, returned := b.wait(t, 10*time.Second)
		require.NoError(t, err)
		took := returned.Sub(cancelled)
		require.GreaterOrEqual(t, took, grace, "the stuck call was cut before its grace")
		require.Less(t, took, grace+2*time.Second, "ServeGRPC must return within about grace")

		r := <-results
		require.Equal(t, codes.Unavailable, status.Code(r.err), "%v", r.err)
	})

	t.Run("ReturnsServeFailure", func(t *testing.T) {
		t.Parallel()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		require.NoError(t, lis.Close())
		err = app.ServeGRPC(t.Context(), grpc.NewServer(), lis, time.Second)
		require.ErrorContains(t, err, "grpc serve")
	})
}

func startHTTP(t *testing.T, h http.Handler, grace time.Duration) *serveBundle {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	b := &serveBundle{addr: lis.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { b.done <- app.ServeHTTP(ctx, srv, lis, grace) }()
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
	})
	return b
}

type httpResult struct {
	code int
	body string
	err  error
}

// slowHandler answers "done" after work, or gives up when the request's
// context ends (the server closed the connection).
func slowHandler(work time.Duration, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(work):
			_, _ = io.WriteString(w, "done")
		case <-r.Context().Done():
		}
	})
}

func getAsync(url string) <-chan httpResult {
	out := make(chan httpResult, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			out <- httpResult{err: err}
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- httpResult{err: err}
			return
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		out <- httpResult{code: resp.StatusCode, body: string(b), err: err}
	}()
	return out
}

func TestServeHTTP(t *testing.T) {
	t.Parallel()

	t.Run("GracefulShutdownLetsAnInFlightRequestFinish", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{}, 1)
		const grace = 10 * time.Second
		b := startHTTP(t, slowHandler(time.Second, started), grace)
		res := getAsync("http://" + b.addr + "/")
		<-started

		cancelled := time.Now()
		b.cancel()
		require.Eventually(t, func() bool { return refusesConnections(b.addr) }, 5*time.Second, 5*time.Millisecond)
		r := <-res
		require.NoError(t, r.err, "the in-flight request was cut by a graceful shutdown")
		require.Equal(t, http.StatusOK, r.code)
		require.Equal(t, "done", r.body)
		err, returned := b.wait(t, grace+5*time.Second)
		require.NoError(t, err)
		require.Less(t, returned.Sub(cancelled), grace)
	})

	t.Run("ForcedCloseCutsARequestStuckPastGrace", func(t *testing.T) {
		t.Parallel()
		started := make(chan struct{}, 1)
		const grace = 300 * time.Millisecond
		b := startHTTP(t, slowHandler(time.Hour, started), grace)
		res := getAsync("http://" + b.addr + "/")
		<-started

		cancelled := time.Now()
		b.cancel()
		err, returned := b.wait(t, 10*time.Second)
		require.NoError(t, err)
		took := returned.Sub(cancelled)
		require.GreaterOrEqual(t, took, grace)
		require.Less(t, took, grace+2*time.Second)
		r := <-res
		require.Error(t, r.err, "the stuck request must be cut")
	})
}
