package compose

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/rapporthq/rapport/pkg/apikey"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
)

// keyAPI is the AccessService over one transport, for the cross-tenant
// matrix: it returns codes, not errors, so cases read the same on both.
type keyAPI struct {
	rest bool
	b    *testBundle
}

func (k keyAPI) create(t *testing.T, token string, roles ...accessv1.Role) (*accessv1.CreateApiKeyResponse, codes.Code) {
	t.Helper()
	key := &accessv1.ApiKey{DisplayName: "sync job", Roles: roles}
	if !k.rest {
		resp, err := accessv1.NewAccessServiceClient(k.b.grpcConn).CreateApiKey(authCtx(token), &accessv1.CreateApiKeyRequest{ApiKey: key})
		return resp, status.Code(err)
	}
	body, err := protojson.Marshal(key)
	require.NoError(t, err)
	r := k.b.call(t, http.MethodPost, "/v1/apiKeys", token, nil, string(body))
	if r.status != http.StatusOK {
		return nil, restCode(t, r)
	}
	resp := &accessv1.CreateApiKeyResponse{}
	require.NoError(t, protojson.Unmarshal([]byte(r.body), resp))
	return resp, codes.OK
}

func (k keyAPI) get(t *testing.T, token, id string) codes.Code {
	t.Helper()
	if !k.rest {
		_, err := accessv1.NewAccessServiceClient(k.b.grpcConn).GetApiKey(authCtx(token), &accessv1.GetApiKeyRequest{Id: id})
		return status.Code(err)
	}
	return restCode(t, k.b.call(t, http.MethodGet, "/v1/apiKeys/"+id, token, nil, ""))
}

func (k keyAPI) revoke(t *testing.T, token, id string) codes.Code {
	t.Helper()
	if !k.rest {
		_, err := accessv1.NewAccessServiceClient(k.b.grpcConn).RevokeApiKey(authCtx(token), &accessv1.RevokeApiKeyRequest{Id: id})
		return status.Code(err)
	}
	return restCode(t, k.b.call(t, http.MethodPost, "/v1/apiKeys/"+id+":revoke", token, nil, "{}"))
}

func (k keyAPI) list(t *testing.T, token string) []string {
	t.Helper()
	var keys []*accessv1.ApiKey
	if !k.rest {
		resp, err := accessv1.NewAccessServiceClient(k.b.grpcConn).ListApiKeys(authCtx(token), &accessv1.ListApiKeysRequest{PageSize: 500})
		require.NoError(t, err)
		keys = resp.GetApiKeys()
	} else {
		r := k.b.call(t, http.MethodGet, "/v1/apiKeys?pageSize=500", token, nil, "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		resp := &accessv1.ListApiKeysResponse{}
		require.NoError(t, protojson.Unmarshal([]byte(r.body), resp))
		keys = resp.GetApiKeys()
	}
	ids := make([]string, 0, len(keys))
	for _, key := range keys {
		ids = append(ids, key.GetId())
	}
	return ids
}

// authFailures lists the caller's tenant's refused calls and returns their
// request ids and the API key ids they name.
func (k keyAPI) authFailures(t *testing.T, token string) (requestIDs, keyIDs []string) {
	t.Helper()
	resp := &accessv1.ListAuthFailuresResponse{}
	if !k.rest {
		var err error
		resp, err = accessv1.NewAccessServiceClient(k.b.grpcConn).ListAuthFailures(authCtx(token), &accessv1.ListAuthFailuresRequest{PageSize: 500})
		require.NoError(t, err)
	} else {
		r := k.b.call(t, http.MethodGet, "/v1/authFailures?pageSize=500", token, nil, "")
		require.Equal(t, http.StatusOK, r.status, r.body)
		require.NoError(t, protojson.Unmarshal([]byte(r.body), resp))
	}
	for _, f := range resp.GetAuthFailures() {
		requestIDs = append(requestIDs, f.GetRequestId())
		if f.GetApiKeyId() != "" {
			keyIDs = append(keyIDs, f.GetApiKeyId())
		}
	}
	return requestIDs, keyIDs
}

// restCode reads the gRPC code from a REST error body; 200 is OK.
func restCode(t *testing.T, r httpReply) codes.Code {
	t.Helper()
	if r.status == http.StatusOK {
		return codes.OK
	}
	var e struct {
		Code int `json:"code"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.body), &e), r.body)
	return codes.Code(e.Code) //nolint:gosec // small enum
}

// accessCases are the AccessService rows of the cross-tenant matrix.
func accessCases(b *testBundle) map[string]func(t *testing.T, w world) {
	admin := []accessv1.Role{accessv1.Role_ROLE_ADMIN}
	return map[string]func(t *testing.T, w world){
		accessv1.AccessService_GetApiKey_FullMethodName: func(t *testing.T, w world) {
			k := keyAPI{rest: w.api.name() == "REST", b: b}
			yKey, code := k.create(t, w.y, admin...)
			require.Equal(t, codes.OK, code)
			require.Equal(t, codes.NotFound, k.get(t, w.x, yKey.GetApiKey().GetId()))
		},
		accessv1.AccessService_RevokeApiKey_FullMethodName: func(t *testing.T, w world) {
			k := keyAPI{rest: w.api.name() == "REST", b: b}
			yKey, code := k.create(t, w.y, admin...)
			require.Equal(t, codes.OK, code)
			require.Equal(t, codes.NotFound, k.revoke(t, w.x, yKey.GetApiKey().GetId()))
			// Y's key still works: it authenticates Y's own call.
			require.Contains(t, k.list(t, yKey.GetKey()), yKey.GetApiKey().GetId())
		},
		accessv1.AccessService_ListApiKeys_FullMethodName: func(t *testing.T, w world) {
			k := keyAPI{rest: w.api.name() == "REST", b: b}
			_, code := k.create(t, w.y, admin...)
			require.Equal(t, codes.OK, code)
			require.Empty(t, k.list(t, w.x), "X sees none of Y's keys")
		},
		accessv1.AccessService_ListAuthFailures_FullMethodName: func(t *testing.T, w world) {
			k := keyAPI{rest: w.api.name() == "REST", b: b}
			yKey, code := k.create(t, w.y, accessv1.Role_ROLE_AGENT)
			require.Equal(t, codes.OK, code)
			// Two refusals of Y's: its agent key calling an admin-only
			// method (authorization), and its key id with a wrong secret
			// (authentication, attributed through the key).
			denied, wrongSecret := uuid.NewString(), uuid.NewString()
			client := accessv1.NewAccessServiceClient(b.grpcConn)
			_, err := client.ListApiKeys(metadata.AppendToOutgoingContext(authCtx(yKey.GetKey()), grpcx.RequestIDHeader, denied),
				&accessv1.ListApiKeysRequest{})
			require.Equal(t, codes.PermissionDenied, status.Code(err))
			forged := yKey.GetKey()[:len(apikey.Prefix)+32+1] + strings.Repeat("A", 43)
			_, err = client.ListApiKeys(metadata.AppendToOutgoingContext(authCtx(forged), grpcx.RequestIDHeader, wrongSecret),
				&accessv1.ListApiKeysRequest{})
			require.Equal(t, codes.Unauthenticated, status.Code(err))
			// Written off the call path: Y sees both once they are.
			require.Eventually(t, func() bool {
				ids, _ := k.authFailures(t, w.y)
				return slices.Contains(ids, denied) && slices.Contains(ids, wrongSecret)
			}, 10*time.Second, 20*time.Millisecond, "Y sees its own refusals: the case is not vacuous")
			xIDs, xKeys := k.authFailures(t, w.x)
			require.NotContains(t, xIDs, denied, "X sees none of Y's refusals")
			require.NotContains(t, xIDs, wrongSecret)
			require.NotContains(t, xKeys, yKey.GetApiKey().GetId())
		},
		accessv1.AccessService_CreateApiKey_FullMethodName: func(t *testing.T, w world) {
			k := keyAPI{rest: w.api.name() == "REST", b: b}
			xKey, code := k.create(t, w.x, accessv1.Role_ROLE_AGENT)
			require.Equal(t, codes.OK, code)
			require.Equal(t, codes.NotFound, k.get(t, w.y, xKey.GetApiKey().GetId()))
			// The new key acts as tenant X with the agent role: it sees X's
			// customers (none) and not Y's, and cannot manage keys.
			l := w.api.list(t, xKey.GetKey(), nil)
			require.Equal(t, codes.OK, l.code)
			require.Empty(t, l.list.GetCustomers())
			require.Equal(t, codes.NotFound, w.api.get(t, xKey.GetKey(), w.yCustomer.GetId()).code)
			_, code = k.create(t, xKey.GetKey(), admin...)
			require.Equal(t, codes.PermissionDenied, code, "an agent key cannot mint keys")
		},
	}
}
