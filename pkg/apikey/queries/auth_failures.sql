-- name: AuthFailuresInsert :exec
-- One batch of refusals, as parallel arrays (an empty string for an absent api_key_id,
-- tenant_id or subject).
INSERT INTO auth_failures (id, occur_time, method, code, request_id, credential, api_key_id, tenant_id, subject)
SELECT unnest(@ids::uuid[]), unnest(@occur_times::timestamptz[]), unnest(@methods::text[]),
       unnest(@codes::text[]), unnest(@request_ids::text[]), unnest(@credentials::text[]),
       NULLIF(unnest(@api_key_ids::text[]), '')::uuid, NULLIF(unnest(@tenant_ids::text[]), '')::uuid,
       NULLIF(unnest(@subjects::text[]), '');
