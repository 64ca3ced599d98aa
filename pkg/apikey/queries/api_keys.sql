-- name: APIKeyInsert :one
INSERT INTO api_keys (tenant_id, id, display_name, roles, secret_hash, create_time, expire_time, created_by)
VALUES (@tenant_id, @id, @display_name, @roles, @secret_hash, @create_time, sqlc.narg(expire_time), @created_by)
RETURNING *;

-- name: APIKeyGet :one
SELECT * FROM api_keys WHERE tenant_id = @tenant_id AND id = @id;

-- APIKeyList is newest first, keyset-paged on id: rows after the cursor.
-- name: APIKeyList :many
SELECT * FROM api_keys
WHERE tenant_id = @tenant_id
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
ORDER BY id DESC
LIMIT @row_limit;

-- APIKeyRevoke sets revoke_time once: a revoked key matches no row, so the
-- caller can tell "revoked now" from "already revoked" (then APIKeyGet).
-- name: APIKeyRevoke :one
UPDATE api_keys
SET revoke_time = @revoke_time
WHERE tenant_id = @tenant_id AND id = @id AND revoke_time IS NULL
RETURNING *;

-- APIKeyLookup finds the key a call presents. It is not tenant-scoped: the
-- tenant is what the key, once its secret matches, tells us.
-- name: APIKeyLookup :one
SELECT * FROM api_keys WHERE id = @id;

-- APIKeyTouch records a use; it never moves last_used_time backwards, so
-- writes that arrive out of order are harmless.
-- name: APIKeyTouch :exec
UPDATE api_keys
SET last_used_time = @used_time
WHERE id = @id AND (last_used_time IS NULL OR last_used_time < @used_time);
