// Package grpcxtest serves a package's gRPC API in a test through Rapport's
// real interceptor chain (validation, authorization from the proto options,
// idempotency keys, error mapping), with one difference: the caller's
// principal is read from metadata the test sets, because verifying tokens is
// authn's business and is tested there.
package grpcxtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	"github.com/rapporthq/rapport/pkg/grpcx"
)

// Metadata keys TrustMetadata reads the principal from.
const (
	MDTenant  = "x-test-tenant"
	MDSubject = "x-test-subject"
	MDRoles   = "x-test-roles"
)

// TrustMetadata is an AuthFunc for tests: the principal is whatever the
// metadata says. A call without a tenant is unauthenticated.
func TrustMetadata(ctx context.Context) (context.Context, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	tenant := md.Get(MDTenant)
	if len(tenant) != 1 {
		return nil, status.Error(codes.Unauthenticated, "no test principal")
	}
	p := authn.Principal{TenantID: tenant[0], Subject: "tester"}
	if s := md.Get(MDSubject); len(s) == 1 {
		p.Subject = s[0]
	}
	if r := md.Get(MDRoles); len(r) == 1 {
		p.Roles = strings.Split(r[0], ",")
	}
	return authn.NewContext(ctx, p), nil
}

// As returns an outgoing context for a caller of tenant holding roles (admin
// if none are given).
func As(tenant uuid.UUID, roles ...string) context.Context {
	return AsSubject(tenant, "tester", roles...)
}

// AsSubject is As with the caller's subject (a staff or service id) set.
func AsSubject(tenant uuid.UUID, subject string, roles ...string) context.Context {
	if len(roles) == 0 {
		roles = []string{"admin"}
	}
	return metadata.AppendToOutgoingContext(context.Background(),
		MDTenant, tenant.String(), MDSubject, subject, MDRoles, strings.Join(roles, ","))
}

// Serve starts a server with Rapport's interceptor chain, lets register add
// the APIs under test, and returns a client connection to it. Both close
// when the test ends.
func Serve(tb testing.TB, register func(grpc.ServiceRegistrar)) *grpc.ClientConn {
	tb.Helper()
	srv, err := grpcx.NewServer(grpcx.ServerConfig{AuthFunc: TrustMetadata, Authorize: (&authz.Policy{}).Authorize})
	if err != nil {
		tb.Fatalf("grpcxtest: new server: %v", err)
	}
	register(srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("grpcxtest: listen: %v", err)
	}
	go func() { _ = srv.Serve(lis) }()
	tb.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatalf("grpcxtest: dial: %v", err)
	}
	tb.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Clock is a settable clock for code that takes a func() time.Time.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// LogBuffer collects a server's JSON log lines (slog.NewJSONHandler): the
// server writes from its goroutines while the test reads.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Lines returns the log lines whose msg is msg, failing tb on a line that
// is not JSON.
func (b *LogBuffer) Lines(tb testing.TB, msg string) []map[string]any {
	tb.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			tb.Fatalf("grpcxtest: log line %s: %v", sc.Text(), err)
		}
		if line["msg"] == msg {
			out = append(out, line)
		}
	}
	return out
}

// ViolationFields returns the fields err's google.rpc.BadRequest details
// name, in order; none for an error without such details.
func ViolationFields(err error) []string {
	var fields []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}
