package authn_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
)

func TestCaller(t *testing.T) {
	t.Parallel()
	const tenant = "0195f3c0-0000-7000-8000-00000000000a"

	tid, sub, err := authn.Caller(authn.NewContext(context.Background(), authn.Principal{Subject: "agent-1", TenantID: tenant}))
	require.NoError(t, err)
	require.Equal(t, tenant, tid.String())
	require.Equal(t, "agent-1", sub)

	for name, ctx := range map[string]context.Context{
		"NoPrincipal":   context.Background(),
		"TenantNotUUID": authn.NewContext(context.Background(), authn.Principal{Subject: "s", TenantID: "acme"}),
		"NoSubject":     authn.NewContext(context.Background(), authn.Principal{TenantID: tenant}),
	} {
		_, _, err := authn.Caller(ctx)
		require.Equal(t, codes.Unauthenticated, status.Code(err), name)
	}
}
