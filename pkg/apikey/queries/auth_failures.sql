-- name: AuthFailuresInsert :exec
-- One batch of refusals, as parallel arrays (an empty string for an absent api_key_id,
-- tenant_id or subject).
INSERT INTO auth_failures (id, occur_time, method, code, request_id, credential, api_key_id, tenant_id, subject)
SELECT unnest(@ids::uuid[]), unnest(@occur_times::timestamptz[]), unnest(@methods::text[]),
       unnest(@codes::text[]), unnest(@request_ids::text[]), unnest(@credentials::text[]),
       NULLIF(unnest(@api_key_ids::text[]), '')::uuid, NULLIF(unnest(@tenant_ids::text[]), '')::uuid,
       NULLIF(unnest(@subjects::text[]), '');

-- AuthFailuresList is a tenant's refusals, newest first, after the cursor
-- (occur_time, id), optionally since a time and of one code. Two branches:
--   1. authorization refusals of the tenant's verified principals
--      (tenant_id was set from the principal when the row was written);
--   2. authentication refusals naming an API key the tenant owns, made
--      while that key existed. Such a row carries no tenant (the caller was
--      not verified); the key id is a UUID unique across tenants (api_keys'
--      primary key), so joining on (tenant_id, id) gives it at most one
--      owner, and a made-up id that no key has matches no tenant. A refusal
--      dated before the key's creation cannot be about that key and is not
--      attributed (it would need an id guessed before it was issued).
-- Each branch is ordered and limited on its own index, then merged; the
-- second one per key (LATERAL), so a flood of bad secrets on one key costs a
-- page per key, not a sort of the whole flood.
-- name: AuthFailuresList :many
SELECT * FROM (
    (SELECT f.id, f.occur_time, f.method, f.code, f.request_id, f.credential, f.api_key_id, f.subject
     FROM auth_failures f
     WHERE f.tenant_id = @tenant_id::uuid
       AND (sqlc.narg(since)::timestamptz IS NULL OR f.occur_time >= sqlc.narg(since)::timestamptz)
       AND (sqlc.narg(code)::text IS NULL OR f.code = sqlc.narg(code)::text)
       AND (sqlc.narg(after_time)::timestamptz IS NULL
            OR (f.occur_time, f.id) < (sqlc.narg(after_time)::timestamptz, sqlc.narg(after_id)::uuid))
     ORDER BY f.occur_time DESC, f.id DESC
     LIMIT @row_limit)
    UNION ALL
    (SELECT f.id, f.occur_time, f.method, f.code, f.request_id, f.credential, f.api_key_id, f.subject
     FROM api_keys k
     CROSS JOIN LATERAL (
         SELECT f.* FROM auth_failures f
         WHERE f.api_key_id = k.id AND f.tenant_id IS NULL AND f.occur_time >= k.create_time
           AND f.code = 'unauthenticated'
           AND (sqlc.narg(since)::timestamptz IS NULL OR f.occur_time >= sqlc.narg(since)::timestamptz)
           AND (sqlc.narg(code)::text IS NULL OR f.code = sqlc.narg(code)::text)
           AND (sqlc.narg(after_time)::timestamptz IS NULL
                OR (f.occur_time, f.id) < (sqlc.narg(after_time)::timestamptz, sqlc.narg(after_id)::uuid))
         ORDER BY f.occur_time DESC, f.id DESC
         LIMIT @row_limit) f
     WHERE k.tenant_id = @tenant_id::uuid
     ORDER BY f.occur_time DESC, f.id DESC
     LIMIT @row_limit)
) AS mine
ORDER BY occur_time DESC, id DESC
LIMIT @row_limit;

-- AuthFailuresPrune deletes a batch of the refusals older than the 90 days
-- kept (the table's trigger refuses any younger), oldest first.
-- name: AuthFailuresPrune :execrows
DELETE FROM auth_failures
WHERE id IN (SELECT f.id FROM auth_failures f
             WHERE f.occur_time < now() - interval '90 days'
             ORDER BY f.occur_time LIMIT 5000);
