package apikey_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/apikey"
	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

const (
	roleAdmin = accessv1.Role_ROLE_ADMIN
	roleAgent = accessv1.Role_ROLE_AGENT
)

var keyShape = regexp.MustCompile(`^rk_[0-9a-f]{32}_[A-Za-z0-9_-]{43}$`)

func TestCreateApiKey(t *testing.T) {
	t.Parallel()

	t.Run("ReturnedKeyAuthenticatesACall", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAdmin)

		got, err := b.client.GetApiKey(bearer(created.GetKey()), &accessv1.GetApiKeyRequest{Id: created.GetApiKey().GetId()})
		require.NoError(t, err)
		got.LastUsedTime = nil // this very call may have set it already
		require.True(t, proto.Equal(created.GetApiKey(), got), "(-want +got)\n%v\n%v", created.GetApiKey(), got)
	})

	t.Run("KeyWithoutAdminIsPermissionDenied", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		agent := b.createKey(t, roleAgent)

		// Authenticated (not UNAUTHENTICATED), then refused by the policy.
		require.Equal(t, codes.PermissionDenied, b.useKey(agent.GetKey()))
		_, err := b.client.CreateApiKey(bearer(agent.GetKey()), &accessv1.CreateApiKeyRequest{
			ApiKey: &accessv1.ApiKey{DisplayName: "escalate", Roles: []accessv1.Role{roleAdmin}}})
		require.Equal(t, codes.PermissionDenied, status.Code(err))
	})

	t.Run("HasTheDocumentedShape", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAgent, roleAdmin)
		k := created.GetApiKey()

		require.Regexp(t, keyShape, created.GetKey())
		id, err := uuid.Parse(k.GetId())
		require.NoError(t, err)
		require.Equal(t, uuid.Version(7), id.Version())
		require.Equal(t, "rk_"+strings.ReplaceAll(k.GetId(), "-", "")+"_", created.GetKey()[:36])
		require.Equal(t, []accessv1.Role{roleAgent, roleAdmin}, k.GetRoles())
		require.Equal(t, adminA, k.GetCreatedBy())
		require.Equal(t, "test key", k.GetDisplayName())
		require.WithinDuration(t, b.clock.Now(), k.GetCreateTime().AsTime(), time.Millisecond)
		require.Nil(t, k.GetExpireTime())
		require.Nil(t, k.GetRevokeTime())
		require.Nil(t, k.GetLastUsedTime())
	})

	t.Run("AdminKeyCreatesKeysAsItself", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		admin := b.createKey(t, roleAdmin)

		child := b.createKeyAs(t, bearer(admin.GetKey()), &accessv1.ApiKey{DisplayName: "child", Roles: []accessv1.Role{roleAgent}})
		require.Equal(t, "apikey:"+admin.GetApiKey().GetId(), child.GetApiKey().GetCreatedBy())
		require.Equal(t, codes.PermissionDenied, b.useKey(child.GetKey()))
	})

	t.Run("IsIdempotentUnderConcurrency", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		req := &accessv1.CreateApiKeyRequest{
			ApiKey:    &accessv1.ApiKey{DisplayName: "once", Roles: []accessv1.Role{roleAdmin}},
			RequestId: uuid.NewString(),
		}
		const n = 50
		resps := make([]*accessv1.CreateApiKeyResponse, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { resps[i], errs[i] = b.client.CreateApiKey(bearer(adminTokenA), req) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i], "call %d", i)
			require.True(t, proto.Equal(resps[0], resps[i]), "call %d answered differently", i)
		}
		var rows int
		require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM api_keys").Scan(&rows))
		require.Equal(t, 1, rows)
		require.Len(t, b.logs.Lines(t, "api key created"), 1)
		require.Equal(t, codes.OK, b.useKey(resps[0].GetKey()))

		// The same request id with another payload is refused by name.
		other := proto.Clone(req).(*accessv1.CreateApiKeyRequest)
		other.ApiKey.DisplayName = "twice"
		_, err := b.client.CreateApiKey(bearer(adminTokenA), other)
		requireField(t, err, "request_id")
	})

	t.Run("RejectsBadInputNamingTheField", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		past := timestamppb.New(time.Now().Add(-time.Minute))
		admin := []accessv1.Role{roleAdmin}
		for _, tc := range []struct {
			name  string
			req   *accessv1.CreateApiKeyRequest
			field string
		}{
			{"NoApiKey", &accessv1.CreateApiKeyRequest{}, "api_key"},
			{"EmptyDisplayName", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{Roles: admin}}, "api_key.display_name"},
			{"BlankDisplayName", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "   ", Roles: admin}}, "api_key.display_name"},
			{"LongDisplayName", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: strings.Repeat("x", 101), Roles: admin}}, "api_key.display_name"},
			{"NoRoles", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k"}}, "api_key.roles"},
			{"UnspecifiedRole", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k",
				Roles: []accessv1.Role{accessv1.Role_ROLE_UNSPECIFIED}}}, "api_key.roles"},
			{"UndefinedRole", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k",
				Roles: []accessv1.Role{accessv1.Role(99)}}}, "api_key.roles"},
			{"RepeatedRole", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k",
				Roles: []accessv1.Role{roleAgent, roleAgent}}}, "api_key.roles"},
			{"ExpireTimeInThePast", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k", Roles: admin,
				ExpireTime: past}}, "api_key.expire_time"},
			{"RequestIDNotAUUID", &accessv1.CreateApiKeyRequest{ApiKey: &accessv1.ApiKey{DisplayName: "k", Roles: admin},
				RequestId: "not-a-uuid"}, "request_id"},
		} {
			_, err := b.client.CreateApiKey(bearer(adminTokenA), tc.req)
			requireField(t, err, tc.field)
		}
		_, err := b.client.GetApiKey(bearer(adminTokenA), &accessv1.GetApiKeyRequest{Id: "not-a-uuid"})
		requireField(t, err, "id")
		_, err = b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: "not-a-uuid"})
		requireField(t, err, "id")
		_, err = b.client.ListApiKeys(bearer(adminTokenA), &accessv1.ListApiKeysRequest{PageSize: -1})
		requireField(t, err, "page_size")
		_, err = b.client.ListApiKeys(bearer(adminTokenA), &accessv1.ListApiKeysRequest{PageToken: "!!"})
		requireField(t, err, "page_token")

		var rows int
		require.NoError(t, b.pool.QueryRow(context.Background(), "SELECT count(*) FROM api_keys").Scan(&rows))
		require.Zero(t, rows)
	})
}

func TestSecrets(t *testing.T) {
	t.Parallel()

	t.Run("NeverInResponsesOrLogs", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAdmin)
		key, secret := created.GetKey(), secretOf(created.GetKey())
		raw, err := base64.RawURLEncoding.DecodeString(secret)
		require.NoError(t, err)
		hash := sha256.Sum256(raw)

		// Use the key, well and badly, and revoke it, so every log line the
		// package and the server write about keys is there to search.
		require.Equal(t, codes.OK, b.useKey(key))
		require.Equal(t, codes.Unauthenticated, b.useKey(key[:len(key)-1]+flip(key[len(key)-1])))
		require.Equal(t, codes.Unauthenticated, b.useKey(key+"x"))
		list, err := b.client.ListApiKeys(bearer(key), &accessv1.ListApiKeysRequest{})
		require.NoError(t, err)
		got := b.get(t, created.GetApiKey().GetId())
		_, err = b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: got.GetId()})
		require.NoError(t, err)

		forbidden := []string{secret, hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw),
			hex.EncodeToString(hash[:]), base64.StdEncoding.EncodeToString(hash[:]), base64.RawURLEncoding.EncodeToString(hash[:])}
		for _, m := range []proto.Message{list, got} {
			text := protojson.Format(m)
			bin, err := proto.Marshal(m)
			require.NoError(t, err)
			for _, f := range forbidden {
				require.NotContains(t, text, f)
			}
			require.False(t, strings.Contains(string(bin), string(raw)) || strings.Contains(string(bin), string(hash[:])))
		}
		logs := b.logs.String()
		require.NotEmpty(t, b.logs.Lines(t, "call refused: api key rejected"))
		for _, f := range forbidden {
			require.NotContains(t, logs, f)
		}
	})

	t.Run("DatabaseHoldsOnlyTheHash", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAdmin)
		secret := secretOf(created.GetKey())
		raw, err := base64.RawURLEncoding.DecodeString(secret)
		require.NoError(t, err)

		var row string
		var stored []byte
		require.NoError(t, b.pool.QueryRow(context.Background(),
			"SELECT to_jsonb(k)::text, secret_hash FROM api_keys k").Scan(&row, &stored))
		for _, f := range []string{secret, hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw)} {
			require.NotContains(t, row, f)
		}
		want := sha256.Sum256(raw)
		require.Equal(t, want[:], stored)
	})
}

func TestVerify(t *testing.T) {
	t.Parallel()

	t.Run("WrongSecretIsRefusedAndNotServedFromCache", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		key := b.createKey(t, roleAdmin).GetKey()
		wrong := key[:len(key)-2] + "AA"
		if wrong == key {
			wrong = key[:len(key)-2] + "BA"
		}

		require.Equal(t, codes.OK, b.useKey(key))
		require.Equal(t, 1, b.queries.count("APIKeyLookup"))
		// The right key is cached now; the wrong secret must still be
		// looked up and refused.
		require.Equal(t, codes.Unauthenticated, b.useKey(wrong))
		require.Equal(t, 2, b.queries.count("APIKeyLookup"))
		require.Equal(t, codes.Unauthenticated, b.useKey(wrong)) // refusal cached
		require.Equal(t, codes.OK, b.useKey(key))                // and the refusal did not spoil the key
		require.Equal(t, 2, b.queries.count("APIKeyLookup"))
	})

	t.Run("ConcurrentMissesShareOneLookup", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAdmin, roleAgent)
		var wg sync.WaitGroup
		errs := make([]error, 50)
		prins := make([]authn.Principal, 50)
		for i := range errs {
			wg.Go(func() { prins[i], errs[i] = b.verifier.Verify(context.Background(), created.GetKey()) })
		}
		wg.Wait()
		for i := range errs {
			require.NoError(t, errs[i])
			require.Equal(t, authn.Principal{Subject: "apikey:" + created.GetApiKey().GetId(), TenantID: tenantA,
				Roles: []string{"admin", "agent"}}, prins[i])
		}
		require.Equal(t, 1, b.queries.count("APIKeyLookup"))

		b.clock.Advance(29 * time.Second)
		_, err := b.verifier.Verify(context.Background(), created.GetKey())
		require.NoError(t, err)
		require.Equal(t, 1, b.queries.count("APIKeyLookup"))
		b.clock.Advance(time.Second) // the default TTL, 30 s, has passed
		_, err = b.verifier.Verify(context.Background(), created.GetKey())
		require.NoError(t, err)
		require.Equal(t, 2, b.queries.count("APIKeyLookup"))
	})

	t.Run("RevokedIsRefusedWithinCacheTTL", func(t *testing.T) {
		t.Parallel()
		b := setup(t, &setupOpts{cacheTTL: 10 * time.Second})
		used := b.createKey(t, roleAdmin)
		unused := b.createKey(t, roleAdmin)
		require.Equal(t, codes.OK, b.useKey(used.GetKey()))

		for _, k := range []*accessv1.CreateApiKeyResponse{used, unused} {
			_, err := b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: k.GetApiKey().GetId()})
			require.NoError(t, err)
		}
		require.Equal(t, codes.Unauthenticated, b.useKey(unused.GetKey()))
		// The documented window: a replica that verified the key just before
		// keeps accepting it until its cache entry ends.
		require.Equal(t, codes.OK, b.useKey(used.GetKey()))
		b.clock.Advance(10 * time.Second)
		require.Equal(t, codes.Unauthenticated, b.useKey(used.GetKey()))
	})

	t.Run("ExpiredIsRefusedAtOnce", func(t *testing.T) {
		t.Parallel()
		// A TTL longer than the key's life: expiry must not wait for it.
		b := setup(t, &setupOpts{cacheTTL: 24 * time.Hour})
		expire := b.clock.Now().Add(time.Hour)
		created := b.createKeyAs(t, bearer(adminTokenA), &accessv1.ApiKey{DisplayName: "short-lived",
			Roles: []accessv1.Role{roleAdmin}, ExpireTime: timestamppb.New(expire)})
		require.WithinDuration(t, expire, created.GetApiKey().GetExpireTime().AsTime(), time.Microsecond)

		require.Equal(t, codes.OK, b.useKey(created.GetKey()))
		b.clock.Advance(time.Hour - time.Second)
		require.Equal(t, codes.OK, b.useKey(created.GetKey()))
		b.clock.Advance(time.Second)
		require.Equal(t, codes.Unauthenticated, b.useKey(created.GetKey()))
	})

	t.Run("LastUsedTimeIsSetAfterUseAtMostOncePerMinute", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAdmin)
		id := created.GetApiKey().GetId()
		first := b.clock.Now()
		for range 5 {
			require.Equal(t, codes.OK, b.useKey(created.GetKey()))
		}
		require.Eventually(t, func() bool { return b.get(t, id).GetLastUsedTime() != nil },
			5*time.Second, 10*time.Millisecond)
		require.WithinDuration(t, first, b.get(t, id).GetLastUsedTime().AsTime(), time.Microsecond)
		require.Equal(t, 1, b.queries.count("APIKeyTouch"))

		b.clock.Advance(time.Minute)
		require.Equal(t, codes.OK, b.useKey(created.GetKey()))
		require.Eventually(t, func() bool { return b.get(t, id).GetLastUsedTime().AsTime().After(first) },
			5*time.Second, 10*time.Millisecond)
		require.Equal(t, 2, b.queries.count("APIKeyTouch"))
	})

	t.Run("BogusKeysAreUnauthenticatedNeverInternal", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.createKey(t, roleAdmin) // a real key exists beside the bogus ones
		jwtCalls := b.jwtCalls.Load()
		const n, workers = 1000, 16
		keys := make(chan string, n)
		for range n {
			keys <- bogusKey(t)
		}
		close(keys)
		var (
			mu  sync.Mutex
			got = map[codes.Code]int{}
			wg  sync.WaitGroup
		)
		for range workers {
			wg.Go(func() {
				for k := range keys {
					c := b.useKey(k)
					mu.Lock()
					got[c]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		require.Equal(t, map[codes.Code]int{codes.Unauthenticated: n}, got)
		require.Equal(t, jwtCalls, b.jwtCalls.Load(), "rk_ tokens must never reach the JWT check")
	})

	t.Run("MalformedKeysAreUnauthenticatedWithoutALookup", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		good := b.createKey(t, roleAdmin).GetKey()
		id, secret := good[3:35], secretOf(good)
		jwtCalls := b.jwtCalls.Load()
		for name, k := range map[string]string{
			"PrefixOnly":        "rk_",
			"Short":             "rk_abc",
			"IDTooShort":        "rk_" + id[:31] + "_" + secret + "A",
			"IDTooLong":         "rk_" + id + "0" + "_" + secret[1:],
			"IDUpperCase":       "rk_" + strings.ToUpper(id) + "_" + secret,
			"IDNotHex":          "rk_" + "g" + id[1:] + "_" + secret,
			"IDNotVersion7":     "rk_" + strings.ReplaceAll(uuid.New().String(), "-", "") + "_" + secret,
			"NoSeparator":       "rk_" + id + "X" + secret,
			"SecretTooShort":    "rk_" + id + "_" + secret[1:],
			"SecretTooLong":     "rk_" + id + "_" + secret + "A",
			"SecretStdAlphabet": "rk_" + id + "_" + "+" + secret[1:],
			"SecretSlash":       "rk_" + id + "_" + "/" + secret[1:],
			"SecretPadded":      "rk_" + id + "_" + secret[:42] + "=",
			"SecretSpace":       "rk_" + id + "_" + " " + secret[1:],
			"SecretNonCanonical": "rk_" + id + "_" + secret[:42] +
				string(nonCanonical(secret[42])),
			"NonASCII":      "rk_" + id + "_" + "é" + secret[2:],
			"SecretNewline": "rk_" + id + "_" + secret[:21] + "\n" + secret[22:],
		} {
			_, err := b.verifier.Verify(context.Background(), k)
			require.ErrorIs(t, err, authn.ErrUnauthenticated, name)
			if len(k) > len("rk_") {
				require.NotContains(t, err.Error(), k[len("rk_"):], "%s: the error quotes the key", name)
			}
			// gRPC clients cannot send the others in metadata at all.
			if printable(k) {
				require.Equal(t, codes.Unauthenticated, b.useKey(k), name)
			}
		}
		require.Zero(t, b.queries.count("APIKeyLookup"), "malformed keys must not reach the database")
		require.Equal(t, jwtCalls, b.jwtCalls.Load(), "rk_ tokens must never reach the JWT check")
		require.Equal(t, codes.OK, b.useKey(good))
	})

	t.Run("OtherTokensGoToTheJWTCheck", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		require.Equal(t, codes.OK, b.useKey(adminTokenA))
		require.Equal(t, codes.Unauthenticated, b.useKey("eyJhbGciOiJFUzI1NiJ9.e30.sig"))
		_, err := b.client.ListApiKeys(context.Background(), &accessv1.ListApiKeysRequest{})
		require.Equal(t, codes.Unauthenticated, status.Code(err))
		require.Equal(t, int64(3), b.jwtCalls.Load())
	})

	t.Run("UnreadableKeysAreUnavailableNotUnauthenticated", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		key := b.createKey(t, roleAdmin).GetKey()
		pool := pgdbtest.Pool(t, b.dbURL, apikey.Schema)
		pool.Close() // the database is out of reach
		v := apikey.NewVerifier(pool, apikey.VerifierConfig{})

		_, err := v.Verify(context.Background(), key)
		require.Error(t, err)
		require.NotErrorIs(t, err, authn.ErrUnauthenticated)
		ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+key))
		_, err = apikey.AuthFunc(b.jwt, v)(ctx)
		require.Equal(t, codes.Unavailable, status.Code(err))
	})
}

func TestRevokeApiKey(t *testing.T) {
	t.Parallel()

	t.Run("RevokingTwiceReturnsTheSameKey", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		id := b.createKey(t, roleAdmin).GetApiKey().GetId()

		first, err := b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: id})
		require.NoError(t, err)
		require.WithinDuration(t, b.clock.Now(), first.GetRevokeTime().AsTime(), time.Microsecond)
		b.clock.Advance(time.Hour)
		second, err := b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: id, RequestId: uuid.NewString()})
		require.NoError(t, err)
		require.True(t, proto.Equal(first, second), "(-want +got)\n%v\n%v", first, second)
		require.True(t, proto.Equal(first, b.get(t, id)))

		lines := b.logs.Lines(t, "api key revoked")
		require.Len(t, lines, 1, "only the call that revoked is audited")
		require.Equal(t, tenantA, lines[0]["tenant"])
		require.Equal(t, id, lines[0]["key_id"])
		require.Equal(t, adminA, lines[0]["actor"])
		require.Equal(t, "INFO", lines[0]["level"])
	})

	t.Run("UnknownKeyIsNotFound", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		_, err := b.client.RevokeApiKey(bearer(adminTokenA), &accessv1.RevokeApiKeyRequest{Id: uuid.Must(uuid.NewV7()).String()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})
}

func TestAudit(t *testing.T) {
	t.Parallel()

	t.Run("CreationNamesTenantKeyAndActor", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		created := b.createKey(t, roleAgent)

		lines := b.logs.Lines(t, "api key created")
		require.Len(t, lines, 1)
		require.Equal(t, "INFO", lines[0]["level"])
		require.Equal(t, tenantA, lines[0]["tenant"])
		require.Equal(t, created.GetApiKey().GetId(), lines[0]["key_id"])
		require.Equal(t, adminA, lines[0]["actor"])
		require.Equal(t, []any{"agent"}, lines[0]["roles"])
		require.NotContains(t, b.logs.String(), secretOf(created.GetKey()))
	})
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()

	t.Run("AnotherTenantsAdminCannotSeeOrRevoke", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		a := b.createKey(t, roleAdmin)
		bKey := b.createKeyAs(t, bearer(adminTokenB), &accessv1.ApiKey{DisplayName: "b's", Roles: []accessv1.Role{roleAdmin}})
		id := a.GetApiKey().GetId()

		for _, ctx := range []context.Context{bearer(adminTokenB), bearer(bKey.GetKey())} {
			_, err := b.client.GetApiKey(ctx, &accessv1.GetApiKeyRequest{Id: id})
			require.Equal(t, codes.NotFound, status.Code(err))
			_, err = b.client.RevokeApiKey(ctx, &accessv1.RevokeApiKeyRequest{Id: id})
			require.Equal(t, codes.NotFound, status.Code(err))
			list, err := b.client.ListApiKeys(ctx, &accessv1.ListApiKeysRequest{})
			require.NoError(t, err)
			require.Len(t, list.GetApiKeys(), 1)
			require.Equal(t, bKey.GetApiKey().GetId(), list.GetApiKeys()[0].GetId())
		}
		require.Nil(t, b.get(t, id).GetRevokeTime())
		require.Equal(t, codes.OK, b.useKey(a.GetKey()))
	})
}

func TestListApiKeys(t *testing.T) {
	t.Parallel()

	t.Run("PagesNewestFirst", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		var want []string
		for range 5 {
			want = append([]string{b.createKey(t, roleAgent).GetApiKey().GetId()}, want...)
		}
		var got []string
		req := &accessv1.ListApiKeysRequest{PageSize: 2}
		for pages := 1; ; pages++ {
			resp, err := b.client.ListApiKeys(bearer(adminTokenA), req)
			require.NoError(t, err)
			require.LessOrEqual(t, len(resp.GetApiKeys()), 2)
			for _, k := range resp.GetApiKeys() {
				got = append(got, k.GetId())
			}
			if resp.GetNextPageToken() == "" {
				require.Equal(t, 3, pages)
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		require.Equal(t, want, got)
	})
}

func printable(s string) bool {
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// bogusKey is a well-formed key that was never issued.
func bogusKey(tb testing.TB) string {
	tb.Helper()
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	id := uuid.Must(uuid.NewV7())
	return fmt.Sprintf("rk_%s_%s", hex.EncodeToString(id[:]), base64.RawURLEncoding.EncodeToString(secret))
}

// flip returns another base64url character whose top four bits match c's,
// so the key stays canonical but its secret changes.
func flip(c byte) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return string(alphabet[i^4])
}

// nonCanonical returns a character that differs from c only in the two low
// bits the 43rd base64 character wastes, which a strict decoder refuses.
func nonCanonical(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i|1]
}

func TestAccessService(t *testing.T) {
	t.Parallel()

	t.Run("EveryMethodIsAdminOnly", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, accessv1.AccessService_ServiceDesc.ServiceName, apikey.ServiceName)
		policy := &authz.Policy{}
		require.Len(t, accessv1.AccessService_ServiceDesc.Methods, 5)
		for _, m := range accessv1.AccessService_ServiceDesc.Methods {
			roles, ok := policy.Rule("/" + apikey.ServiceName + "/" + m.MethodName)
			require.True(t, ok, m.MethodName)
			require.Equal(t, []string{"admin"}, roles, m.MethodName)
		}
	})
}
