package apikey

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/authz"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
)

// ServiceName is the gRPC service Register adds, for health and readiness.
const ServiceName = "rapport.access.v1.AccessService"

// ServerConfig tunes a Server; zero values are defaults.
type ServerConfig struct {
	// Logger receives the audit lines of key creation and revocation (info):
	// tenant, key id, actor and request id, never a secret. Nil discards.
	Logger *slog.Logger
	// Now stamps create_time and revoke_time; nil means time.Now.
	Now func() time.Time
}

// Server implements accessv1.AccessServiceServer: the API that manages the
// caller's tenant's keys. The authz policy admits admins only (the method
// options in access.proto); every query is scoped by the caller's tenant, so
// another tenant's key is NOT_FOUND.
type Server struct {
	accessv1.UnimplementedAccessServiceServer
	pool  *pgxpool.Pool
	store store
	now   func() time.Time
	log   *slog.Logger
}

// NewServer returns a Server on pool, whose search_path must be Schema.
func NewServer(pool *pgxpool.Pool, cfg ServerConfig) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Server{pool: pool, store: newStore(), now: cfg.Now, log: cfg.Logger}
}

// Register adds the AccessService to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { accessv1.RegisterAccessServiceServer(r, s) }

// CreateApiKey stores a new key and returns it with its secret, once.
//
// With a request_id, the response is stored for retries in the schema's
// idempotency_keys table, secret included: a retry must get the first
// response, and the secret exists nowhere else. That row is deleted by the
// idempotency-key reaper after its TTL (48 h by default), so for that long a
// reader of the access schema could read a key created with a request_id.
func (s *Server) CreateApiKey(ctx context.Context, req *accessv1.CreateApiKeyRequest) (*accessv1.CreateApiKeyResponse, error) {
	tenant, actor, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetApiKey()
	roles, err := roleNames(in.GetRoles())
	if err != nil {
		return nil, err
	}
	var expire time.Time
	if ts := in.GetExpireTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "api_key.expire_time", Description: "is not a valid time"})
		}
		expire = ts.AsTime()
	}
	key := idem.Key{TenantID: tenant.String(), Principal: actor,
		Method: accessv1.AccessService_CreateApiKey_FullMethodName, RequestID: req.GetRequestId()}
	var created *apiKey // set only when this call ran the effect, not a replay
	resp, err := idem.Do(ctx, s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*accessv1.CreateApiKeyResponse, error) {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("new api key id: %w", err)
		}
		secret := newSecret()
		k, err := s.store.insert(ctx, tx, apiKey{
			TenantID: tenant, ID: id, DisplayName: in.GetDisplayName(), Roles: roles,
			CreateTime: s.now().UTC(), ExpireTime: expire, CreatedBy: actor,
		}, sha256.Sum256(secret))
		if err != nil {
			return nil, err
		}
		created = &k
		return &accessv1.CreateApiKeyResponse{ApiKey: toProto(k), Key: formatKey(id, secret)}, nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if created != nil {
		s.log.InfoContext(ctx, "api key created", "tenant", tenant.String(), "key_id", created.ID.String(),
			"actor", actor, "roles", created.Roles, "request_id", grpcx.RequestID(ctx))
	}
	return resp, nil
}

// ListApiKeys pages through the tenant's keys, newest first.
func (s *Server) ListApiKeys(ctx context.Context, req *accessv1.ListApiKeysRequest) (*accessv1.ListApiKeysResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	var before uuid.UUID
	if tok := req.GetPageToken(); tok != "" {
		if before, err = decodePageToken(tok); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "page_token", Description: "is not a token from this API"})
		}
	}
	keys, err := s.store.list(ctx, s.pool, tenant, before, size+1)
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &accessv1.ListApiKeysResponse{}
	if len(keys) > size {
		keys = keys[:size]
		resp.NextPageToken = encodePageToken(keys[len(keys)-1].ID)
	}
	for _, k := range keys {
		resp.ApiKeys = append(resp.ApiKeys, toProto(k))
	}
	return resp, nil
}

// GetApiKey returns one key of the tenant.
func (s *Server) GetApiKey(ctx context.Context, req *accessv1.GetApiKeyRequest) (*accessv1.ApiKey, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "id", Description: "must be a UUID"})
	}
	k, err := s.store.get(ctx, s.pool, tenant, id)
	if err != nil {
		return nil, toStatus(err)
	}
	return toProto(k), nil
}

// RevokeApiKey revokes a key of the tenant; a revoked key is returned as it
// is, so repeating the call (with or without the same request_id) is safe.
// Verifiers stop accepting the key within their cache TTL.
func (s *Server) RevokeApiKey(ctx context.Context, req *accessv1.RevokeApiKeyRequest) (*accessv1.ApiKey, error) {
	tenant, actor, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "id", Description: "must be a UUID"})
	}
	key := idem.Key{TenantID: tenant.String(), Principal: actor,
		Method: accessv1.AccessService_RevokeApiKey_FullMethodName, RequestID: req.GetRequestId()}
	revoked := false // this call revoked it, and it was not a replay
	resp, err := idem.Do(ctx, s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*accessv1.ApiKey, error) {
		k, revokedNow, err := s.store.revoke(ctx, tx, tenant, id, s.now().UTC())
		if err != nil {
			return nil, toStatus(err)
		}
		revoked = revokedNow
		return toProto(k), nil
	})
	if err != nil {
		return nil, toStatus(err)
	}
	if revoked {
		s.log.InfoContext(ctx, "api key revoked", "tenant", tenant.String(), "key_id", id.String(),
			"actor", actor, "request_id", grpcx.RequestID(ctx))
	}
	return resp, nil
}

// toStatus maps the package's errors; the rest pass to grpcx's mapping.
func toStatus(err error) error {
	if errors.Is(err, errNotFound) {
		return grpcx.NotFound("api key")
	}
	return err
}

// roleNames turns the request's roles into the names principals carry.
// protovalidate has refused unknown, unspecified and repeated roles already;
// this only keeps a request that skipped validation from storing them.
func roleNames(roles []accessv1.Role) ([]string, error) {
	out := make([]string, 0, len(roles))
	for i, r := range roles {
		if _, ok := accessv1.Role_name[int32(r)]; !ok || r == accessv1.Role_ROLE_UNSPECIFIED {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{
				Field: fmt.Sprintf("api_key.roles[%d]", i), Description: "must be a defined role"})
		}
		out = append(out, authz.RoleName(r))
	}
	if len(out) == 0 {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "api_key.roles", Description: "at least one role is required"})
	}
	return out, nil
}

// roleFromName is authz.RoleName's inverse; a name no enum value has (a role
// added later and rolled back) becomes ROLE_UNSPECIFIED.
func roleFromName(name string) accessv1.Role {
	return accessv1.Role(accessv1.Role_value["ROLE_"+strings.ToUpper(name)])
}

func toProto(k apiKey) *accessv1.ApiKey {
	out := &accessv1.ApiKey{
		Id: k.ID.String(), DisplayName: k.DisplayName, CreatedBy: k.CreatedBy,
		CreateTime: timestamppb.New(k.CreateTime), ExpireTime: optionalTime(k.ExpireTime),
		RevokeTime: optionalTime(k.RevokeTime), LastUsedTime: optionalTime(k.LastUsedTime),
	}
	for _, r := range k.Roles {
		out.Roles = append(out.Roles, roleFromName(r))
	}
	return out
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Page tokens carry the last id of the page; there are no filters to bind.
func encodePageToken(last uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString(last[:])
}

func decodePageToken(s string) (uuid.UUID, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return uuid.Nil, err
	}
	return uuid.FromBytes(b)
}
