-- name: OutreachDeliveryInsert :one
-- No row when the tenant already has a delivery with this request id.
INSERT INTO outreach_deliveries (
    tenant_id, id, customer_id, sealed_customer_id, template_id, template_key, channel, purpose, locale,
    status, content_sealed, next_attempt_time, failure_reason, refusal_reason, next_allowed_time,
    request_id, create_time, update_time)
VALUES (
    @tenant_id, @id, @customer_id, @customer_id, @template_id, @template_key, @channel, @purpose, @locale,
    @status, @content_sealed, sqlc.narg(next_attempt_time), @failure_reason, @refusal_reason,
    sqlc.narg(next_allowed_time), sqlc.narg(request_id), @now, @now)
ON CONFLICT (tenant_id, request_id) DO NOTHING
RETURNING *;

-- name: OutreachDeliveryGet :one
SELECT * FROM outreach_deliveries WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND id = @id;

-- name: OutreachDeliveryGetByRequestID :one
SELECT * FROM outreach_deliveries WHERE tenant_id = @tenant_id AND request_id = @request_id;

-- name: OutreachDeliveryList :many
-- The customer's log, newest first, keyset-paged on id, optionally by status.
SELECT * FROM outreach_deliveries
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (sqlc.narg(before_id)::uuid IS NULL OR id < sqlc.narg(before_id)::uuid)
  AND (cardinality(@statuses::text[]) = 0 OR status = ANY(@statuses::text[]))
ORDER BY id DESC
LIMIT @row_limit;

-- name: OutreachDeliveryListAll :many
-- Every delivery of the customer, oldest first: the export.
SELECT * FROM outreach_deliveries
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY id;

-- name: OutreachDeliveryClaim :many
-- Claims up to row_limit due deliveries, fairly across tenants: each
-- attempt is counted now and the delivery leased until lease_until, so
-- another worker skips it (SKIP LOCKED while this transaction runs, the
-- lease after).
--
-- Fair: the batch takes every tenant's oldest due delivery before anyone's
-- second (turn, then due time: among tenants, the one waiting longest goes
-- first), so one tenant's backlog of 100k cannot hold back another's two.
--   tenants:    the tenants with a queued delivery, by a loose index scan
--               (one probe per tenant) of outreach_deliveries_queued_tenant
--               (tenant_id, next_attempt_time) WHERE status = 'queued'.
--   candidates: per tenant (LATERAL), its first row_limit due deliveries
--               by due time, a range scan of the same index, numbered
--               (turn); nothing locked yet. Cost: at most row_limit index
--               entries per tenant with a queued delivery.
--   due:        the first row_limit candidates by (turn, due time), locked
--               FOR UPDATE SKIP LOCKED in that order: a candidate another
--               worker holds is skipped for the next, and one it claimed
--               meanwhile fails the re-checked WHERE (its lease is ahead).
WITH RECURSIVE tenants AS (
    (SELECT q.tenant_id FROM outreach_deliveries q
     WHERE q.status = 'queued'
     ORDER BY q.tenant_id
     LIMIT 1)
    UNION ALL
    SELECT (SELECT q.tenant_id FROM outreach_deliveries q
            WHERE q.status = 'queued' AND q.tenant_id > t.tenant_id
            ORDER BY q.tenant_id
            LIMIT 1)
    FROM tenants t
    WHERE t.tenant_id IS NOT NULL
),
candidates AS (
    SELECT c.tenant_id, c.id, c.next_attempt_time,
           row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.next_attempt_time, c.id) AS turn
    FROM tenants t
    CROSS JOIN LATERAL (
        SELECT q.tenant_id, q.id, q.next_attempt_time FROM outreach_deliveries q
        WHERE q.status = 'queued' AND q.tenant_id = t.tenant_id AND q.next_attempt_time <= @now
        ORDER BY q.next_attempt_time, q.id
        LIMIT @row_limit
    ) c
),
due AS (
    SELECT o.tenant_id, o.id FROM candidates c
    JOIN outreach_deliveries o ON o.tenant_id = c.tenant_id AND o.id = c.id
    WHERE o.status = 'queued' AND o.next_attempt_time <= @now
    ORDER BY c.turn, c.next_attempt_time, c.id
    LIMIT @row_limit
    FOR UPDATE OF o SKIP LOCKED
)
UPDATE outreach_deliveries d
SET attempts = d.attempts + 1, next_attempt_time = @lease_until, update_time = @now
FROM due
WHERE d.tenant_id = due.tenant_id AND d.id = due.id
RETURNING d.*;

-- name: OutreachDeliveryDueBacklog :many
-- Per channel, the queued deliveries due at now and not leased (a claimed
-- one's next attempt time is its lease, ahead of now), and the oldest due
-- time: the metrics' view of the worker's lag.
SELECT channel, count(*) AS due, min(next_attempt_time)::timestamptz AS oldest
FROM outreach_deliveries
WHERE status = 'queued' AND next_attempt_time <= @now
GROUP BY channel;

-- name: OutreachDeliveryMarkSent :one
-- Records a sent delivery, if the claim that sent it is still the latest.
UPDATE outreach_deliveries
SET status = 'sent', next_attempt_time = NULL, provider_message_id = @provider_message_id,
    last_error_code = '', send_time = @now, update_time = @now, version = version + 1
WHERE tenant_id = @tenant_id AND id = @id AND status = 'queued' AND attempts = @attempts
RETURNING *;

-- name: OutreachDeliveryMarkRetry :one
-- Schedules another attempt, if the claim is still the latest.
UPDATE outreach_deliveries
SET next_attempt_time = @next_attempt_time, last_error_code = @last_error_code, update_time = @now
WHERE tenant_id = @tenant_id AND id = @id AND status = 'queued' AND attempts = @attempts
RETURNING *;

-- name: OutreachDeliveryMarkFailed :one
-- Fails a delivery for good, if the claim is still the latest.
UPDATE outreach_deliveries
SET status = 'failed', next_attempt_time = NULL, last_error_code = @last_error_code,
    failure_reason = @failure_reason, update_time = @now, version = version + 1
WHERE tenant_id = @tenant_id AND id = @id AND status = 'queued' AND attempts = @attempts
RETURNING *;

-- name: OutreachDeliveryRepoint :execrows
-- A merge: the sources' deliveries become the primary's. sealed_customer_id
-- stays, so their content still opens under the key that sealed it.
UPDATE outreach_deliveries SET customer_id = @primary_id
WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);

-- name: OutreachDeliveryFailPending :many
-- An erasure: the customer's queued and deferred deliveries fail with
-- reason 'erased'.
UPDATE outreach_deliveries
SET status = 'failed', next_attempt_time = NULL, failure_reason = 'erased', content_sealed = NULL,
    refusal_reason = '', next_allowed_time = NULL, update_time = @now, version = version + 1
WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND status IN ('queued', 'deferred')
RETURNING *;

-- name: OutreachDeliveryForgetContent :execrows
-- An erasure: no delivery of the customer keeps its content.
UPDATE outreach_deliveries SET content_sealed = NULL
WHERE tenant_id = @tenant_id AND (customer_id = @customer_id OR sealed_customer_id = @customer_id)
  AND content_sealed IS NOT NULL;

-- name: OutreachCustomerContact :one
-- What sending needs from the profile: the locale, the sealed addresses and
-- display name (opened by the caller with the customer's key, at send
-- time), and the customer it was merged into, if any.
SELECT locale, email_sealed, phone_sealed, display_name_sealed, merged_into FROM customers WHERE tenant_id = @tenant_id AND id = @id;

-- name: OutreachDeliveryLockDueDeferred :one
-- The oldest deferred delivery of any tenant due for its re-check at now,
-- locked for the caller's transaction (SKIP LOCKED: replicas take others).
SELECT * FROM outreach_deliveries
WHERE status = 'deferred' AND next_attempt_time <= @now
ORDER BY next_attempt_time
LIMIT 1
FOR UPDATE SKIP LOCKED;

-- name: OutreachDeliveryReleaseDeferred :one
-- The governor allowed a deferred delivery (and recorded its touch): it is
-- queued, due now.
UPDATE outreach_deliveries
SET status = 'queued', next_attempt_time = @now, refusal_reason = '', next_allowed_time = NULL,
    update_time = @now, version = version + 1
WHERE tenant_id = @tenant_id AND id = @id AND status = 'deferred'
RETURNING *;

-- name: OutreachDeliveryDeferAgain :one
-- The governor still says not now: the delivery waits until next_allowed_time.
UPDATE outreach_deliveries
SET next_attempt_time = @next_allowed_time, next_allowed_time = @next_allowed_time,
    refusal_reason = @refusal_reason, update_time = @now
WHERE tenant_id = @tenant_id AND id = @id AND status = 'deferred'
RETURNING *;

-- name: OutreachDeliveryRefuseDeferred :one
-- The governor refused a deferred delivery for good: REFUSED, its content
-- dropped (refused deliveries hold none).
UPDATE outreach_deliveries
SET status = 'refused', next_attempt_time = NULL, content_sealed = NULL, failure_reason = @failure_reason,
    refusal_reason = @refusal_reason, next_allowed_time = sqlc.narg(next_allowed_time),
    update_time = @now, version = version + 1
WHERE tenant_id = @tenant_id AND id = @id AND status = 'deferred'
RETURNING *;
