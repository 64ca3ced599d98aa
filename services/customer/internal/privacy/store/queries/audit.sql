-- name: AuditInsert :exec
-- occur_time is the database's clock (the transaction's start): one clock
-- for every replica's rows.
INSERT INTO pii_audit (tenant_id, id, actor_subject, actor_roles, action, method, customer_ids, fields,
                       request_id, idempotency_key)
VALUES (@tenant_id, @id, @actor_subject, @actor_roles, @action, @method, @customer_ids, @fields,
        @request_id, sqlc.narg(idempotency_key));

-- name: AuditList :many
-- Newest first (ids are UUIDv7), keyset-paged on id, optionally one customer's.
SELECT * FROM pii_audit
WHERE tenant_id = @tenant_id
  AND (sqlc.narg(customer_id)::uuid IS NULL OR customer_ids @> ARRAY[sqlc.narg(customer_id)::uuid])
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
ORDER BY id DESC
LIMIT @row_limit;
