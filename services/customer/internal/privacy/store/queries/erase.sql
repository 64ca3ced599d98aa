-- name: CustomerLockForErase :one
-- The customer's row lock: an erasure waits for writers of the profile and
-- they wait for it, so nothing is written back after the shredding. It
-- returns merged_into too: a merged customer is erased with the one it was
-- merged into, never alone.
SELECT id, version, erase_time, merged_into FROM customers
WHERE tenant_id = @tenant_id AND id = @id
FOR UPDATE;

-- name: CustomerEraseState :one
SELECT id, version, erase_time FROM customers
WHERE tenant_id = @tenant_id AND id = @id;

-- name: CustomerKeyDelete :execrows
-- Crypto-shredding: without this row nothing sealed for the customer opens.
DELETE FROM customer_keys WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- name: CustomerErase :one
-- Clears every personal column and blind index (the ciphertexts are
-- unreadable already; NULL leaves nothing to attack or to match), and the
-- free-text tags. Locale, time zone and country stay: coarse, and what
-- analytics count by.
UPDATE customers
SET display_name_sealed = ''::bytea, email_sealed = NULL, phone_sealed = NULL,
    email_bidx = NULL, phone_bidx = NULL, birthday_sealed = NULL, birth_month = NULL,
    birth_day = NULL, address_sealed = NULL, attributes_sealed = NULL, tags = '{}',
    erase_time = @now::timestamptz, update_time = @now::timestamptz, version = version + 1
WHERE tenant_id = @tenant_id AND id = @id AND erase_time IS NULL
RETURNING version, erase_time;

-- name: CustomerExternalRefsDelete :execrows
DELETE FROM customer_external_refs WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- name: SuppressionInsert :exec
INSERT INTO contact_suppressions (tenant_id, kind, fingerprint, create_time)
VALUES (@tenant_id, @kind, @fingerprint, @now::timestamptz)
ON CONFLICT DO NOTHING;

-- name: SuppressionExists :one
SELECT EXISTS (
    SELECT 1 FROM contact_suppressions
    WHERE tenant_id = @tenant_id AND kind = @kind AND fingerprint = @fingerprint
);

-- name: CustomersMergedInto :many
-- The customers merged into one (merges never chain, so one level is all):
-- the same person, whose rows still hold their own sealed fields. Locked in
-- id order, after the primary's row.
SELECT id FROM customers
WHERE tenant_id = @tenant_id AND merged_into = @id::uuid AND erase_time IS NULL
ORDER BY id
FOR UPDATE;
