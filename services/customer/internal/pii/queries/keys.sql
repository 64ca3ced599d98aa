-- name: TenantKeysGet :one
SELECT aead_keyset, prf_keyset FROM tenant_keys WHERE tenant_id = @tenant_id;

-- name: TenantKeysInsert :one
-- Concurrent first uses race here: the loser gets no row and reads the
-- winner's keys, so a tenant only ever has one set.
INSERT INTO tenant_keys (tenant_id, aead_keyset, prf_keyset)
VALUES (@tenant_id, @aead_keyset, @prf_keyset)
ON CONFLICT (tenant_id) DO NOTHING
RETURNING aead_keyset, prf_keyset;

-- name: CustomerKeyInsert :exec
INSERT INTO customer_keys (tenant_id, customer_id, keyset) VALUES (@tenant_id, @customer_id, @keyset);

-- name: CustomerKeysGet :many
SELECT customer_id, keyset FROM customer_keys
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[]);
