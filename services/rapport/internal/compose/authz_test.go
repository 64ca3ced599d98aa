package compose

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/rapporthq/rapport/pkg/authz"
)

// registeredMethods lists every RPC the composed server serves, but the
// public health service.
func registeredMethods(tb testing.TB, b *testBundle) []string {
	tb.Helper()
	var out []string
	for svc, info := range b.sys.grpc.GetServiceInfo() {
		if svc == "grpc.health.v1.Health" {
			continue
		}
		for _, m := range info.Methods {
			out = append(out, "/"+svc+"/"+m.Name)
		}
	}
	slices.Sort(out)
	return out
}

// emptyRequest builds the method's request message, empty, from the
// registry, so the matrix needs no hand-written case per method.
func emptyRequest(tb testing.TB, fullMethod string) (req, resp protoreflect.ProtoMessage) {
	tb.Helper()
	svc, method, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
	require.NoError(tb, err)
	md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(method))
	require.NotNil(tb, md, fullMethod)
	return dynamicpb.NewMessage(md.Input()), dynamicpb.NewMessage(md.Output())
}

// TestSEC02RoleMethodMatrix: every registered RPC declares a rule, and
// every role it does not grant is refused PERMISSION_DENIED, over every
// method, before the request is even validated.
func TestSEC02RoleMethodMatrix(t *testing.T) {
	b := setup(t)
	policy := &authz.Policy{}
	methods := registeredMethods(t, b)
	require.NotEmpty(t, methods)

	for _, m := range methods {
		roles, ok := policy.Rule(m)
		require.True(t, ok, "%s declares no (rapport.access.v1.access) rule: every RPC must", m)
		require.NotEmpty(t, roles, m)
	}

	tenant := uuid.NewString()
	for _, role := range authz.Roles() {
		ctx := authCtx(b.tokenAs(t, tenant, "matrix-"+role, role))
		for _, m := range methods {
			roles, _ := policy.Rule(m)
			req, resp := emptyRequest(t, m)
			err := b.grpcConn.Invoke(ctx, m, req, resp)
			got := status.Code(err)
			if slices.Contains(roles, role) {
				require.NotEqual(t, codes.PermissionDenied, got, "%s is granted %s", role, m)
				require.NotEqual(t, codes.Unauthenticated, got)
			} else {
				require.Equal(t, codes.PermissionDenied, got, "%s is not granted %s", role, m)
			}
		}
	}

	// A token with no role at all, and methods nobody registered, are
	// refused the same way.
	ctx := authCtx(b.tokenAs(t, tenant, "nobody"))
	for _, m := range methods {
		req, resp := emptyRequest(t, m)
		require.Equal(t, codes.PermissionDenied, status.Code(b.grpcConn.Invoke(ctx, m, req, resp)), m)
	}
	req, resp := emptyRequest(t, methods[0])
	admin := authCtx(b.token(t, tenant, "admin"))
	require.Equal(t, codes.PermissionDenied, status.Code(b.grpcConn.Invoke(admin,
		"/rapport.customer.v1.CustomerService/DeleteEverything", req, resp)))
}
