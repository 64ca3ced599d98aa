-- +goose Up

-- Privacy (package internal/privacy): erasure by crypto-shredding, the
-- suppression list it leaves behind, and the audit log of every access to
-- personal data. Every table leads with tenant_id.

-- An erased customer keeps its row (ids elsewhere still resolve, amounts
-- stay countable) but nothing personal: its data key is deleted, every
-- sealed column and blind index is NULL (the required display name is the
-- empty string of bytes), and erase_time says when.
ALTER TABLE customers
    ADD COLUMN erase_time timestamptz,
    DROP CONSTRAINT customers_display_name_sealed_not_empty,
    ADD CONSTRAINT customers_display_name_sealed_not_empty CHECK (octet_length(display_name_sealed) > 0 OR erase_time IS NOT NULL),
    ADD CONSTRAINT customers_erased_has_nothing_personal CHECK (erase_time IS NULL OR (
        octet_length(display_name_sealed) = 0 AND email_sealed IS NULL AND phone_sealed IS NULL
        AND email_bidx IS NULL AND phone_bidx IS NULL AND birthday_sealed IS NULL
        AND birth_month IS NULL AND birth_day IS NULL AND address_sealed IS NULL
        AND attributes_sealed IS NULL));

-- Contact addresses of erased customers that must not be contacted for
-- marketing again (an old list re-imported, a duplicate profile). Never the
-- address: a keyed fingerprint of its normalised form under the tenant's PRF
-- key (pii.TenantKeys.Fingerprint), so the table alone cannot confirm a
-- guessed address. kind is which contact column it came from.
CREATE TABLE contact_suppressions (
    tenant_id   uuid NOT NULL,
    kind        text NOT NULL,
    fingerprint bytea NOT NULL,
    create_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, kind, fingerprint),
    CONSTRAINT contact_suppressions_kind_valid CHECK (kind IN ('email', 'phone')),
    CONSTRAINT contact_suppressions_fingerprint_length CHECK (octet_length(fingerprint) = 32)
);

-- One row per call that read, changed, exported or erased personal data:
-- who (the principal's subject and roles), when, what (the action, the
-- method, the customers and the NAMES of the personal fields involved),
-- and the request ids to correlate with logs. Never a value. A call that
-- touches many customers (a list page) is one row naming all of them.
-- Append-only: the triggers refuse UPDATE, DELETE and TRUNCATE.
CREATE TABLE pii_audit (
    tenant_id       uuid NOT NULL,
    id              uuid NOT NULL,
    occur_time      timestamptz NOT NULL DEFAULT now(),
    actor_subject   text NOT NULL,
    actor_roles     text[] NOT NULL,
    action          text NOT NULL,
    method          text NOT NULL,
    customer_ids    uuid[] NOT NULL,
    fields          text[] NOT NULL,
    -- x-request-id of the call (the log correlation id).
    request_id      text NOT NULL,
    -- The request's idempotency key (request_id field), when it had one.
    idempotency_key uuid,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT pii_audit_action_valid CHECK (action IN (
        'read', 'list', 'lookup', 'create', 'update', 'merge', 'export', 'erase',
        'consent_change', 'preferences_change')),
    CONSTRAINT pii_audit_actor_not_empty CHECK (actor_subject <> ''),
    CONSTRAINT pii_audit_method_not_empty CHECK (method <> '')
);

-- ListAuditEvents: a tenant's rows newest first, or one customer's.
CREATE INDEX pii_audit_customers ON pii_audit USING gin (customer_ids);

-- +goose StatementBegin
CREATE FUNCTION pii_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'pii_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER pii_audit_no_update_delete BEFORE UPDATE OR DELETE ON pii_audit
    FOR EACH ROW EXECUTE FUNCTION pii_audit_append_only();
CREATE TRIGGER pii_audit_no_truncate BEFORE TRUNCATE ON pii_audit
    FOR EACH STATEMENT EXECUTE FUNCTION pii_audit_append_only();

-- +goose Down
DROP TRIGGER pii_audit_no_truncate ON pii_audit;
DROP TRIGGER pii_audit_no_update_delete ON pii_audit;
DROP TABLE pii_audit;
DROP FUNCTION pii_audit_append_only();
DROP TABLE contact_suppressions;
-- Erased rows have nothing to restore.
DELETE FROM customers WHERE erase_time IS NOT NULL;
ALTER TABLE customers
    DROP CONSTRAINT customers_erased_has_nothing_personal,
    DROP CONSTRAINT customers_display_name_sealed_not_empty,
    DROP COLUMN erase_time,
    ADD CONSTRAINT customers_display_name_sealed_not_empty CHECK (octet_length(display_name_sealed) > 0);
