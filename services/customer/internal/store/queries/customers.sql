-- Personal fields are stored sealed (*_sealed, AEAD ciphertexts) with blind
-- indexes (*_bidx) for exact lookups; internal/pii makes both. A NULL sealed
-- field is an empty one. birth_month/birth_day and country_code are the
-- clear parts migration 00005 explains.

-- name: CustomerInsert :one
INSERT INTO customers (tenant_id, id, display_name_sealed, email_sealed, phone_sealed, email_bidx, phone_bidx,
                       locale, time_zone, tags, birthday_sealed, birth_month, birth_day, address_sealed,
                       country_code, attributes_sealed, create_time, update_time)
VALUES (@tenant_id, @id, @display_name_sealed, @email_sealed, @phone_sealed, @email_bidx, @phone_bidx,
        @locale, @time_zone, @tags, @birthday_sealed, @birth_month, @birth_day, @address_sealed,
        @country_code, @attributes_sealed, @now, @now)
RETURNING *;

-- name: CustomerGet :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id;

-- name: CustomerGetForUpdate :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id FOR UPDATE;

-- name: CustomerUpdate :one
UPDATE customers
SET display_name_sealed = @display_name_sealed, email_sealed = @email_sealed, phone_sealed = @phone_sealed,
    email_bidx = @email_bidx, phone_bidx = @phone_bidx, locale = @locale,
    time_zone = @time_zone, tags = @tags, birthday_sealed = @birthday_sealed, birth_month = @birth_month,
    birth_day = @birth_day, address_sealed = @address_sealed, country_code = @country_code,
    attributes_sealed = @attributes_sealed, version = version + 1, update_time = @now
WHERE tenant_id = @tenant_id AND id = @id AND version = @version
RETURNING *;

-- name: CustomerList :many
-- Newest first, keyset-paged on id: rows after the cursor, optionally with a
-- tag. Merged customers are left out (their data lives in the primary).
SELECT * FROM customers
WHERE tenant_id = @tenant_id
  AND merged_into IS NULL
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (sqlc.narg(tag)::text IS NULL OR tags @> ARRAY[sqlc.narg(tag)::text])
ORDER BY id DESC
LIMIT @row_limit;

-- name: CustomerCandidatesByEmail :many
-- Every live customer whose email blind index matches: the candidates a
-- lookup decrypts and compares. About R / 2^bits rows besides the true
-- matches.
SELECT * FROM customers
WHERE tenant_id = @tenant_id AND email_bidx = @bidx AND merged_into IS NULL
ORDER BY id DESC;

-- name: CustomerCandidatesByPhone :many
SELECT * FROM customers
WHERE tenant_id = @tenant_id AND phone_bidx = @bidx AND merged_into IS NULL
ORDER BY id DESC;

-- name: CustomerListByExternalRef :many
-- The live customers with this ref in this system, newest first. Refs are
-- stored in clear, so this is exact: no candidates to compare.
SELECT c.* FROM customers c
JOIN customer_external_refs r ON r.tenant_id = c.tenant_id AND r.customer_id = c.id
WHERE r.tenant_id = @tenant_id AND r.system = @system AND r.ref = @ref AND c.merged_into IS NULL
ORDER BY c.id DESC
LIMIT @row_limit;

-- name: CustomerLockMany :many
-- Locks the customers of a merge in id order, so two merges of overlapping
-- sets queue instead of deadlocking. FOR NO KEY UPDATE, not FOR UPDATE:
-- inserts referencing a customer (a purchase, a segment) take KEY SHARE on
-- it and must not wait for the merge while holding locks the merge needs
-- next. Under READ COMMITTED a row another merge changed meanwhile comes
-- back as that merge left it (merged_into set), which refuses the chain.
SELECT * FROM customers
WHERE tenant_id = @tenant_id AND id = ANY(@ids::uuid[])
ORDER BY id
FOR NO KEY UPDATE;

-- name: CustomerMarkMerged :execrows
UPDATE customers
SET merged_into = @primary_id::uuid, merge_time = @now, version = version + 1, update_time = @now
WHERE tenant_id = @tenant_id AND id = ANY(@source_ids::uuid[]) AND merged_into IS NULL;

-- name: CustomerRepointMerged :execrows
-- Customers merged earlier into one of the sources now point at the
-- primary: a pointer always names a live customer, never a merged one.
UPDATE customers
SET merged_into = @primary_id::uuid
WHERE tenant_id = @tenant_id AND merged_into = ANY(@source_ids::uuid[]);
