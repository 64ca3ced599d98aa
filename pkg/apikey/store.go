package apikey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/pkg/apikey/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

// errNotFound means no such key in the tenant (or, for lookup, at all).
var errNotFound = errors.New("api key not found")

// apiKey is a key's record as the rest of the package sees it. It has no
// secret hash: only lookup, for the verifier, reads that. Zero times are
// unset.
type apiKey struct {
	TenantID     uuid.UUID
	ID           uuid.UUID
	DisplayName  string
	Roles        []string
	CreateTime   time.Time
	ExpireTime   time.Time
	RevokeTime   time.Time
	LastUsedTime time.Time
	CreatedBy    string
}

// credential is what verifying a presented key needs.
type credential struct {
	TenantID   uuid.UUID
	Roles      []string
	Hash       []byte
	ExpireTime time.Time
	RevokeTime time.Time
}

// store runs the access schema's queries; sqlc rows never leave it.
type store struct{ q *dbgen.Queries }

func newStore() store { return store{q: dbgen.New()} }

func (s store) insert(ctx context.Context, db dbgen.DBTX, k apiKey, hash secretHash) (apiKey, error) {
	row, err := s.q.APIKeyInsert(ctx, db, dbgen.APIKeyInsertParams{
		TenantID: k.TenantID, ID: k.ID, DisplayName: k.DisplayName, Roles: k.Roles,
		SecretHash: hash[:], CreateTime: k.CreateTime, ExpireTime: nullTime(k.ExpireTime),
		CreatedBy: k.CreatedBy,
	})
	if err != nil {
		return apiKey{}, interpret("insert api key", err)
	}
	return fromRow(row), nil
}

func (s store) get(ctx context.Context, db dbgen.DBTX, tenantID, id uuid.UUID) (apiKey, error) {
	row, err := s.q.APIKeyGet(ctx, db, dbgen.APIKeyGetParams{TenantID: tenantID, ID: id})
	if err != nil {
		return apiKey{}, interpret("get api key", err)
	}
	return fromRow(row), nil
}

// list returns up to limit keys of the tenant, newest first, older than
// before (uuid.Nil: from the newest).
func (s store) list(ctx context.Context, db dbgen.DBTX, tenantID, before uuid.UUID, limit int) ([]apiKey, error) {
	p := dbgen.APIKeyListParams{TenantID: tenantID, RowLimit: int32(limit)} //nolint:gosec // bounded by the caller
	if before != uuid.Nil {
		p.BeforeID = uuid.NullUUID{UUID: before, Valid: true}
	}
	rows, err := s.q.APIKeyList(ctx, db, p)
	if err != nil {
		return nil, interpret("list api keys", err)
	}
	out := make([]apiKey, len(rows))
	for i, r := range rows {
		out[i] = fromRow(r)
	}
	return out, nil
}

// revoke sets the key's revoke_time to now unless it is already revoked, and
// reports whether this call revoked it.
func (s store) revoke(ctx context.Context, db dbgen.DBTX, tenantID, id uuid.UUID, now time.Time) (apiKey, bool, error) {
	row, err := s.q.APIKeyRevoke(ctx, db, dbgen.APIKeyRevokeParams{TenantID: tenantID, ID: id, RevokeTime: &now})
	if err == nil {
		return fromRow(row), true, nil
	}
	if err = interpret("revoke api key", err); !errors.Is(err, errNotFound) {
		return apiKey{}, false, err
	}
	// No row changed: the key is already revoked, or not the tenant's.
	k, err := s.get(ctx, db, tenantID, id)
	return k, false, err
}

// lookup reads the key a call presents, in whichever tenant it is.
func (s store) lookup(ctx context.Context, db dbgen.DBTX, id uuid.UUID) (credential, error) {
	row, err := s.q.APIKeyLookup(ctx, db, id)
	if err != nil {
		return credential{}, interpret("look up api key", err)
	}
	return credential{
		TenantID: row.TenantID, Roles: row.Roles, Hash: row.SecretHash,
		ExpireTime: timeOrZero(row.ExpireTime), RevokeTime: timeOrZero(row.RevokeTime),
	}, nil
}

func (s store) touch(ctx context.Context, db dbgen.DBTX, id uuid.UUID, used time.Time) error {
	if err := s.q.APIKeyTouch(ctx, db, dbgen.APIKeyTouchParams{ID: id, UsedTime: &used}); err != nil {
		return interpret("record api key use", err)
	}
	return nil
}

func fromRow(r dbgen.APIKey) apiKey {
	return apiKey{
		TenantID: r.TenantID, ID: r.ID, DisplayName: r.DisplayName, Roles: r.Roles,
		CreateTime: r.CreateTime.UTC(), ExpireTime: timeOrZero(r.ExpireTime),
		RevokeTime: timeOrZero(r.RevokeTime), LastUsedTime: timeOrZero(r.LastUsedTime),
		CreatedBy: r.CreatedBy,
	}
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func timeOrZero(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// interpret classifies a database error once; a missing row is errNotFound.
func interpret(doing string, err error) error {
	err = pgdb.Classify(err)
	if errors.Is(err, pgdb.ErrNotFound) {
		return errNotFound
	}
	return fmt.Errorf("%s: %w", doing, err)
}
