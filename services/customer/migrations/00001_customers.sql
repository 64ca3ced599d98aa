-- +goose Up

-- One row per customer profile. The key leads with tenant_id so every lookup
-- is tenant-scoped by construction. Contact fields are stored as entered
-- here; their encryption at rest arrives with the profile work (a later
-- migration moves them to ciphertext and blind-index columns).
CREATE TABLE customers (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    display_name text NOT NULL,
    email        text NOT NULL DEFAULT '',
    phone        text NOT NULL DEFAULT '',
    locale       text NOT NULL DEFAULT '',
    time_zone    text NOT NULL DEFAULT '',
    tags         text[] NOT NULL DEFAULT '{}',
    version      bigint NOT NULL DEFAULT 1,
    create_time  timestamptz NOT NULL DEFAULT now(),
    update_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT customers_display_name_not_empty CHECK (display_name <> ''),
    CONSTRAINT customers_version_positive CHECK (version > 0)
);

-- ListCustomers walks ids downwards (UUIDv7 ids sort by creation time).
CREATE INDEX customers_tenant_id_desc ON customers (tenant_id, id DESC);
CREATE INDEX customers_tags ON customers USING gin (tags);

-- +goose Down
DROP TABLE customers;
