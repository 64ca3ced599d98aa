-- name: CustomerInsert :one
INSERT INTO customers (tenant_id, id, display_name, email, phone, locale, time_zone, tags, create_time, update_time)
VALUES (@tenant_id, @id, @display_name, @email, @phone, @locale, @time_zone, @tags, @now, @now)
RETURNING *;

-- name: CustomerGet :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id;

-- name: CustomerGetForUpdate :one
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = @id FOR UPDATE;

-- name: CustomerUpdate :one
UPDATE customers
SET display_name = @display_name, email = @email, phone = @phone, locale = @locale,
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
