package authn

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrincipal(t *testing.T) {
	t.Parallel()

	t.Run("HasRoleMatchesExactly", func(t *testing.T) {
		t.Parallel()
		p := Principal{Roles: []string{"agent", "supervisor"}}

		require.True(t, p.HasRole("agent"))
		require.True(t, p.HasRole("supervisor"))
		require.False(t, p.HasRole("admin"))
		require.False(t, p.HasRole("Agent"))
		require.False(t, Principal{}.HasRole(""))
	})

	t.Run("ContextRoundTrip", func(t *testing.T) {
		t.Parallel()
		want := Principal{Subject: testSubject, TenantID: testTenantID, Roles: []string{"admin"}}

		got, ok := FromContext(NewContext(t.Context(), want))
		require.True(t, ok)
		require.Equal(t, want, got)
	})

	t.Run("EmptyContextHasNoPrincipal", func(t *testing.T) {
		t.Parallel()
		_, ok := FromContext(context.Background())
		require.False(t, ok)
	})

	t.Run("LookalikeKeyIsIgnored", func(t *testing.T) {
		t.Parallel()
		// Only NewContext can store a principal: a value under another
		// package's key, even of type Principal, is not one.
		type otherKey struct{}
		ctx := context.WithValue(t.Context(), otherKey{}, Principal{Subject: "mallory"})

		_, ok := FromContext(ctx)
		require.False(t, ok)
	})
}
