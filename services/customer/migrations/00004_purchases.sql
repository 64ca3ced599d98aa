-- +goose Up

-- Purchases and RFM value segments (package internal/purchase). Every table
-- leads with tenant_id. Amounts are bigint minor units of currency_code;
-- channels and segments are stored as their lower-case names, the CHECKs
-- being the backstop for the enums in purchase.proto and segment.proto.

-- One row per recorded purchase. (tenant_id, order_reference) is the business
-- key and is kept for ever: a replayed order finds its first purchase here
-- long after its request id has expired. request_hash fingerprints what the
-- client sent, so a replay can tell "the same order again" from "another
-- order under a used reference".
CREATE TABLE purchases (
    tenant_id          uuid NOT NULL,
    id                 uuid NOT NULL,
    customer_id        uuid NOT NULL,
    order_reference    text NOT NULL,
    channel            text NOT NULL,
    currency_code      text NOT NULL,
    total_amount_minor bigint NOT NULL,
    purchase_time      timestamptz NOT NULL,
    request_hash       bytea NOT NULL,
    create_time        timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT purchases_order_reference_unique UNIQUE (tenant_id, order_reference),
    CONSTRAINT purchases_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT purchases_order_reference_not_empty CHECK (order_reference <> ''),
    CONSTRAINT purchases_channel_known CHECK (channel IN ('online', 'store', 'phone', 'marketplace', 'other')),
    CONSTRAINT purchases_currency_code_iso CHECK (currency_code ~ '^[A-Z]{3}$'),
    CONSTRAINT purchases_total_amount_minor_non_negative CHECK (total_amount_minor >= 0)
);

-- ListPurchases (newest first) and the RFM aggregate, which reads a
-- customer's purchases or all of a tenant's grouped by customer: both walk
-- this index. INCLUDE makes the aggregate index-only.
CREATE INDEX purchases_customer_time ON purchases (tenant_id, customer_id, purchase_time DESC, id DESC)
    INCLUDE (currency_code, total_amount_minor);

-- The lines of a purchase, in the order given.
CREATE TABLE purchase_items (
    tenant_id        uuid NOT NULL,
    purchase_id      uuid NOT NULL,
    line             integer NOT NULL,
    sku              text NOT NULL,
    name             text NOT NULL,
    category         text NOT NULL,
    quantity         integer NOT NULL,
    currency_code    text NOT NULL,
    unit_price_minor bigint NOT NULL,
    PRIMARY KEY (tenant_id, purchase_id, line),
    CONSTRAINT purchase_items_purchase_fk FOREIGN KEY (tenant_id, purchase_id) REFERENCES purchases (tenant_id, id),
    CONSTRAINT purchase_items_sku_not_empty CHECK (sku <> ''),
    CONSTRAINT purchase_items_quantity_positive CHECK (quantity > 0),
    CONSTRAINT purchase_items_currency_code_iso CHECK (currency_code ~ '^[A-Z]{3}$'),
    CONSTRAINT purchase_items_unit_price_minor_non_negative CHECK (unit_price_minor >= 0)
);

-- A tenant's RFM thresholds. No row means the defaults in code
-- (purchase.DefaultSettings). Each list holds the four bounds of scores
-- 5..2 (recency) or 2..5 (frequency, monetary), strictly ascending.
CREATE TABLE segment_settings (
    tenant_id          uuid PRIMARY KEY,
    base_currency      text NOT NULL,
    window_days        integer NOT NULL,
    recency_max_days   integer[] NOT NULL,
    frequency_min      bigint[] NOT NULL,
    monetary_min_minor bigint[] NOT NULL,
    version            bigint NOT NULL,
    update_time        timestamptz NOT NULL,
    CONSTRAINT segment_settings_base_currency_iso CHECK (base_currency ~ '^[A-Z]{3}$'),
    CONSTRAINT segment_settings_window_days_range CHECK (window_days BETWEEN 1 AND 3660),
    CONSTRAINT segment_settings_recency_ascending CHECK (
        cardinality(recency_max_days) = 4 AND recency_max_days[1] >= 0
        AND recency_max_days[1] < recency_max_days[2] AND recency_max_days[2] < recency_max_days[3]
        AND recency_max_days[3] < recency_max_days[4]),
    CONSTRAINT segment_settings_frequency_ascending CHECK (
        cardinality(frequency_min) = 4 AND frequency_min[1] >= 1
        AND frequency_min[1] < frequency_min[2] AND frequency_min[2] < frequency_min[3]
        AND frequency_min[3] < frequency_min[4]),
    CONSTRAINT segment_settings_monetary_ascending CHECK (
        cardinality(monetary_min_minor) = 4 AND monetary_min_minor[1] >= 1
        AND monetary_min_minor[1] < monetary_min_minor[2] AND monetary_min_minor[2] < monetary_min_minor[3]
        AND monetary_min_minor[3] < monetary_min_minor[4]),
    CONSTRAINT segment_settings_version_positive CHECK (version > 0)
);

-- Each customer's current segment, one row per customer with a purchase.
-- Written by the set-based recompute only where something stored changed.
--
-- basis is how many purchases (all time) the values were computed from.
-- Purchases are never deleted, so a computation from an older snapshot has a
-- smaller basis, and the recompute's upsert refuses to overwrite a row with a
-- larger one: a tenant-wide recompute that raced a RecordPurchase never puts
-- back the values from before that purchase.
--
-- segment_version counts segment changes; it is the aggregate version of
-- rapport.customer.segment.changed. segment_changed says whether the last
-- write changed the segment: the upsert's RETURNING cannot see the old row,
-- so the statement records the comparison here and returns it.
CREATE TABLE customer_segments (
    tenant_id           uuid NOT NULL,
    customer_id         uuid NOT NULL,
    segment             text NOT NULL,
    previous_segment    text NOT NULL DEFAULT '',
    recency_score       smallint NOT NULL,
    frequency_score     smallint NOT NULL,
    monetary_score      smallint NOT NULL,
    last_purchase_time  timestamptz NOT NULL,
    frequency           bigint NOT NULL,
    monetary_minor      bigint NOT NULL,
    monetary_currency   text NOT NULL,
    basis               bigint NOT NULL,
    segment_version     bigint NOT NULL,
    segment_changed     boolean NOT NULL,
    segment_change_time timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id),
    CONSTRAINT customer_segments_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT customer_segments_segment_known CHECK (segment IN ('important', 'ordinary', 'potential', 'at_risk', 'lost')),
    CONSTRAINT customer_segments_previous_segment_known CHECK (
        previous_segment IN ('', 'important', 'ordinary', 'potential', 'at_risk', 'lost')),
    CONSTRAINT customer_segments_scores_range CHECK (
        recency_score BETWEEN 1 AND 5 AND frequency_score BETWEEN 1 AND 5 AND monetary_score BETWEEN 1 AND 5),
    CONSTRAINT customer_segments_amounts_non_negative CHECK (frequency >= 0 AND monetary_minor >= 0 AND basis > 0),
    CONSTRAINT customer_segments_version_positive CHECK (segment_version > 0)
);

-- ListCustomersBySegment: who entered a segment most recently first.
CREATE INDEX customer_segments_by_segment
    ON customer_segments (tenant_id, segment, segment_change_time DESC, customer_id DESC);

-- When each tenant's next scheduled recompute is due. A replica claims a due
-- tenant with FOR UPDATE SKIP LOCKED and recomputes it in the transaction
-- that holds the claim, then moves next_run_time one interval on: a crash
-- releases the claim with nothing done, and no tenant runs twice per round.
-- RecordPurchase adds the tenant's row on its first purchase.
CREATE TABLE segment_schedule (
    tenant_id     uuid PRIMARY KEY,
    next_run_time timestamptz NOT NULL,
    last_run_time timestamptz,
    rounds        bigint NOT NULL DEFAULT 0,
    last_changed  bigint NOT NULL DEFAULT 0
);
CREATE INDEX segment_schedule_due ON segment_schedule (next_run_time);

-- +goose Down
DROP TABLE segment_schedule;
DROP TABLE customer_segments;
DROP TABLE segment_settings;
DROP TABLE purchase_items;
DROP TABLE purchases;
