package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/loyalty"
	"github.com/rapporthq/rapport/services/survey"
	"github.com/rapporthq/rapport/services/ticket"
)

// Tenants of the tests; tenantB's tokens must never see tenantA's data.
const (
	tenantA = "0195f3c0-0000-7000-8000-00000000000a"
	tenantB = "0195f3c0-0000-7000-8000-00000000000b"
)

// testBundle is a whole Rapport (all targets) on :0 listeners, over a fresh
// database and a real embedded JetStream.
type testBundle struct {
	logs     *syncBuffer
	tokensMu sync.Mutex
	tokens   []string
	sys      *System
	grpcConn *grpc.ClientConn
	httpBase string
	key      *authn.DevKey
	cfg      Config
	dbURL    string
	natsURL  string
}

func allSpecs() []pgdbtest.Spec {
	return []pgdbtest.Spec{
		{Schema: customer.Name, Migrations: customer.Migrations()},
		{Schema: ticket.Name, Migrations: ticket.Migrations()},
		{Schema: loyalty.Name, Migrations: loyalty.Migrations()},
		{Schema: survey.Name, Migrations: survey.Migrations()},
	}
}

// setup boots a whole system: five pools, an embedded JetStream server and
// every background loop. The tests that boot one do not run in parallel
// with each other (their subtests do, against their one system): a dozen
// systems alive at once would hold most of a default server's 100
// connections, and the test packages beside them need theirs.
func setup(tb testing.TB) *testBundle {
	tb.Helper()
	return setupWith(tb, Options{})
}

// setupWith is setup with composer options; listeners and test intervals
// are always set here.
func setupWith(tb testing.TB, opts Options, tweaks ...func(*Config)) *testBundle {
	tb.Helper()
	ctx := context.Background()
	dbURL := pgdbtest.NewDatabase(tb, allSpecs()...)
	ns := natstest.Start(tb)

	cfg := Config{
		Targets: "all", DatabaseURL: dbURL, NATSURL: ns.ClientURL(), NATSReplicas: 1,
		DataDir: tb.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Auth:          AuthConfig{Issuer: "rapport-test", Audience: "rapport", Dev: true},
		ShutdownGrace: 5 * time.Second, LogLevel: "info",
		// Small pools: test systems run side by side, five pools each,
		// against one server's max_connections (100 by default).
		DatabaseMaxConns: 6,
		// Generous limits: the concurrency tests are not about throttling.
		RateLimit: RateLimitConfig{TenantRPS: 1e6, TenantBurst: 1e6, PrincipalRPS: 1e6, PrincipalBurst: 1e6, IdleTTL: time.Minute},
	}
	for _, tweak := range tweaks {
		tweak(&cfg)
	}
	grpcLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	httpLis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	opts.GRPCListener, opts.HTTPListener = grpcLis, httpLis
	opts.RelayPollInterval, opts.HealthInterval = 20*time.Millisecond, 100*time.Millisecond
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sys, err := Build(ctx, cfg, logger, opts)
	require.NoError(tb, err)

	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sys.Run(runCtx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(tb, err)
		case <-time.After(30 * time.Second):
			tb.Error("rapport did not stop within 30 s")
		}
	})
	require.Eventually(tb, sys.Health().Ready, 10*time.Second, 20*time.Millisecond, "never became ready")

	conn, err := grpc.NewClient(sys.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = conn.Close() })
	key, err := DevKey(cfg)
	require.NoError(tb, err)
	b := &testBundle{logs: logs, sys: sys, grpcConn: conn, httpBase: "http://" + sys.HTTPAddr(), key: key,
		cfg: cfg, dbURL: dbURL, natsURL: ns.ClientURL()}
	// SEC-08, registered first so it runs last, after the system stopped:
	// nothing the system logged holds a personal-data marker, a token, SQL
	// or a stack trace.
	tb.Cleanup(func() { b.requireCleanLogs(tb) })
	return b
}

// syncBuffer is a bytes.Buffer safe for the logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// piiMarkers are the personal data the tests send (see ada()).
var piiMarkers = []string{"Ada Lovelace", "ada@example.com", "+442071234567", "analytical.engine"}

// leakMarkers are what must never reach a log or an error body.
func (b *testBundle) leakMarkers() []string {
	b.tokensMu.Lock()
	defer b.tokensMu.Unlock()
	m := append([]string{"goroutine ", "panic(", "SELECT ", "INSERT INTO", "UPDATE customers", "postgres://"}, piiMarkers...)
	for _, tok := range b.tokens {
		m = append(m, tok, tok[strings.LastIndex(tok, ".")+1:]) // the token, and its signature alone
	}
	return m
}

func (b *testBundle) requireCleanLogs(tb testing.TB) {
	tb.Helper()
	logs := b.logs.String()
	require.NotEmpty(tb, logs, "the system logged nothing: the check would be vacuous")
	for _, m := range b.leakMarkers() {
		require.NotContains(tb, logs, m, "a log line holds a marker")
	}
}

// requireCleanError checks one error message the same way.
func (b *testBundle) requireCleanError(tb testing.TB, msg string) {
	tb.Helper()
	for _, m := range b.leakMarkers() {
		require.NotContains(tb, msg, m, "an error body holds a marker")
	}
}

// token mints an admin token of tenant.
func (b *testBundle) token(tb testing.TB, tenant, subject string) string {
	tb.Helper()
	return b.tokenAs(tb, tenant, subject, "admin")
}

// tokenAs mints a token of tenant with exactly roles (none is allowed) and
// adds it to the leak markers, like every token the tests send.
func (b *testBundle) tokenAs(tb testing.TB, tenant, subject string, roles ...string) string {
	tb.Helper()
	tok, err := b.key.Mint(authn.MintOptions{Issuer: b.cfg.Auth.Issuer, Audience: b.cfg.Auth.Audience,
		Subject: subject, TenantID: tenant, Roles: roles, TTL: time.Hour})
	require.NoError(tb, err)
	b.tokensMu.Lock()
	b.tokens = append(b.tokens, tok)
	b.tokensMu.Unlock()
	return tok
}

// customerPool reads the customer schema directly, to count effects.
func (b *testBundle) customerPool(tb testing.TB) *pgxpool.Pool {
	return pgdbtest.Pool(tb, b.dbURL, customer.Name)
}

// result is what either transport got: a customer or an error with its
// code, field violations and ErrorInfo reason.
type result struct {
	customer *customerv1.Customer
	list     *customerv1.ListCustomersResponse
	found    *customerv1.LookupCustomersResponse
	code     codes.Code
	message  string
	fields   []string
	reason   string
}

// api is the customer API over one transport; the same cases run over both.
type api interface {
	name() string
	create(tb testing.TB, token string, c *customerv1.Customer, requestID string) result
	get(tb testing.TB, token, id string) result
	update(tb testing.TB, token string, c *customerv1.Customer, paths []string, requestID string) result
	list(tb testing.TB, token string, req *customerv1.ListCustomersRequest) result
	lookup(tb testing.TB, token string, req *customerv1.LookupCustomersRequest) result
}

type grpcAPI struct {
	c customerv1.CustomerServiceClient
	b *testBundle
}

func (grpcAPI) name() string { return "GRPC" }

func authCtx(token string) context.Context {
	ctx := context.Background()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	return ctx
}

func grpcResult(m proto.Message, err error) result {
	if err != nil {
		st := status.Convert(err)
		r := result{code: st.Code(), message: st.Message()}
		for _, d := range st.Details() {
			switch d := d.(type) {
			case *errdetails.BadRequest:
				for _, v := range d.GetFieldViolations() {
					r.fields = append(r.fields, v.GetField())
				}
			case *errdetails.ErrorInfo:
				r.reason = d.GetReason()
			}
		}
		return r
	}
	switch m := m.(type) {
	case *customerv1.Customer:
		return result{customer: m}
	case *customerv1.ListCustomersResponse:
		return result{list: m}
	case *customerv1.LookupCustomersResponse:
		return result{found: m}
	}
	return result{}
}

// result converts a call's outcome, checking error bodies for leaks.
func (a grpcAPI) result(tb testing.TB, m proto.Message, err error) result {
	if err != nil && a.b != nil {
		a.b.requireCleanError(tb, status.Convert(err).String())
	}
	return grpcResult(m, err)
}

func (a grpcAPI) create(tb testing.TB, token string, c *customerv1.Customer, requestID string) result {
	m, err := a.c.CreateCustomer(authCtx(token), &customerv1.CreateCustomerRequest{Customer: c, RequestId: requestID})
	return a.result(tb, m, err)
}

func (a grpcAPI) get(tb testing.TB, token, id string) result {
	m, err := a.c.GetCustomer(authCtx(token), &customerv1.GetCustomerRequest{Id: id})
	return a.result(tb, m, err)
}

func (a grpcAPI) update(tb testing.TB, token string, c *customerv1.Customer, paths []string, requestID string) result {
	m, err := a.c.UpdateCustomer(authCtx(token), &customerv1.UpdateCustomerRequest{
		Customer: c, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}, RequestId: requestID})
	return a.result(tb, m, err)
}

func (a grpcAPI) list(tb testing.TB, token string, req *customerv1.ListCustomersRequest) result {
	m, err := a.c.ListCustomers(authCtx(token), req)
	return a.result(tb, m, err)
}

func (a grpcAPI) lookup(tb testing.TB, token string, req *customerv1.LookupCustomersRequest) result {
	m, err := a.c.LookupCustomers(authCtx(token), req)
	return a.result(tb, m, err)
}

type restAPI struct {
	base string
	b    *testBundle
}

func (restAPI) name() string { return "REST" }

func (a restAPI) do(tb testing.TB, method, path, token, idemKey string, body []byte, into proto.Message) result {
	tb.Helper()
	headers := map[string]string{"Content-Type": "application/json"}
	if idemKey != "" {
		headers["Idempotency-Key"] = idemKey
	}
	reply := httpCall(tb, a.base, method, path, token, headers, string(body))
	raw := []byte(reply.body)
	if reply.status == http.StatusOK {
		require.NoError(tb, protojson.Unmarshal(raw, into), "body: %s", raw)
		switch m := into.(type) {
		case *customerv1.Customer:
			return result{customer: m}
		case *customerv1.ListCustomersResponse:
			return result{list: m}
		case *customerv1.LookupCustomersResponse:
			return result{found: m}
		}
	}
	if a.b != nil {
		a.b.requireCleanError(tb, string(raw))
	}
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Details []struct {
			Type            string `json:"@type"`
			Reason          string `json:"reason"`
			FieldViolations []struct {
				Field string `json:"field"`
			} `json:"fieldViolations"`
		} `json:"details"`
	}
	require.NoError(tb, json.Unmarshal(raw, &e), "status %d body %s", reply.status, raw)
	r := result{code: codes.Code(e.Code), message: e.Message} //nolint:gosec // small enum
	// The HTTP status must be the one grpc-gateway maps the gRPC code to.
	require.Equal(tb, runtime.HTTPStatusFromCode(r.code), reply.status, "body %s", raw)
	for _, d := range e.Details {
		for _, v := range d.FieldViolations {
			r.fields = append(r.fields, v.Field)
		}
		if d.Reason != "" {
			r.reason = d.Reason
		}
	}
	return r
}

func (a restAPI) create(tb testing.TB, token string, c *customerv1.Customer, requestID string) result {
	body, err := protojson.Marshal(c)
	require.NoError(tb, err)
	return a.do(tb, http.MethodPost, "/v1/customers", token, requestID, body, &customerv1.Customer{})
}

func (a restAPI) get(tb testing.TB, token, id string) result {
	return a.do(tb, http.MethodGet, "/v1/customers/"+id, token, "", nil, &customerv1.Customer{})
}

func (a restAPI) update(tb testing.TB, token string, c *customerv1.Customer, paths []string, requestID string) result {
	body, err := protojson.Marshal(c)
	require.NoError(tb, err)
	path := "/v1/customers/" + c.GetId()
	if len(paths) > 0 {
		// An explicit mask travels in the query; without one the gateway
		// derives it from the body's fields.
		path += "?updateMask=" + url.QueryEscape(strings.Join(paths, ","))
	}
	return a.do(tb, http.MethodPatch, path, token, requestID, body, &customerv1.Customer{})
}

func (a restAPI) list(tb testing.TB, token string, req *customerv1.ListCustomersRequest) result {
	q := url.Values{}
	q.Set("pageSize", fmt.Sprint(req.GetPageSize()))
	q.Set("pageToken", req.GetPageToken())
	q.Set("tag", req.GetTag())
	return a.do(tb, http.MethodGet, "/v1/customers?"+q.Encode(), token, "", nil, &customerv1.ListCustomersResponse{})
}

// lookup sends the value in the body: personal data never goes in a URL.
func (a restAPI) lookup(tb testing.TB, token string, req *customerv1.LookupCustomersRequest) result {
	body, err := protojson.Marshal(req)
	require.NoError(tb, err)
	return a.do(tb, http.MethodPost, "/v1/customers:lookup", token, "", body, &customerv1.LookupCustomersResponse{})
}

func (b *testBundle) apis() []api {
	return []api{grpcAPI{c: customerv1.NewCustomerServiceClient(b.grpcConn), b: b}, restAPI{base: b.httpBase, b: b}}
}
