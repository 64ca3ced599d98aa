package authz_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

func TestPolicy(t *testing.T) {
	t.Parallel()
	p := &authz.Policy{}
	as := func(roles ...string) context.Context {
		return authn.NewContext(context.Background(), authn.Principal{Subject: "s", TenantID: "t", Roles: roles})
	}

	t.Run("ReadsTheRuleFromTheProtoOption", func(t *testing.T) {
		t.Parallel()
		roles, ok := p.Rule(customerv1.CustomerService_GetCustomer_FullMethodName)
		require.True(t, ok)
		require.ElementsMatch(t, []string{"admin", "supervisor", "agent", "marketer", "service"}, roles)
		roles, ok = p.Rule(accessv1.AccessService_CreateApiKey_FullMethodName)
		require.True(t, ok)
		require.Equal(t, []string{"admin"}, roles)
	})

	t.Run("MethodsWithoutARuleHaveNone", func(t *testing.T) {
		t.Parallel()
		for _, m := range []string{"/grpc.health.v1.Health/Check", "/rapport.customer.v1.CustomerService/Nope",
			"/no.such.Service/Get", "not-a-method", ""} {
			_, ok := p.Rule(m)
			require.False(t, ok, m)
		}
	})

	t.Run("AuthorizeGrantsAnyListedRoleAndDeniesTheRest", func(t *testing.T) {
		t.Parallel()
		get := customerv1.CustomerService_GetCustomer_FullMethodName
		require.NoError(t, p.Authorize(as("marketer"), get))
		require.NoError(t, p.Authorize(as("analyst", "agent"), get))
		require.Equal(t, codes.PermissionDenied, status.Code(p.Authorize(as("analyst"), get)))
		require.Equal(t, codes.PermissionDenied, status.Code(p.Authorize(as(), get)))
		require.Equal(t, codes.PermissionDenied, status.Code(p.Authorize(as("admin"), "/no.such.Service/Get")),
			"no rule: even admin is refused")
		require.Equal(t, codes.Unauthenticated, status.Code(p.Authorize(context.Background(), get)))
	})

	t.Run("RoleNames", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, "agent", authz.RoleName(accessv1.Role_ROLE_AGENT))
		require.ElementsMatch(t, []string{"admin", "supervisor", "agent", "marketer", "analyst", "service"}, authz.Roles())
	})
}
