-- Months are numbered year * 12 + month - 1 in UTC (2026-03 is 24314), so
-- offsets between months are integer differences.

-- RetentionCohorts is the cohort table in one statement: a row per cohort
-- month and offset from 0 to months_after.
--
--   months   each customer's months with a purchase before the horizon, from
--            one pass over the tenant's purchases (index-only on
--            purchases_customer_time); nothing before the range is skipped,
--            since the first month ever decides the cohort
--   members  customers whose first month is a cohort month, in the segment
--            if one is given
--   cells    members per cohort and offset with a purchase that month
--   grid     every cohort month and offset, empty ones included
-- name: RetentionCohorts :many
WITH params AS NOT MATERIALIZED (
    SELECT @tenant_id::uuid AS tenant_id,
           @first_month::integer AS first_month,
           @last_month::integer AS last_month,
           @months_after::integer AS months_after,
           @now_month::integer AS now_month,
           @segment::text AS segment,
           @horizon::timestamptz AS horizon
),
months AS MATERIALIZED (
    SELECT p.customer_id,
           (date_part('year', p.purchase_time AT TIME ZONE 'UTC') * 12
            + date_part('month', p.purchase_time AT TIME ZONE 'UTC') - 1)::integer AS month
    FROM params prm
    JOIN purchases p ON p.tenant_id = prm.tenant_id AND p.purchase_time < prm.horizon
    GROUP BY 1, 2
),
members AS MATERIALIZED (
    SELECT f.customer_id, f.cohort
    FROM (SELECT m.customer_id, min(m.month) AS cohort FROM months m GROUP BY m.customer_id) f
    CROSS JOIN params prm
    WHERE f.cohort BETWEEN prm.first_month AND prm.last_month
      AND (prm.segment = ''
           OR EXISTS (SELECT 1 FROM customer_segments cs
                      WHERE cs.tenant_id = prm.tenant_id AND cs.customer_id = f.customer_id AND cs.segment = prm.segment))
),
sizes AS (
    SELECT m.cohort, count(*) AS size FROM members m GROUP BY m.cohort
),
cells AS (
    SELECT mb.cohort, mo.month - mb.cohort AS k, count(*) AS retained
    FROM members mb
    JOIN months mo ON mo.customer_id = mb.customer_id
    CROSS JOIN params prm
    WHERE mo.month - mb.cohort BETWEEN 0 AND prm.months_after
    GROUP BY mb.cohort, mo.month - mb.cohort
),
grid AS (
    SELECT c::integer AS cohort, k::integer AS k
    FROM params prm
    CROSS JOIN generate_series(prm.first_month, prm.last_month) c
    CROSS JOIN generate_series(0, prm.months_after) k
)
SELECT g.cohort, g.k,
       (g.cohort + g.k <= prm.now_month) AS begun,
       (g.cohort + g.k < prm.now_month) AS complete,
       coalesce(s.size, 0)::bigint AS size,
       coalesce(ce.retained, 0)::bigint AS retained,
       coalesce(round(coalesce(ce.retained, 0)::numeric / nullif(s.size, 0), 4), 0)::double precision AS retention_rate,
       coalesce(round((s.size - coalesce(ce.retained, 0))::numeric / nullif(s.size, 0), 4), 0)::double precision AS churn_rate
FROM grid g
CROSS JOIN params prm
LEFT JOIN sizes s ON s.cohort = g.cohort
LEFT JOIN cells ce ON ce.cohort = g.cohort AND ce.k = g.k
ORDER BY g.cohort, g.k;

-- CustomerMetrics computes the metrics of [start_time, end_time) and the
-- churn against [previous_start, start_time) in one statement: one row per
-- segment (segment = '' for customers without one) and a total row
-- (is_total), from one pass over the purchases of both periods.
-- name: CustomerMetrics :many
WITH params AS NOT MATERIALIZED (
    SELECT @tenant_id::uuid AS tenant_id,
           @previous_start::timestamptz AS previous_start,
           @start_time::timestamptz AS start_time,
           @end_time::timestamptz AS end_time,
           @segment::text AS segment
),
per_customer AS (
    SELECT p.customer_id,
           count(*) FILTER (WHERE p.purchase_time >= prm.start_time) AS purchases,
           bool_or(p.purchase_time < prm.start_time) AS was_active
    FROM params prm
    JOIN purchases p ON p.tenant_id = prm.tenant_id
                    AND p.purchase_time >= prm.previous_start AND p.purchase_time < prm.end_time
    GROUP BY p.customer_id, prm.start_time
),
labelled AS (
    SELECT pc.customer_id, pc.purchases, pc.was_active, coalesce(cs.segment, '') AS segment
    FROM per_customer pc
    CROSS JOIN params prm
    LEFT JOIN customer_segments cs ON cs.tenant_id = prm.tenant_id AND cs.customer_id = pc.customer_id
    WHERE prm.segment = '' OR cs.segment = prm.segment
),
grouped AS (
    SELECT (grouping(l.segment) = 1) AS is_total,
           coalesce(l.segment, '') AS segment,
           count(*) FILTER (WHERE l.purchases > 0) AS active,
           coalesce(sum(l.purchases), 0)::bigint AS purchases,
           count(*) FILTER (WHERE l.purchases >= 2) AS repeaters,
           count(*) FILTER (WHERE l.was_active) AS previous_active,
           count(*) FILTER (WHERE l.was_active AND l.purchases = 0) AS churned
    FROM labelled l
    GROUP BY GROUPING SETS ((l.segment), ())
)
SELECT g.is_total::boolean AS is_total, g.segment::text AS segment,
       g.active::bigint AS active, g.purchases::bigint AS purchases, g.repeaters::bigint AS repeaters,
       g.previous_active::bigint AS previous_active, g.churned::bigint AS churned,
       coalesce(round(g.repeaters::numeric / nullif(g.active, 0), 4), 0)::double precision AS repeat_rate,
       coalesce(round(g.purchases::numeric / nullif(g.active, 0), 4), 0)::double precision AS frequency,
       coalesce(round(g.churned::numeric / nullif(g.previous_active, 0), 4), 0)::double precision AS churn_rate
FROM grouped g
ORDER BY g.is_total DESC, g.segment;
