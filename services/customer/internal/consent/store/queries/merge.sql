-- Merging customers (MergeCustomers): the sources' consent data moves to
-- the primary inside the merge's transaction, under the customers' locks.

-- name: ConsentMergeLock :many
-- Locks the contact settings the merge touches, in customer id order.
SELECT customer_id FROM contact_settings
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[])
ORDER BY customer_id
FOR UPDATE;

-- name: ConsentMergeEvents :execrows
-- consent_events is append-only, so the sources' history is copied into
-- the primary's (new ids, versions numbered on from the primary's, in the
-- order the events were recorded) and the originals stay with the sources.
-- Each copy keeps its channel, purpose, states, legal basis, source,
-- capture and record times, actor and request id.
WITH src AS (
    SELECT e.*, row_number() OVER (ORDER BY e.record_time, e.customer_id, e.version) AS n
    FROM consent_events e
    WHERE e.tenant_id = @tenant_id AND e.customer_id = ANY(@source_ids::uuid[])
),
bumped AS (
    UPDATE contact_settings
    SET consent_version = consent_version + (SELECT count(*) FROM src)
    WHERE tenant_id = @tenant_id AND customer_id = @primary_id::uuid
    RETURNING consent_version - (SELECT count(*) FROM src) AS base
)
INSERT INTO consent_events (tenant_id, customer_id, version, id, channel, purpose, state, previous_state,
                            legal_basis, source, capture_time, record_time, actor, request_id)
SELECT @tenant_id, @primary_id::uuid, b.base + s.n, gen_random_uuid(), s.channel, s.purpose, s.state,
       s.previous_state, s.legal_basis, s.source, s.capture_time, s.record_time, s.actor, s.request_id
FROM src s
CROSS JOIN bumped b;

-- name: ConsentMergeStates :execrows
-- The primary's consent wins: a channel × purpose it has stays as it is.
-- For the others it takes the source state decided last (by its event's
-- record time, the order ConsentMergeEvents copies in), with the version of
-- that event's copy, so the state and the history agree.
INSERT INTO consent_states (tenant_id, customer_id, channel, purpose, state, legal_basis, source,
                            capture_time, version, update_time)
SELECT DISTINCT ON (s.channel, s.purpose)
       @tenant_id, @primary_id::uuid, s.channel, s.purpose, s.state, s.legal_basis, s.source, s.capture_time,
       coalesce((SELECT max(c.version) FROM consent_events c
                 WHERE c.tenant_id = @tenant_id AND c.customer_id = @primary_id::uuid
                   AND c.channel = s.channel AND c.purpose = s.purpose),
                (SELECT cs.consent_version FROM contact_settings cs
                 WHERE cs.tenant_id = @tenant_id AND cs.customer_id = @primary_id::uuid)),
       @now::timestamptz
FROM consent_states s
LEFT JOIN consent_events e ON e.tenant_id = s.tenant_id AND e.customer_id = s.customer_id AND e.version = s.version
WHERE s.tenant_id = @tenant_id AND s.customer_id = ANY(@source_ids::uuid[])
ORDER BY s.channel, s.purpose, e.record_time DESC NULLS LAST, s.customer_id DESC, s.version DESC
ON CONFLICT (tenant_id, customer_id, channel, purpose) DO NOTHING;

-- name: ConsentMergeDropSourceStates :exec
-- A merged customer holds no consent: nothing may be sent under its id.
DELETE FROM consent_states WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);

-- name: ConsentMergeRevokeTokens :exec
-- Open confirmation and unsubscribe links of the sources name the sources'
-- consent versions, which mean nothing for the primary: they are revoked.
UPDATE consent_tokens SET revoke_time = @now::timestamptz
WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[])
  AND use_time IS NULL AND revoke_time IS NULL;

-- name: ConsentMergeTouches :execrows
-- Every touch of a source counts against the primary's frequency caps.
UPDATE contact_touches SET customer_id = @primary_id::uuid
WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);

-- name: ConsentMergePreferences :execrows
-- The primary keeps the preferences it has; quiet hours or preferred
-- channels it lacks come from the source that changed its preferences last.
UPDATE contact_settings p
SET quiet_start_minute = CASE WHEN p.quiet_start_minute IS NULL THEN src.quiet_start_minute ELSE p.quiet_start_minute END,
    quiet_end_minute   = CASE WHEN p.quiet_start_minute IS NULL THEN src.quiet_end_minute ELSE p.quiet_end_minute END,
    preferred_channels = CASE WHEN cardinality(p.preferred_channels) = 0 THEN src.preferred_channels
                              ELSE p.preferred_channels END,
    preferences_update_time = @now::timestamptz
FROM (
    SELECT s.quiet_start_minute, s.quiet_end_minute, s.preferred_channels
    FROM contact_settings s
    WHERE s.tenant_id = @tenant_id AND s.customer_id = ANY(@source_ids::uuid[])
      AND s.preferences_update_time IS NOT NULL
    ORDER BY s.preferences_update_time DESC, s.customer_id DESC
    LIMIT 1
) src
WHERE p.tenant_id = @tenant_id AND p.customer_id = @primary_id::uuid
  AND ((p.quiet_start_minute IS NULL AND src.quiet_start_minute IS NOT NULL)
       OR (cardinality(p.preferred_channels) = 0 AND cardinality(src.preferred_channels) > 0));
