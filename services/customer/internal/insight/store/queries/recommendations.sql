-- RecommendationClearPairs and RecommendationClearItems delete a tenant's
-- stored counts before a refresh writes them again, in the same
-- transaction: readers see the old counts until it commits.
-- name: RecommendationClearPairs :exec
DELETE FROM recommendation_pairs WHERE tenant_id = @tenant_id;

-- name: RecommendationClearItems :exec
DELETE FROM recommendation_items WHERE tenant_id = @tenant_id;

-- RecommendationRefresh computes a tenant's item and pair counts over the
-- purchases since window_start in one statement and stores them (after
-- RecommendationClear). It returns how many rows it stored.
--
--   lines   the tenant's purchase lines in the window (one pass)
--   owned   who bought what, once per customer and item
--   buyers  distinct customers per item
--   cats    each item's category on its most recent line
--   pairs   distinct customers per ordered pair of items (a self-join of
--           owned per customer), at least min_co_buyers
--   ranked  the cosine score and each item's neighbours ranked by it; the
--           best `neighbours` are kept
-- name: RecommendationRefresh :one
WITH params AS NOT MATERIALIZED (
    SELECT @tenant_id::uuid AS tenant_id,
           @window_start::timestamptz AS window_start,
           @min_co_buyers::bigint AS min_co_buyers,
           @neighbours::integer AS neighbours
),
lines AS MATERIALIZED (
    SELECT p.customer_id, i.sku, i.category, p.purchase_time
    FROM params prm
    JOIN purchases p ON p.tenant_id = prm.tenant_id AND p.purchase_time >= prm.window_start
    JOIN purchase_items i ON i.tenant_id = p.tenant_id AND i.purchase_id = p.id
),
owned AS MATERIALIZED (
    SELECT DISTINCT l.customer_id, l.sku FROM lines l
),
buyers AS MATERIALIZED (
    SELECT o.sku, count(*) AS buyers FROM owned o GROUP BY o.sku
),
cats AS (
    SELECT DISTINCT ON (l.sku) l.sku, l.category
    FROM lines l
    ORDER BY l.sku, l.purchase_time DESC, l.category
),
items_written AS (
    INSERT INTO recommendation_items (tenant_id, sku, category, buyers, rank)
    SELECT prm.tenant_id, b.sku, c.category, b.buyers,
           row_number() OVER (ORDER BY b.buyers DESC, b.sku)
    FROM buyers b
    JOIN cats c ON c.sku = b.sku
    CROSS JOIN params prm
    RETURNING 1
),
pairs AS (
    SELECT a.sku, b.sku AS other_sku, count(*) AS co_buyers
    FROM owned a
    JOIN owned b ON b.customer_id = a.customer_id AND b.sku <> a.sku
    GROUP BY a.sku, b.sku
    HAVING count(*) >= (SELECT min_co_buyers FROM params)
),
ranked AS (
    SELECT s.sku, s.other_sku, s.co_buyers, s.score,
           row_number() OVER (PARTITION BY s.sku ORDER BY s.score DESC, s.co_buyers DESC, s.other_sku) AS rank
    FROM (
        SELECT pr.sku, pr.other_sku, pr.co_buyers,
               least(1.0, pr.co_buyers / sqrt(ba.buyers::double precision * bb.buyers::double precision)) AS score
        FROM pairs pr
        JOIN buyers ba ON ba.sku = pr.sku
        JOIN buyers bb ON bb.sku = pr.other_sku
    ) s
),
pairs_written AS (
    INSERT INTO recommendation_pairs (tenant_id, sku, rank, other_sku, co_buyers, score)
    SELECT prm.tenant_id, r.sku, r.rank, r.other_sku, r.co_buyers, r.score
    FROM ranked r
    CROSS JOIN params prm
    WHERE r.rank <= prm.neighbours
    RETURNING 1
)
SELECT (SELECT count(*) FROM items_written)::bigint AS items,
       (SELECT count(*) FROM pairs_written)::bigint AS pairs;

-- RecommendationList is the per-request query: a customer's recommendations
-- from the stored counts, best first.
--
--   owned      the items the customer ever bought (their purchases by the
--              customer index, then each purchase's lines by key)
--   neighbours the first row_limit + |owned| neighbours of each owned item,
--              one primary-key range each, minus owned items: the overall
--              best row_limit candidates by max score are always among them
--   together   each candidate once, with its best anchor (the max score)
--   known      whether the customer is the tenant's (evaluated once): an
--              unknown customer gets no rows
--   best       best sellers the customer has not bought and together does
--              not hold, to fill the list: the first row_limit + |owned| +
--              |together| by rank, one index range
-- name: RecommendationList :many
WITH params AS NOT MATERIALIZED (
    SELECT @tenant_id::uuid AS tenant_id,
           @customer_id::uuid AS customer_id,
           @row_limit::integer AS row_limit
),
owned AS MATERIALIZED (
    SELECT DISTINCT i.sku
    FROM params prm
    JOIN purchases p ON p.tenant_id = prm.tenant_id AND p.customer_id = prm.customer_id
    JOIN purchase_items i ON i.tenant_id = p.tenant_id AND i.purchase_id = p.id
),
neighbours AS (
    SELECT r.other_sku AS sku, r.sku AS anchor_sku, r.co_buyers, r.score
    FROM owned o
    CROSS JOIN params prm
    JOIN recommendation_pairs r
      ON r.tenant_id = prm.tenant_id AND r.sku = o.sku
     AND r.rank <= prm.row_limit + (SELECT count(*) FROM owned)::integer
    WHERE r.other_sku NOT IN (SELECT ow.sku FROM owned ow)
),
together AS MATERIALIZED (
    SELECT t.sku, t.anchor_sku, t.co_buyers, t.score
    FROM (
        SELECT DISTINCT ON (n.sku) n.sku, n.anchor_sku, n.co_buyers, n.score
        FROM neighbours n
        ORDER BY n.sku, n.score DESC, n.co_buyers DESC, n.anchor_sku
    ) t
    ORDER BY t.score DESC, t.co_buyers DESC, t.sku
    LIMIT (SELECT row_limit FROM params)
),
known AS MATERIALIZED (
    SELECT EXISTS (SELECT 1 FROM params prm JOIN customers c ON c.tenant_id = prm.tenant_id AND c.id = prm.customer_id) AS ok
),
best AS (
    SELECT it.sku
    FROM params prm
    JOIN recommendation_items it
      ON it.tenant_id = prm.tenant_id
     AND it.rank <= prm.row_limit + (SELECT count(*) FROM owned)::integer + (SELECT count(*) FROM together)::integer
    WHERE (SELECT k.ok FROM known k)
      AND it.sku NOT IN (SELECT ow.sku FROM owned ow)
      AND it.sku NOT IN (SELECT tg.sku FROM together tg)
    ORDER BY it.rank
    LIMIT (SELECT row_limit FROM params)
),
chosen AS (
    SELECT 1 AS kind, tg.sku, tg.anchor_sku, tg.co_buyers, tg.score FROM together tg
    UNION ALL
    SELECT 2 AS kind, b.sku, '' AS anchor_sku, 0::bigint AS co_buyers, 0::double precision AS score FROM best b
)
SELECT ch.kind::integer AS kind, ch.sku, it.category, it.buyers, ch.anchor_sku::text AS anchor_sku,
       ch.co_buyers::bigint AS co_buyers, ch.score::double precision AS score,
       rs.last_run_time AS refresh_time
FROM chosen ch
CROSS JOIN params prm
JOIN recommendation_items it ON it.tenant_id = prm.tenant_id AND it.sku = ch.sku
LEFT JOIN recommendation_schedule rs ON rs.tenant_id = prm.tenant_id
ORDER BY ch.kind, ch.score DESC, ch.co_buyers DESC, it.buyers DESC, ch.sku
LIMIT (SELECT row_limit FROM params);

-- RecommendationCustomerExists tells an empty list's two causes apart: an
-- unknown customer, or a tenant without counts. It returns the last refresh
-- too (NULL before the first), and the customer it was merged into (NULL if
-- none): a merged customer gets no recommendations.
-- name: RecommendationCustomerExists :one
SELECT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id) AS customer_exists,
       (SELECT c.merged_into FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id) AS merged_into,
       (SELECT rs.last_run_time FROM recommendation_schedule rs WHERE rs.tenant_id = @tenant_id) AS refresh_time;
