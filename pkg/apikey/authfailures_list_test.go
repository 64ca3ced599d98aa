package apikey

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// listHarness is the AccessService through the real interceptor chain, a
// writer of auth_failures rows (AuthFailureLog's own), and a clock standing
// at t0 when keys are created.
type listHarness struct {
	client   accessv1.AccessServiceClient
	failures *AuthFailureLog
	t0       time.Time
}

func newListHarness(t *testing.T) *listHarness {
	t.Helper()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: Schema, Migrations: Migrations()})
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := grpcxtest.NewClock(t0)
	conn := grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) {
		NewServer(pool, ServerConfig{Now: clock.Now}).Register(r)
	})
	return &listHarness{client: accessv1.NewAccessServiceClient(conn), failures: NewAuthFailureLog(pool, AuthFailureLogConfig{}), t0: t0}
}

// key creates an API key in tenant (at t0) and returns its id.
func (h *listHarness) key(t *testing.T, tenant uuid.UUID) uuid.UUID {
	t.Helper()
	resp, err := h.client.CreateApiKey(grpcxtest.As(tenant), &accessv1.CreateApiKeyRequest{
		ApiKey: &accessv1.ApiKey{DisplayName: "sync", Roles: []accessv1.Role{accessv1.Role_ROLE_AGENT}}})
	require.NoError(t, err)
	return uuid.MustParse(resp.GetApiKey().GetId())
}

// write stores refusals as the log's writer does.
func (h *listHarness) write(t *testing.T, fs ...authFailure) {
	t.Helper()
	for i := range fs {
		if fs[i].id == uuid.Nil {
			fs[i].id = uuid.Must(uuid.NewV7())
		}
		if fs[i].method == "" {
			fs[i].method = accessv1.AccessService_ListApiKeys_FullMethodName
		}
	}
	before := h.failures.Written()
	h.failures.write(context.Background(), fs)
	require.Equal(t, before+int64(len(fs)), h.failures.Written(), "rows written")
}

// at is t0 plus minutes.
func (h *listHarness) at(minutes int) time.Time {
	return h.t0.Add(time.Duration(minutes) * time.Minute)
}

// denied is an authorization refusal of a verified principal of tenant.
func denied(tenant uuid.UUID, subject string, at time.Time, requestID string) authFailure {
	return authFailure{time: at, code: codePermissionDenied, requestID: requestID, credential: "jwt",
		tenantID: tenant.String(), subject: subject}
}

// badKey is an authentication refusal presenting key id keyID.
func badKey(keyID uuid.UUID, at time.Time, requestID string) authFailure {
	return authFailure{time: at, code: codeUnauthenticated, requestID: requestID, credential: "api_key", apiKeyID: keyID.String()}
}

func (h *listHarness) listAll(t *testing.T, ctx context.Context, req *accessv1.ListAuthFailuresRequest) []*accessv1.AuthFailure {
	t.Helper()
	var out []*accessv1.AuthFailure
	for range 100 {
		resp, err := h.client.ListAuthFailures(ctx, req)
		require.NoError(t, err)
		out = append(out, resp.GetAuthFailures()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
	t.Fatal("paging does not end")
	return nil
}

func requestIDs(fs []*accessv1.AuthFailure) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.GetRequestId()
	}
	return out
}

// TestListAuthFailuresTenantScope (SEC-01, SEC-09): a tenant sees the
// authorization refusals of its principals and the authentication refusals
// naming its own keys, made while the key existed; never another tenant's,
// never refusals that claim no verifiable tenant (no credential, a bad JWT,
// a made-up key id), never a credential.
func TestListAuthFailuresTenantScope(t *testing.T) {
	t.Parallel()
	h := newListHarness(t)
	a, b := uuid.New(), uuid.New()
	keyA, keyB := h.key(t, a), h.key(t, b)
	madeUp := uuid.Must(uuid.NewV7())

	h.write(t,
		denied(a, "agent-a", h.at(1), "a-denied"),
		badKey(keyA, h.at(2), "a-bad-key"),
		authFailure{time: h.at(3), code: codePermissionDenied, requestID: "a-key-denied", credential: "api_key",
			apiKeyID: keyA.String(), tenantID: a.String(), subject: "apikey:" + keyA.String()},
		denied(b, "agent-b", h.at(4), "b-denied"),
		badKey(keyB, h.at(5), "b-bad-key"),
		authFailure{time: h.at(6), code: codeUnauthenticated, requestID: "anon-none", credential: "none"},
		authFailure{time: h.at(7), code: codeUnauthenticated, requestID: "anon-jwt", credential: "jwt"},
		badKey(madeUp, h.at(8), "made-up-key"),
		// Naming A's key before it existed: not about that key.
		badKey(keyA, h.at(-10), "a-key-before-creation"),
	)

	gotA := h.listAll(t, grpcxtest.As(a), &accessv1.ListAuthFailuresRequest{})
	require.Equal(t, []string{"a-key-denied", "a-bad-key", "a-denied"}, requestIDs(gotA), "A's, newest first")
	require.Equal(t, []string{"b-bad-key", "b-denied"}, requestIDs(h.listAll(t, grpcxtest.As(b), &accessv1.ListAuthFailuresRequest{})))
	require.Empty(t, h.listAll(t, grpcxtest.As(uuid.New()), &accessv1.ListAuthFailuresRequest{}), "a tenant with none")

	for _, f := range gotA {
		s := f.String()
		require.NotContains(t, s, b.String())
		require.NotContains(t, s, keyB.String())
		require.NotContains(t, s, "agent-b")
	}
	want := &accessv1.AuthFailure{
		Id: gotA[1].GetId(), OccurTime: timestamppb.New(h.at(2)), Method: accessv1.AccessService_ListApiKeys_FullMethodName,
		Code: accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNAUTHENTICATED, RequestId: "a-bad-key",
		Credential: accessv1.CredentialKind_CREDENTIAL_KIND_API_KEY, ApiKeyId: keyA.String(),
	}
	require.True(t, proto.Equal(want, gotA[1]), "an authentication refusal names the key, no subject: %v", gotA[1])
	require.Equal(t, "agent-a", gotA[2].GetSubject())
	require.Equal(t, accessv1.AuthFailureCode_AUTH_FAILURE_CODE_PERMISSION_DENIED, gotA[2].GetCode())
	require.Equal(t, accessv1.CredentialKind_CREDENTIAL_KIND_JWT, gotA[2].GetCredential())
	require.Empty(t, gotA[2].GetApiKeyId())

	// Admins only.
	_, err := h.client.ListAuthFailures(grpcxtest.As(a, "agent"), &accessv1.ListAuthFailuresRequest{})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
}

// TestListAuthFailuresPaging: pages are disjoint, newest first across both
// kinds of refusal, ties on time broken by id, and end with an empty token.
func TestListAuthFailuresPaging(t *testing.T) {
	t.Parallel()
	h := newListHarness(t)
	a, b := uuid.New(), uuid.New()
	keyA, keyB := h.key(t, a), h.key(t, b)
	var want []string
	var rows []authFailure
	for i := range 12 {
		id := fmt.Sprintf("r%02d", i)
		at := h.at(i / 2) // pairs share a time
		if i%3 == 0 {
			rows = append(rows, badKey(keyA, at, id))
		} else {
			rows = append(rows, denied(a, "agent-a", at, id))
		}
		want = append(want, id)
		rows = append(rows, denied(b, "agent-b", at, "b"+id), badKey(keyB, at, "bk"+id))
	}
	h.write(t, rows...)

	var got []string
	seen := map[string]bool{}
	var last *accessv1.AuthFailure
	req := &accessv1.ListAuthFailuresRequest{PageSize: 5}
	pages := 0
	for {
		resp, err := h.client.ListAuthFailures(grpcxtest.As(a), req)
		require.NoError(t, err)
		pages++
		require.LessOrEqual(t, len(resp.GetAuthFailures()), 5)
		for _, f := range resp.GetAuthFailures() {
			require.False(t, seen[f.GetId()], "no row twice")
			seen[f.GetId()] = true
			if last != nil {
				lt, ft := last.GetOccurTime().AsTime(), f.GetOccurTime().AsTime()
				require.True(t, lt.After(ft) || lt.Equal(ft) && last.GetId() > f.GetId(), "newest first, then by id")
			}
			last = f
			got = append(got, f.GetRequestId())
		}
		if resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	require.Equal(t, 3, pages)
	require.ElementsMatch(t, want, got, "every one of A's, only A's")

	// A token carries its filters: with others it is refused, naming the field.
	first, err := h.client.ListAuthFailures(grpcxtest.As(a), &accessv1.ListAuthFailuresRequest{PageSize: 2})
	require.NoError(t, err)
	_, err = h.client.ListAuthFailures(grpcxtest.As(a), &accessv1.ListAuthFailuresRequest{PageSize: 2,
		PageToken: first.GetNextPageToken(), Code: accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNAUTHENTICATED})
	requireViolation(t, err, "page_token")
	// Another tenant's token only positions B in B's own list.
	resp, err := h.client.ListAuthFailures(grpcxtest.As(b), &accessv1.ListAuthFailuresRequest{PageToken: first.GetNextPageToken()})
	require.NoError(t, err)
	for _, f := range resp.GetAuthFailures() {
		require.True(t, strings.HasPrefix(f.GetRequestId(), "b"), f.GetRequestId())
	}
}

// TestListAuthFailuresFilters: since_time keeps refusals at or after it,
// code keeps one code, and both combine with paging.
func TestListAuthFailuresFilters(t *testing.T) {
	t.Parallel()
	h := newListHarness(t)
	a := uuid.New()
	keyA := h.key(t, a)
	h.write(t,
		denied(a, "agent-a", h.at(1), "d1"),
		badKey(keyA, h.at(2), "u2"),
		denied(a, "agent-a", h.at(3), "d3"),
		badKey(keyA, h.at(4), "u4"),
		denied(a, "agent-a", h.at(5), "d5"),
	)
	list := func(req *accessv1.ListAuthFailuresRequest) []string {
		return requestIDs(h.listAll(t, grpcxtest.As(a), req))
	}
	require.Equal(t, []string{"d5", "u4", "d3"}, list(&accessv1.ListAuthFailuresRequest{SinceTime: timestamppb.New(h.at(3))}), "since is inclusive")
	require.Equal(t, []string{"u4", "u2"}, list(&accessv1.ListAuthFailuresRequest{
		Code: accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNAUTHENTICATED}))
	require.Equal(t, []string{"d5", "d3", "d1"}, list(&accessv1.ListAuthFailuresRequest{PageSize: 1,
		Code: accessv1.AuthFailureCode_AUTH_FAILURE_CODE_PERMISSION_DENIED}))
	require.Equal(t, []string{"d5", "d3"}, list(&accessv1.ListAuthFailuresRequest{PageSize: 1, SinceTime: timestamppb.New(h.at(2)),
		Code: accessv1.AuthFailureCode_AUTH_FAILURE_CODE_PERMISSION_DENIED}))
	require.Empty(t, list(&accessv1.ListAuthFailuresRequest{SinceTime: timestamppb.New(h.at(6))}))
}

// TestListAuthFailuresBadInput: INVALID_ARGUMENT naming the field.
func TestListAuthFailuresBadInput(t *testing.T) {
	t.Parallel()
	h := newListHarness(t)
	a := uuid.New()
	for field, req := range map[string]*accessv1.ListAuthFailuresRequest{
		"page_size":  {PageSize: -1},
		"page_token": {PageToken: "not-a-token"},
		"code":       {Code: accessv1.AuthFailureCode(99)},
		"since_time": {SinceTime: &timestamppb.Timestamp{Seconds: 1, Nanos: -1}},
	} {
		_, err := h.client.ListAuthFailures(grpcxtest.As(a), req)
		requireViolation(t, err, field)
	}
	_, err := h.client.ListAuthFailures(grpcxtest.As(a), &accessv1.ListAuthFailuresRequest{PageToken: strings.Repeat("A", 513)})
	requireViolation(t, err, "page_token")
}

// requireViolation asserts err is INVALID_ARGUMENT with a violation on field.
func requireViolation(t *testing.T, err error, field string) {
	t.Helper()
	require.Equal(t, codes.InvalidArgument, status.Code(err), "%s: %v", field, err)
	fields := grpcxtest.ViolationFields(err)
	if slices.Contains(fields, field) {
		return
	}
	t.Fatalf("no violation on %s; got %v (%v)", field, fields, err)
}
