-- +goose Up

-- Recommendations (package internal/insight). Co-occurrence is computed per
-- tenant by a set-based refresh and stored here, so a request reads a few
-- index ranges instead of joining a tenant's purchase lines. Only tenant
-- aggregates are stored: counts of distinct customers per item and per pair
-- of items, never who bought what (the per-request query reads the one
-- customer's own purchases).

-- Each item (SKU) of a tenant with at least one buyer in the refresh window:
-- buyers is the number of distinct customers who bought it, the denominator
-- of the pair score. rank orders the best sellers (buyers descending, then
-- sku), stored so that a request reads "the first n best sellers" as one
-- index range whatever the table's statistics say after a refresh.
CREATE TABLE recommendation_items (
    tenant_id uuid NOT NULL,
    sku       text NOT NULL,
    -- The category of the item's most recent line (lines may disagree).
    category  text NOT NULL,
    buyers    bigint NOT NULL,
    rank      integer NOT NULL,
    PRIMARY KEY (tenant_id, sku),
    CONSTRAINT recommendation_items_rank_unique UNIQUE (tenant_id, rank),
    CONSTRAINT recommendation_items_sku_not_empty CHECK (sku <> ''),
    CONSTRAINT recommendation_items_buyers_positive CHECK (buyers > 0),
    CONSTRAINT recommendation_items_rank_positive CHECK (rank >= 1)
);

-- The best neighbours of each item: rank 1..n by score (then co_buyers,
-- then other_sku), at most the refresh's per-item limit. The key is the
-- rank so a request reads "the first n neighbours of this item" as one
-- primary-key range per item the customer owns.
--
-- co_buyers: distinct customers who bought both sku and other_sku in the
-- window (at least the refresh's minimum, never 1: a pair bought by one
-- customer alone would be their basket).
-- score: co_buyers / sqrt(buyers(sku) * buyers(other_sku)), the cosine of
-- the two items' buyer sets (see insight.proto).
CREATE TABLE recommendation_pairs (
    tenant_id uuid NOT NULL,
    sku       text NOT NULL,
    rank      integer NOT NULL,
    other_sku text NOT NULL,
    co_buyers bigint NOT NULL,
    score     double precision NOT NULL,
    PRIMARY KEY (tenant_id, sku, rank),
    CONSTRAINT recommendation_pairs_distinct CHECK (sku <> other_sku),
    CONSTRAINT recommendation_pairs_rank_positive CHECK (rank >= 1),
    CONSTRAINT recommendation_pairs_co_buyers_min CHECK (co_buyers >= 2),
    CONSTRAINT recommendation_pairs_score_range CHECK (score > 0 AND score <= 1)
);

-- When each tenant's next refresh is due, claimed like segment_schedule: a
-- replica takes a due row FOR UPDATE SKIP LOCKED and refreshes the tenant in
-- the transaction that holds the claim, so a tenant is refreshed once per
-- round however many replicas run, and a crash leaves it due. Tenants join
-- with their first purchase (the refresh loop enrols them).
CREATE TABLE recommendation_schedule (
    tenant_id     uuid PRIMARY KEY,
    next_run_time timestamptz NOT NULL,
    -- The last refresh: when, and what it stored. NULL before the first.
    last_run_time timestamptz,
    rounds        bigint NOT NULL DEFAULT 0,
    items         bigint NOT NULL DEFAULT 0,
    pairs         bigint NOT NULL DEFAULT 0,
    CONSTRAINT recommendation_schedule_counts CHECK (rounds >= 0 AND items >= 0 AND pairs >= 0)
);
CREATE INDEX recommendation_schedule_due ON recommendation_schedule (next_run_time);

-- +goose Down
DROP TABLE recommendation_schedule;
DROP TABLE recommendation_pairs;
DROP TABLE recommendation_items;
