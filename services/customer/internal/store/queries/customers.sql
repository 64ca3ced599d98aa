-- Personal fields are stored sealed (*_sealed, AEAD ciphertexts) with blind
-- indexes (*_bidx) for exact lookups; internal/pii makes both. A NULL sealed
-- field is an empty one.

-- name: CustomerInsert :one
INSERT INTO customers (tenant_id, id, display_name_sealed, email_sealed, phone_sealed, email_bidx, phone_bidx,
                       locale, time_zone, tags, create_time, update_time)
VALUES (@tenant_id, @id, @display_name_sealed, @email_sealed, @phone_sealed, @email_bidx, @phone_bidx,
        @locale, @time_zone, @tags, @now, @now)
RETURNING *;

-- name: CustomerGet :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id;

-- name: CustomerGetForUpdate :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id FOR UPDATE;

-- name: CustomerUpdate :one
UPDATE customers
SET display_name_sealed = @display_name_sealed, email_sealed = @email_sealed, phone_sealed = @phone_sealed,
    email_bidx = @email_bidx, phone_bidx = @phone_bidx, locale = @locale,
    time_zone = @time_zone, tags = @tags, version = version + 1, update_time = @now
WHERE tenant_id = @tenant_id AND id = @id AND version = @version
RETURNING *;

-- name: CustomerList :many
-- Newest first, keyset-paged on id: rows after the cursor, optionally with a tag.
SELECT * FROM customers
WHERE tenant_id = @tenant_id
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.narg(tag)::text IS NULL OR tags @> ARRAY[sqlc.narg(tag)::text])
ORDER BY id DESC
LIMIT @row_limit;

-- name: CustomerCandidatesByEmail :many
-- Every customer whose email blind index matches: the candidates a lookup
-- decrypts and compares. About R / 2^bits rows besides the true matches.
SELECT * FROM customers WHERE tenant_id = @tenant_id AND email_bidx = @bidx ORDER BY id DESC;

-- name: CustomerCandidatesByPhone :many
SELECT * FROM customers WHERE tenant_id = @tenant_id AND phone_bidx = @bidx ORDER BY id DESC;
