-- name: ConsentTokenInsert :exec
INSERT INTO consent_tokens (tenant_id, token_hash, customer_id, channel, purpose, version, create_time, expire_time)
VALUES (@tenant_id, @token_hash, @customer_id, @channel, @purpose, @version, @create_time, @expire_time);

-- name: ConsentTokenGet :one
SELECT * FROM consent_tokens WHERE tenant_id = @tenant_id AND token_hash = @token_hash;

-- name: ConsentTokenGetForUpdate :one
SELECT * FROM consent_tokens WHERE tenant_id = @tenant_id AND token_hash = @token_hash FOR UPDATE;

-- name: ConsentTokenUse :execrows
UPDATE consent_tokens SET use_time = @now::timestamptz
WHERE tenant_id = @tenant_id AND token_hash = @token_hash
  AND use_time IS NULL AND revoke_time IS NULL AND expire_time > @now::timestamptz;

-- name: ConsentTokenRevokeOpen :execrows
-- Voids the open tokens of a channel × purpose: a later decision supersedes them.
UPDATE consent_tokens SET revoke_time = @now::timestamptz
WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND channel = @channel AND purpose = @purpose
  AND use_time IS NULL AND revoke_time IS NULL;
