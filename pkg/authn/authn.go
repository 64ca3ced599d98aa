// Package authn owns authentication: it turns a bearer credential into a
// verified Principal, and it mints development tokens.
//
// It answers "who is calling, for which tenant, holding which roles", and no
// more. Whether that principal may call a method is authorization, decided by
// the policy table behind its own interceptor; authn never grants or denies by
// role. It reads keys only from the JWKS file or URL it was configured with:
// nothing in a token (jku, x5u, jwk, x5c) can point it at another key.
package authn

import (
	"context"
	"errors"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"slices"
)

// ErrUnauthenticated is wrapped by every error Verify returns, so callers map
// all of them to one status with errors.Is. Its messages describe why a token
// failed but never repeat the token, which is a live credential.
var ErrUnauthenticated = errors.New("unauthenticated")

// Principal is the verified caller. TenantID is the canonical lower-case UUID
// from the token: queries scope by it, never by a tenant named in a request.
type Principal struct {
	Subject  string
	TenantID string
	Roles    []string
}

// HasRole reports whether the principal holds role r, compared exactly.
func (p Principal) HasRole(r string) bool {
	return slices.Contains(p.Roles, r)
}

// principalKey is unexported so that only this package can place a Principal
// in a context: a handler that finds one knows a Verifier put it there.
type principalKey struct{}

// NewContext returns a child of ctx carrying p.
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal NewContext stored in ctx, if any.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// Caller returns the tenant and subject of the authenticated principal in
// ctx, for handlers that scope every query by tenant. The tenant never comes
// from a request. Without a usable principal it returns UNAUTHENTICATED.
func Caller(ctx context.Context) (tenantID uuid.UUID, subject string, err error) {
	p, ok := FromContext(ctx)
	if !ok {
		return uuid.Nil, "", status.Error(codes.Unauthenticated, "authentication required")
	}
	t, err := uuid.Parse(p.TenantID)
	if err != nil || p.Subject == "" {
		return uuid.Nil, "", status.Error(codes.Unauthenticated, "authentication required")
	}
	return t, p.Subject, nil
}
