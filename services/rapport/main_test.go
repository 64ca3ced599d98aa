package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestRunRefusesBadInputBeforeConnecting(t *testing.T) {
	t.Parallel()
	// An unreachable database URL: if anything tried to connect, these
	// would fail differently (exit 1) or hang.
	base := map[string]string{"RAPPORT_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "RAPPORT_DEV": "true",
		"RAPPORT_DATA_DIR": t.TempDir()}
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"NoCommand", nil, base, "usage: rapport"},
		{"UnknownCommand", []string{"launch"}, base, `unknown command "launch"`},
		{"UnknownFlag", []string{"serve", "-nope"}, base, "flag provided but not defined: -nope"},
		{"UnknownTarget", []string{"serve", "-target=customer,billing"}, base, `unknown target "billing"`},
		{"NoCredentials", []string{"serve"}, map[string]string{"RAPPORT_DATA_DIR": t.TempDir()}, "RAPPORT_DEV=true"},
		{"BadDuration", []string{"serve"}, map[string]string{"RAPPORT_DEV": "true", "RAPPORT_SHUTDOWN_GRACE": "soon"}, "RAPPORT_SHUTDOWN_GRACE"},
		{"BadAddress", []string{"serve"}, map[string]string{"RAPPORT_DEV": "true", "RAPPORT_GRPC_ADDR": "9090"}, "RAPPORT_GRPC_ADDR"},
		{"BadTokenTenant", []string{"token", "-tenant", "acme"}, base, "tenant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var out, errb bytes.Buffer
			code := run(context.Background(), tc.args, &out, &errb, env(tc.env))
			require.Equal(t, 2, code, "stderr: %s", errb.String())
			require.Contains(t, errb.String(), tc.want)
		})
	}
}

func TestPrintConfigMasksSecrets(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"serve", "-print-config"}, &out, &errb, env(map[string]string{
		"RAPPORT_DATABASE_URL": "postgres://app:hunter2@db:5432/rapport", "RAPPORT_DEV": "true",
	}))
	require.Equal(t, 0, code, errb.String())
	require.NotContains(t, out.String(), "hunter2")
	var cfg map[string]any
	require.NoError(t, json.Unmarshal(out.Bytes(), &cfg))
	require.Equal(t, "all", cfg["targets"])
	require.True(t, strings.Contains(cfg["database_url"].(string), "REDACTED"))
}

func TestTokenMintsAVerifiableToken(t *testing.T) {
	t.Parallel()
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"token", "-roles", "agent,analyst"}, &out, &errb,
		env(map[string]string{"RAPPORT_DATA_DIR": t.TempDir()}))
	require.Equal(t, 0, code, errb.String())
	parts := strings.Split(strings.TrimSpace(out.String()), ".")
	require.Len(t, parts, 3, "a compact JWS")
}
