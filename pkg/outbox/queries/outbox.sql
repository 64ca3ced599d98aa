-- OutboxInsert runs in the caller's transaction, so the event commits or
-- rolls back with the change that caused it. seq is assigned here, at INSERT
-- time, not at commit.
-- name: OutboxInsert :exec
INSERT INTO outbox (
    id, tenant_id, subject, event_type, aggregate_type, aggregate_id,
    aggregate_version, payload, occurred_at
) VALUES (
    @id, @tenant_id, @subject, @event_type, @aggregate_type, @aggregate_id,
    @aggregate_version, @payload, @occurred_at
);

-- OutboxInsertMany writes many events with COPY, in the order given: seq
-- follows that order, as it would for single inserts.
-- name: OutboxInsertMany :copyfrom
INSERT INTO outbox (
    id, tenant_id, subject, event_type, aggregate_type, aggregate_id,
    aggregate_version, payload, occurred_at
) VALUES (
    @id, @tenant_id, @subject, @event_type, @aggregate_type, @aggregate_id,
    @aggregate_version, @payload, @occurred_at
);

-- OutboxPending reads the oldest unpublished rows. There is no cursor: a row
-- that commits after rows with a higher seq were published is still found
-- here on the next poll, because it is still unpublished.
-- name: OutboxPending :many
SELECT id, tenant_id, subject, event_type, aggregate_type, aggregate_id,
       aggregate_version, payload, occurred_at
FROM outbox
WHERE published_at IS NULL
ORDER BY seq
LIMIT @batch_size;

-- name: OutboxMarkPublished :execrows
UPDATE outbox
SET published_at = clock_timestamp()
WHERE id = ANY(@ids::uuid[])
  AND published_at IS NULL;

-- OutboxDeletePublished removes at most max_rows published rows older than
-- the retention, by the database clock (the one that set published_at).
-- name: OutboxDeletePublished :execrows
DELETE FROM outbox
WHERE id IN (
    SELECT o.id
    FROM outbox o
    WHERE o.published_at < clock_timestamp() - make_interval(secs => @retention_seconds::float8)
    ORDER BY o.published_at
    LIMIT @max_rows
);

-- name: OutboxLag :one
SELECT count(*)::bigint AS pending,
       coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS oldest_seconds
FROM outbox
WHERE published_at IS NULL;

-- OutboxTryLeaderLock takes the relay's session-level advisory lock without
-- waiting. It must run on a connection the caller keeps for as long as it
-- leads: the lock lives and dies with that session.
-- name: OutboxTryLeaderLock :one
SELECT pg_try_advisory_lock(@key::bigint) AS acquired;
