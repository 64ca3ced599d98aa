-- +goose Up

-- Personal data at rest (DESIGN.md §3 Data, RELIABILITY.md §1.7): profiles
-- keep their personal fields as ciphertext only, sealed with a key of their
-- own, and equality lookups go through keyed, truncated blind indexes. The
-- crypto lives in internal/pii; this file only shapes the tables.
--
-- Key hierarchy, each level wrapped (AEAD-encrypted) by the one above:
--   master key (config, never stored)
--     -> tenant_keys: one AEAD keyset and one PRF keyset per tenant
--       -> customer_keys: one AEAD keyset per customer
--         -> the customer's field ciphertexts.
-- Deleting a customer_keys row destroys that customer's personal data
-- everywhere it is sealed (crypto-shredding), backups included once they age
-- out: the wrapped key is the only way to it.

-- Dev data only: no release ever stored profiles in plaintext, and a SQL
-- migration cannot encrypt (the keys are outside the database), so profiles
-- written before this migration are deleted rather than left readable. Stored
-- idempotent responses of the customer API carry those plaintext profiles
-- too, so they go with them (a retry of such a request simply runs again).
DELETE FROM customers;
DELETE FROM idempotency_keys WHERE method LIKE '/rapport.customer.v1.CustomerService/%';

-- One row per tenant, created on first use. Both keysets are Tink keysets
-- encrypted with the master key; the associated data binds each to its
-- tenant and its role, so a row copied to another tenant does not unwrap.
CREATE TABLE tenant_keys (
    tenant_id   uuid PRIMARY KEY,
    aead_keyset bytea NOT NULL,
    prf_keyset  bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT tenant_keys_aead_keyset_not_empty CHECK (octet_length(aead_keyset) > 0),
    CONSTRAINT tenant_keys_prf_keyset_not_empty CHECK (octet_length(prf_keyset) > 0)
);

ALTER TABLE customers
    DROP COLUMN display_name,
    DROP COLUMN email,
    DROP COLUMN phone,
    -- Sealed fields: AEAD ciphertexts whose associated data binds tenant,
    -- table, column and customer id. NULL means the field is empty.
    ADD COLUMN display_name_sealed bytea NOT NULL,
    ADD COLUMN email_sealed bytea,
    ADD COLUMN phone_sealed bytea,
    -- Blind indexes: a keyed PRF of the normalised value, truncated so that
    -- many customers share each value (internal/pii explains the length).
    -- They narrow a lookup to candidates; the candidates are decrypted and
    -- compared, so a shared value never returns a wrong customer.
    ADD COLUMN email_bidx integer,
    ADD COLUMN phone_bidx integer,
    ADD CONSTRAINT customers_display_name_sealed_not_empty CHECK (octet_length(display_name_sealed) > 0),
    ADD CONSTRAINT customers_email_indexed CHECK ((email_sealed IS NULL) = (email_bidx IS NULL)),
    ADD CONSTRAINT customers_phone_indexed CHECK ((phone_sealed IS NULL) = (phone_bidx IS NULL)),
    ADD CONSTRAINT customers_email_bidx_range CHECK (email_bidx >= 0),
    ADD CONSTRAINT customers_phone_bidx_range CHECK (phone_bidx >= 0);

CREATE INDEX customers_email_bidx ON customers (tenant_id, email_bidx) WHERE email_bidx IS NOT NULL;
CREATE INDEX customers_phone_bidx ON customers (tenant_id, phone_bidx) WHERE phone_bidx IS NOT NULL;

-- One data key per customer: a Tink keyset encrypted with the tenant's AEAD,
-- bound to tenant and customer. Erasing a customer deletes this row (the
-- customer row may stay, its sealed fields then unreadable). The foreign key
-- is deferred so the key can be written before its customer in one
-- transaction; deleting a customer deletes its key.
CREATE TABLE customer_keys (
    tenant_id   uuid NOT NULL,
    customer_id uuid NOT NULL,
    keyset      bytea NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, customer_id),
    CONSTRAINT customer_keys_customer_fk FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, id) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    CONSTRAINT customer_keys_keyset_not_empty CHECK (octet_length(keyset) > 0)
);

-- +goose Down

-- Ciphertexts cannot be turned back into plaintext here (the keys are
-- outside the database), so going down deletes the profiles.
DROP TABLE customer_keys;
DELETE FROM customers;
DELETE FROM idempotency_keys WHERE method LIKE '/rapport.customer.v1.CustomerService/%';
DROP INDEX customers_phone_bidx;
DROP INDEX customers_email_bidx;
ALTER TABLE customers
    DROP COLUMN display_name_sealed,
    DROP COLUMN email_sealed,
    DROP COLUMN phone_sealed,
    DROP COLUMN email_bidx,
    DROP COLUMN phone_bidx,
    ADD COLUMN display_name text NOT NULL,
    ADD COLUMN email text NOT NULL DEFAULT '',
    ADD COLUMN phone text NOT NULL DEFAULT '',
    ADD CONSTRAINT customers_display_name_not_empty CHECK (display_name <> '');
DROP TABLE tenant_keys;
