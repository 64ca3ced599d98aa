-- name: ConsentStateList :many
SELECT * FROM consent_states
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY channel, purpose;

-- name: ConsentStateGet :one
SELECT * FROM consent_states
WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND channel = @channel AND purpose = @purpose;

-- name: ConsentStatePut :exec
INSERT INTO consent_states (tenant_id, customer_id, channel, purpose, state, legal_basis, source,
                            capture_time, version, update_time)
VALUES (@tenant_id, @customer_id, @channel, @purpose, @state, @legal_basis, @source,
        @capture_time, @version, @update_time)
ON CONFLICT (tenant_id, customer_id, channel, purpose) DO UPDATE
SET state = EXCLUDED.state, legal_basis = EXCLUDED.legal_basis, source = EXCLUDED.source,
    capture_time = EXCLUDED.capture_time, version = EXCLUDED.version, update_time = EXCLUDED.update_time;

-- name: ConsentEventInsert :exec
INSERT INTO consent_events (tenant_id, customer_id, version, id, channel, purpose, state, previous_state,
                            legal_basis, source, capture_time, record_time, actor, request_id)
VALUES (@tenant_id, @customer_id, @version, @id, @channel, @purpose, @state, @previous_state,
        @legal_basis, @source, @capture_time, @record_time, @actor, @request_id);

-- name: ConsentEventList :many
-- Newest first, keyset-paged on version.
SELECT * FROM consent_events
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (sqlc.narg(before_version)::bigint IS NULL OR version < sqlc.narg(before_version)::bigint)
ORDER BY version DESC
LIMIT @row_limit;
