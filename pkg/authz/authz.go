// Package authz decides whether a principal may call a method. The rule of
// each RPC is declared beside it in its .proto file, as the
// (rapport.access.v1.access) method option, so the API definition, gRPC and
// REST (which reaches the same gRPC server) share one table. A method without
// a rule is refused to everyone: the default is deny.
//
// It must not decide which rows a principal may see: tenant scoping is done
// by every query, from the principal's tenant.
package authz

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/rapporthq/rapport/pkg/authn"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
)

// RoleName is a role as tokens and API keys carry it: ROLE_AGENT is "agent".
func RoleName(r accessv1.Role) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// Roles lists every role name.
func Roles() []string {
	var out []string
	for v := range accessv1.Role_name {
		if r := accessv1.Role(v); r != accessv1.Role_ROLE_UNSPECIFIED {
			out = append(out, RoleName(r))
		}
	}
	return out
}

// Policy answers from the method options of the registered protos. The zero
// value is ready; a method's rule is looked up once and cached. Names
// without a rule are looked up each time and not cached: they are whatever
// an authenticated caller sends (the unknown-service handler runs the stream
// chain too), so caching them would let the map grow without bound.
type Policy struct {
	cache sync.Map // full method -> []string, methods with a rule only
}

// Rule returns the roles allowed to call fullMethod ("/pkg.Service/Method")
// and whether the method declares a rule at all.
func (p *Policy) Rule(fullMethod string) ([]string, bool) {
	if v, ok := p.cache.Load(fullMethod); ok {
		return v.([]string), true
	}
	roles := lookup(fullMethod)
	if roles == nil {
		return nil, false
	}
	p.cache.Store(fullMethod, roles)
	return roles, true
}

func lookup(fullMethod string) []string {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	if !ok {
		return nil
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	if err != nil {
		return nil
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil
	}
	md := sd.Methods().ByName(protoreflect.Name(method))
	if md == nil || md.Options() == nil {
		return nil
	}
	rule, ok := proto.GetExtension(md.Options(), accessv1.E_Access).(*accessv1.MethodAccess)
	if !ok || rule == nil || len(rule.GetRoles()) == 0 {
		return nil
	}
	roles := make([]string, 0, len(rule.GetRoles()))
	for _, r := range rule.GetRoles() {
		if r != accessv1.Role_ROLE_UNSPECIFIED {
			roles = append(roles, RoleName(r))
		}
	}
	if len(roles) == 0 {
		return nil
	}
	return roles
}

// errDenied is the one answer to every refusal; it says nothing about the
// rule, so callers cannot map the policy by probing.
var errDenied = status.Error(codes.PermissionDenied, "permission denied")

// Authorize allows the call if the context's principal holds one of the
// method's roles. A method without a rule, or a call without a principal,
// is refused.
func (p *Policy) Authorize(ctx context.Context, fullMethod string) error {
	prin, ok := authn.FromContext(ctx)
	if !ok {
		return status.Error(codes.Unauthenticated, "authentication required")
	}
	roles, ok := p.Rule(fullMethod)
	if !ok {
		return errDenied
	}
	for _, r := range roles {
		if prin.HasRole(r) {
			return nil
		}
	}
	return errDenied
}
