-- SegmentRecompute computes the RFM scores and segment of every customer of
-- a tenant with a purchase (or of one customer, when customer_id is given),
-- in one statement, and upserts customer_segments where a stored value
-- changed. It returns the rows whose segment changed, so the caller writes
-- exactly one segment.changed event for each in the same transaction.
--
--   stats      one pass over the tenant's purchases, grouped by customer
--              (index-only on purchases_customer_time)
--   scored     recency, frequency and monetary scores from the thresholds
--   classified the segment: the first matching rule wins (see segment.proto)
--   changed    only customers whose stored row differs, so unchanged rows
--              are neither locked nor rewritten
--   written    the upsert
--
-- Concurrency. The upsert's WHERE runs against the newest committed version
-- of a conflicting row, after waiting for its writer. A row computed from
-- more purchases (basis) than this statement saw is left alone: a tenant-wide
-- recompute whose snapshot predates a RecordPurchase of the same customer
-- never overwrites that purchase's result or reports a change for it.
--
-- The parameters are a NOT MATERIALIZED CTE so the planner inlines them as
-- constants: with the customer id given, the aggregate reads that customer's
-- index range only (PurchaseLockCustomer forces custom plans).
-- name: SegmentRecompute :many
WITH params AS NOT MATERIALIZED (
    SELECT @tenant_id::uuid AS tenant_id,
           sqlc.narg(customer_id)::uuid AS customer_id,
           @now::timestamptz AS now,
           @window_start::timestamptz AS window_start,
           @base_currency::text AS base_currency,
           @recency_max_days::integer[] AS rd,
           @frequency_min::bigint[] AS fm,
           @monetary_min_minor::bigint[] AS mm
),
stats AS (
    SELECT p.customer_id,
           max(p.purchase_time) AS last_purchase_time,
           count(*) AS basis,
           count(*) FILTER (WHERE p.purchase_time >= prm.window_start) AS frequency,
           coalesce(sum(p.total_amount_minor) FILTER (
               WHERE p.purchase_time >= prm.window_start AND p.currency_code = prm.base_currency), 0) AS monetary
    FROM params prm
    JOIN purchases p ON p.tenant_id = prm.tenant_id
    WHERE prm.customer_id IS NULL OR p.customer_id = prm.customer_id
    GROUP BY p.customer_id
),
scored AS (
    SELECT s.customer_id, s.last_purchase_time, s.basis, s.frequency,
           least(s.monetary, 9223372036854775807)::bigint AS monetary,
           (CASE
                WHEN d.days <= prm.rd[1] THEN 5
                WHEN d.days <= prm.rd[2] THEN 4
                WHEN d.days <= prm.rd[3] THEN 3
                WHEN d.days <= prm.rd[4] THEN 2
                ELSE 1
            END)::smallint AS r,
           (1 + (s.frequency >= prm.fm[1])::integer + (s.frequency >= prm.fm[2])::integer
              + (s.frequency >= prm.fm[3])::integer + (s.frequency >= prm.fm[4])::integer)::smallint AS f,
           (1 + (s.monetary >= prm.mm[1])::integer + (s.monetary >= prm.mm[2])::integer
              + (s.monetary >= prm.mm[3])::integer + (s.monetary >= prm.mm[4])::integer)::smallint AS m
    FROM stats s
    CROSS JOIN params prm
    -- Whole days since the last purchase; a purchase dated slightly ahead
    -- of the clock counts as today.
    CROSS JOIN LATERAL (
        SELECT greatest(0, floor(date_part('epoch', prm.now - s.last_purchase_time) / 86400)) AS days
    ) d
    -- A fence: without it the planner inlines the score expressions into
    -- every rule and comparison below, and planning (done per call, see
    -- PurchaseLockCustomer) costs more than running the statement.
    OFFSET 0
),
classified AS (
    SELECT sc.*,
           CASE
               WHEN sc.r >= 4 AND sc.f >= 4 AND sc.m >= 4 THEN 'important'
               WHEN sc.r = 1 AND sc.f <= 2 THEN 'lost'
               WHEN sc.r <= 2 AND (sc.f >= 3 OR sc.m >= 3) THEN 'at_risk'
               WHEN sc.r >= 4 AND sc.f <= 2 THEN 'potential'
               ELSE 'ordinary'
           END AS segment
    FROM scored sc
),
changed AS (
    SELECT c.*
    FROM classified c
    CROSS JOIN params prm
    LEFT JOIN customer_segments cur
           ON cur.tenant_id = prm.tenant_id AND cur.customer_id = c.customer_id
          AND (prm.customer_id IS NULL OR cur.customer_id = prm.customer_id)
    WHERE cur.customer_id IS NULL
       OR c.basis > cur.basis
       OR (c.basis = cur.basis
           AND (cur.segment, cur.recency_score, cur.frequency_score, cur.monetary_score,
                cur.last_purchase_time, cur.frequency, cur.monetary_minor, cur.monetary_currency)
               IS DISTINCT FROM
               (c.segment, c.r, c.f, c.m, c.last_purchase_time, c.frequency, c.monetary, prm.base_currency))
),
written AS (
    INSERT INTO customer_segments AS cs (
        tenant_id, customer_id, segment, previous_segment, recency_score, frequency_score,
        monetary_score, last_purchase_time, frequency, monetary_minor, monetary_currency, basis,
        segment_version, segment_changed, segment_change_time, update_time
    )
    SELECT prm.tenant_id, ch.customer_id, ch.segment, '', ch.r, ch.f, ch.m, ch.last_purchase_time,
           ch.frequency, ch.monetary, prm.base_currency, ch.basis, 1, true, prm.now, prm.now
    FROM changed ch
    CROSS JOIN params prm
    ON CONFLICT (tenant_id, customer_id) DO UPDATE SET
        segment             = excluded.segment,
        previous_segment    = CASE WHEN cs.segment <> excluded.segment THEN cs.segment ELSE cs.previous_segment END,
        recency_score       = excluded.recency_score,
        frequency_score     = excluded.frequency_score,
        monetary_score      = excluded.monetary_score,
        last_purchase_time  = excluded.last_purchase_time,
        frequency           = excluded.frequency,
        monetary_minor      = excluded.monetary_minor,
        monetary_currency   = excluded.monetary_currency,
        basis               = excluded.basis,
        segment_version     = cs.segment_version + CASE WHEN cs.segment <> excluded.segment THEN 1 ELSE 0 END,
        segment_changed     = cs.segment <> excluded.segment,
        segment_change_time = CASE WHEN cs.segment <> excluded.segment THEN excluded.segment_change_time
                                   ELSE cs.segment_change_time END,
        update_time         = excluded.update_time
    WHERE excluded.basis > cs.basis
       OR (excluded.basis = cs.basis
           AND (cs.segment, cs.recency_score, cs.frequency_score, cs.monetary_score,
                cs.last_purchase_time, cs.frequency, cs.monetary_minor, cs.monetary_currency)
               IS DISTINCT FROM
               (excluded.segment, excluded.recency_score, excluded.frequency_score, excluded.monetary_score,
                excluded.last_purchase_time, excluded.frequency, excluded.monetary_minor, excluded.monetary_currency))
    RETURNING cs.customer_id, cs.segment, cs.previous_segment, cs.recency_score, cs.frequency_score,
              cs.monetary_score, cs.last_purchase_time, cs.frequency, cs.monetary_minor,
              cs.monetary_currency, cs.segment_version, cs.segment_changed, cs.segment_change_time
)
SELECT w.customer_id, w.segment, w.previous_segment, w.recency_score, w.frequency_score,
       w.monetary_score, w.last_purchase_time, w.frequency, w.monetary_minor,
       w.monetary_currency, w.segment_version, w.segment_change_time
FROM written w
WHERE w.segment_changed
ORDER BY w.customer_id;

-- name: SegmentGet :one
SELECT * FROM customer_segments WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- SegmentList pages the customers of one segment, who entered it most
-- recently first, after the cursor (the first page passes 'infinity').
-- name: SegmentList :many
SELECT * FROM customer_segments
WHERE tenant_id = @tenant_id AND segment = @segment
  AND (segment_change_time, customer_id) < (@before_time::timestamptz, @before_id::uuid)
ORDER BY segment_change_time DESC, customer_id DESC
LIMIT @row_limit;

-- name: SegmentCounts :many
SELECT segment, count(*) AS customers
FROM customer_segments
WHERE tenant_id = @tenant_id
GROUP BY segment
ORDER BY segment;

-- name: SegmentSettingsGet :one
SELECT * FROM segment_settings WHERE tenant_id = @tenant_id;

-- SegmentSettingsLock returns the tenant's settings locked for a
-- read-modify-write; no row if it never set any.
-- name: SegmentSettingsLock :one
SELECT * FROM segment_settings WHERE tenant_id = @tenant_id FOR UPDATE;

-- name: SegmentSettingsUpsert :one
INSERT INTO segment_settings AS s (
    tenant_id, base_currency, window_days, recency_max_days, frequency_min, monetary_min_minor,
    version, update_time
) VALUES (
    @tenant_id, @base_currency, @window_days, @recency_max_days, @frequency_min, @monetary_min_minor,
    1, @now
)
ON CONFLICT (tenant_id) DO UPDATE SET
    base_currency      = excluded.base_currency,
    window_days        = excluded.window_days,
    recency_max_days   = excluded.recency_max_days,
    frequency_min      = excluded.frequency_min,
    monetary_min_minor = excluded.monetary_min_minor,
    version            = s.version + 1,
    update_time        = excluded.update_time
RETURNING *;

-- SegmentCustomerMergedInto tells GetCustomerSegment's "no segment" apart:
-- no row, the tenant has no such customer; merged_into set, the customer
-- was merged into another (whose segment now counts its purchases);
-- otherwise a customer without purchases.
-- name: SegmentCustomerMergedInto :one
SELECT c.merged_into FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id;
