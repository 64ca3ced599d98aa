-- +goose Up
-- The rest of the profile (issue: customer service, part 1). Personal fields
-- are sealed like the others (internal/pii). Two coarse facts stay in clear
-- because set-based work needs them without decrypting every row:
--   birth_month/birth_day: the care calendar finds today's birthdays across
--     a tenant in one indexed query; the year, which with them identifies,
--     is only in birthday_sealed.
--   country_code: incidents and analytics target customers by country.
ALTER TABLE customers
    ADD COLUMN birthday_sealed   bytea,
    ADD COLUMN birth_month       smallint,
    ADD COLUMN birth_day         smallint,
    ADD COLUMN address_sealed    bytea,
    ADD COLUMN country_code      text NOT NULL DEFAULT '',
    ADD COLUMN attributes_sealed bytea,
    -- A merged customer points at the one it was merged into; it is kept
    -- (references to it still resolve) but is no longer listed.
    ADD COLUMN merged_into       uuid,
    ADD COLUMN merge_time        timestamptz,
    ADD CONSTRAINT customers_birthday_parts CHECK ((birth_month IS NULL) = (birth_day IS NULL)),
    ADD CONSTRAINT customers_birthday_sealed CHECK (birthday_sealed IS NULL OR birth_month IS NOT NULL),
    ADD CONSTRAINT customers_birth_month_range CHECK (birth_month BETWEEN 1 AND 12),
    ADD CONSTRAINT customers_birth_day_range CHECK (birth_day BETWEEN 1 AND 31),
    ADD CONSTRAINT customers_country_code_format CHECK (country_code = '' OR country_code ~ '^[A-Z]{2}$'),
    ADD CONSTRAINT customers_merged_not_self CHECK (merged_into IS NULL OR merged_into <> id),
    ADD CONSTRAINT customers_merge_time CHECK ((merged_into IS NULL) = (merge_time IS NULL)),
    ADD CONSTRAINT customers_merged_into_fk FOREIGN KEY (tenant_id, merged_into) REFERENCES customers (tenant_id, id);

CREATE INDEX customers_birthday ON customers (tenant_id, birth_month, birth_day)
    WHERE birth_month IS NOT NULL AND merged_into IS NULL;

-- The customers merged into one: a merge re-points them when their target
-- is merged in turn (so no chain forms), and the foreign key above checks
-- here when a customer row goes.
CREATE INDEX customers_merged_into ON customers (tenant_id, merged_into) WHERE merged_into IS NOT NULL;

-- External references: the customer's id in another system (shop, CRM,
-- POS). Not unique: two customers sharing one is a duplicate to find and
-- merge, not an error to refuse at the door.
CREATE TABLE customer_external_refs (
    tenant_id   uuid NOT NULL,
    customer_id uuid NOT NULL,
    system      text NOT NULL,
    ref         text NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, system),
    CONSTRAINT customer_external_refs_customer_fk FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT customer_external_refs_system_format CHECK (system ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    CONSTRAINT customer_external_refs_ref_length CHECK (length(ref) BETWEEN 1 AND 200)
);

CREATE INDEX customer_external_refs_ref ON customer_external_refs (tenant_id, system, ref);

-- +goose Down
DROP TABLE customer_external_refs;
DROP INDEX customers_merged_into;
DROP INDEX customers_birthday;
ALTER TABLE customers
    DROP COLUMN birthday_sealed,
    DROP COLUMN birth_month,
    DROP COLUMN birth_day,
    DROP COLUMN address_sealed,
    DROP COLUMN country_code,
    DROP COLUMN attributes_sealed,
    DROP COLUMN merged_into,
    DROP COLUMN merge_time;
