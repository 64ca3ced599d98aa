-- InteractionCustomerLive says whether the customer exists in the tenant and
-- still has its data key: an erased customer (key destroyed) is forgotten
-- by the API, like by the profile API.
-- name: InteractionCustomerLive :one
SELECT EXISTS (
    SELECT 1 FROM customers c
    JOIN customer_keys k ON k.tenant_id = c.tenant_id AND k.customer_id = c.id
    WHERE c.tenant_id = @tenant_id AND c.id = @customer_id
) AS live;

-- InteractionCustomerForWrite reads what CreateInteraction needs about the
-- customer before writing to its timeline: whether it is live (has its data
-- key) and whether it was merged into another. No row: the tenant has no
-- such customer. FOR SHARE holds the row until the entry is committed, so a
-- merge (which locks its customers FOR NO KEY UPDATE before moving their
-- entries) either waits for the entry and moves it, or commits first and the
-- entry is refused: none is left behind under a merged id.
-- name: InteractionCustomerForWrite :one
SELECT EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id) AS live,
       c.merged_into
FROM customers c
WHERE c.tenant_id = @tenant_id AND c.id = @customer_id
FOR SHARE OF c;

-- InteractionResolveCustomer finds the customer an event about customer_id
-- belongs on: the customer itself, or, if it was merged, the customer it was
-- merged into (following at most 10 merges). No row: the tenant has no such
-- customer, or it was erased.
-- name: InteractionResolveCustomer :one
WITH RECURSIVE chain (id, merged_into, depth) AS (
    SELECT c.id, c.merged_into, 0
    FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id
    UNION ALL
    SELECT c.id, c.merged_into, chain.depth + 1
    FROM chain JOIN customers c ON c.tenant_id = @tenant_id AND c.id = chain.merged_into
    WHERE chain.depth < 10
)
SELECT chain.id FROM chain
WHERE chain.merged_into IS NULL
  AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = @tenant_id AND k.customer_id = chain.id)
LIMIT 1;

-- name: InteractionInsert :one
INSERT INTO interactions (
    tenant_id, id, customer_id, kind, occur_time, create_time, agent_id, direction,
    summary_sealed, body_sealed
) VALUES (
    @tenant_id, @id, @customer_id, @kind, @occur_time, @create_time, @agent_id, @direction,
    @summary_sealed, @body_sealed
)
RETURNING *;

-- InteractionProject stores an entry projected from an event, unless the
-- tenant already has the entry of that event (then no row): the event id is
-- the entry's business key for ever.
-- name: InteractionProject :execrows
INSERT INTO interactions (
    tenant_id, id, customer_id, kind, occur_time, create_time, agent_id,
    source_event_id, source_subject, reference_id, details
) VALUES (
    @tenant_id, @id, @customer_id, @kind, @occur_time, @create_time, @agent_id,
    @source_event_id, @source_subject, @reference_id, @details
)
ON CONFLICT (tenant_id, source_event_id) DO NOTHING;

-- name: InteractionGet :one
SELECT * FROM interactions WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND id = @id;

-- InteractionList pages a customer's timeline, newest occur_time first,
-- after the cursor (the first page passes a time after every entry), only
-- the given kinds unless the array is empty.
-- name: InteractionList :many
SELECT * FROM interactions
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (occur_time, id) < (@before_time::timestamptz, @before_id::uuid)
  AND (cardinality(@kinds::text[]) = 0 OR kind = ANY(@kinds::text[]))
ORDER BY occur_time DESC, id DESC
LIMIT @row_limit;

-- InteractionsOfCustomer is a customer's whole timeline, for the export.
-- name: InteractionsOfCustomer :many
SELECT * FROM interactions
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY occur_time DESC, id DESC;

-- InteractionsSealedOf returns the sources' entries with sealed text, which
-- a merge must re-seal for the primary (the ciphertexts are bound to their
-- customer). FOR UPDATE: nothing changes them between read and rewrite.
-- name: InteractionsSealedOf :many
SELECT id, customer_id, summary_sealed, body_sealed FROM interactions
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[])
  AND (summary_sealed IS NOT NULL OR body_sealed IS NOT NULL)
ORDER BY id
FOR UPDATE;

-- InteractionsReseal replaces the sealed text of many entries at once: row n
-- takes element n of every array (NULL stays NULL).
-- name: InteractionsReseal :exec
UPDATE interactions i
SET summary_sealed = u.summary_sealed, body_sealed = u.body_sealed
FROM (
    SELECT unnest(@ids::uuid[]) AS id,
           unnest(@summaries_sealed::bytea[]) AS summary_sealed,
           unnest(@bodies_sealed::bytea[]) AS body_sealed
) u
WHERE i.tenant_id = @tenant_id AND i.id = u.id;

-- name: InteractionsMove :execrows
UPDATE interactions SET customer_id = @primary_id
WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);

-- InteractionsForget drops the sealed text of a customer's manual entries
-- (erasure). The entries' kind, time and agent stay: they identify no one
-- once the customer's profile is shredded.
-- name: InteractionsForget :execrows
UPDATE interactions SET summary_sealed = NULL, body_sealed = NULL
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (summary_sealed IS NOT NULL OR body_sealed IS NOT NULL);
