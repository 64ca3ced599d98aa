-- +goose Up

-- Consent, contact preferences and the contact governor (package
-- internal/consent). Every table leads with tenant_id. Channels, purposes,
-- states and legal bases are stored as their lower-case names; the CHECKs are
-- the backstop for the enums in consent.proto.

-- The tenant's contact policy: frequency caps per purpose and one global cap
-- per customer over a rolling period, and the time zone of customers without
-- one. No row means the defaults in code (consent.DefaultPolicy); the first
-- change stores them at version 0 and applies itself as version 1. A cap of
-- 0 contacts is no cap.
CREATE TABLE contact_policies (
    tenant_id                uuid PRIMARY KEY,
    default_time_zone        text NOT NULL,
    care_max                 integer NOT NULL,
    care_period_seconds      bigint NOT NULL,
    marketing_max            integer NOT NULL,
    marketing_period_seconds bigint NOT NULL,
    survey_max               integer NOT NULL,
    survey_period_seconds    bigint NOT NULL,
    global_max               integer NOT NULL,
    global_period_seconds    bigint NOT NULL,
    version                  bigint NOT NULL,
    update_time              timestamptz NOT NULL,
    CONSTRAINT contact_policies_caps_valid CHECK (
        care_max >= 0 AND marketing_max >= 0 AND survey_max >= 0 AND global_max >= 0
        AND care_period_seconds > 0 AND marketing_period_seconds > 0
        AND survey_period_seconds > 0 AND global_period_seconds > 0),
    CONSTRAINT contact_policies_version_not_negative CHECK (version >= 0)
);

-- One row per customer that has consent or contact state. It is the lock
-- every consent change and every recorded touch of the customer takes first
-- (SELECT … FOR UPDATE), so a reservation counts touches that nobody else is
-- adding, and consent_version orders the customer's consent events.
-- Created on first use, only for a customer that exists.
CREATE TABLE contact_settings (
    tenant_id               uuid NOT NULL,
    customer_id             uuid NOT NULL,
    -- Version of the customer's consent aggregate: the number of consent
    -- events recorded; consent.changed events carry it.
    consent_version         bigint NOT NULL DEFAULT 0,
    -- Quiet hours as minutes after local midnight in the customer's time
    -- zone, [start, end); end < start runs across midnight. Both or neither.
    quiet_start_minute      smallint,
    quiet_end_minute        smallint,
    -- Channels in the customer's order of preference.
    preferred_channels      text[] NOT NULL DEFAULT '{}',
    preferences_update_time timestamptz,
    create_time             timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT contact_settings_version_not_negative CHECK (consent_version >= 0),
    CONSTRAINT contact_settings_quiet_hours_valid CHECK (
        (quiet_start_minute IS NULL AND quiet_end_minute IS NULL)
        OR (quiet_start_minute BETWEEN 0 AND 1439 AND quiet_end_minute BETWEEN 0 AND 1439
            AND quiet_start_minute <> quiet_end_minute))
);

-- The current consent per customer × channel × purpose. Written only in the
-- transaction that appends the consent_events row it reflects (version is
-- that row's version), so it is always the latest event's result.
CREATE TABLE consent_states (
    tenant_id    uuid NOT NULL,
    customer_id  uuid NOT NULL,
    channel      text NOT NULL,
    purpose      text NOT NULL,
    state        text NOT NULL,
    legal_basis  text NOT NULL,
    source       text NOT NULL,
    capture_time timestamptz NOT NULL,
    version      bigint NOT NULL,
    update_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, customer_id, channel, purpose),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES contact_settings (tenant_id, customer_id),
    CONSTRAINT consent_states_channel_valid CHECK (channel IN ('email', 'sms', 'phone', 'push', 'messaging', 'post')),
    CONSTRAINT consent_states_purpose_valid CHECK (purpose IN ('service', 'care', 'marketing', 'survey')),
    CONSTRAINT consent_states_state_valid CHECK (state IN ('granted', 'withdrawn', 'pending')),
    CONSTRAINT consent_states_legal_basis_valid CHECK (
        legal_basis IN ('consent', 'contract', 'legitimate_interest', 'legal_obligation'))
);

-- Every consent decision ever recorded, append-only: the triggers below
-- refuse UPDATE, DELETE and TRUNCATE. actor is the principal that recorded
-- the decision (an identifier, never personal data); with request_id and the
-- times it is the audit trail of consent changes.
CREATE TABLE consent_events (
    tenant_id      uuid NOT NULL,
    customer_id    uuid NOT NULL,
    version        bigint NOT NULL,
    id             uuid NOT NULL,
    channel        text NOT NULL,
    purpose        text NOT NULL,
    state          text NOT NULL,
    -- '' when the event is the first for its channel × purpose.
    previous_state text NOT NULL,
    legal_basis    text NOT NULL,
    source         text NOT NULL,
    capture_time   timestamptz NOT NULL,
    record_time    timestamptz NOT NULL,
    actor          text NOT NULL,
    request_id     uuid,
    PRIMARY KEY (tenant_id, customer_id, version),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES contact_settings (tenant_id, customer_id),
    CONSTRAINT consent_events_id_unique UNIQUE (id),
    CONSTRAINT consent_events_version_positive CHECK (version > 0),
    CONSTRAINT consent_events_channel_valid CHECK (channel IN ('email', 'sms', 'phone', 'push', 'messaging', 'post')),
    CONSTRAINT consent_events_purpose_valid CHECK (purpose IN ('service', 'care', 'marketing', 'survey')),
    CONSTRAINT consent_events_state_valid CHECK (state IN ('granted', 'withdrawn', 'pending')),
    CONSTRAINT consent_events_previous_state_valid CHECK (previous_state IN ('', 'granted', 'withdrawn', 'pending')),
    CONSTRAINT consent_events_legal_basis_valid CHECK (
        legal_basis IN ('consent', 'contract', 'legitimate_interest', 'legal_obligation'))
);

-- +goose StatementBegin
CREATE FUNCTION consent_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_events is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER consent_events_no_update_delete BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_append_only();

-- Double opt-in confirmation tokens. Only the SHA-256 of a token is stored;
-- the token itself (256 random bits) is shown once, to the caller that made
-- the pending consent. A token confirms the pending event of its version,
-- once, before expire_time; a later decision on the same channel × purpose
-- revokes it.
CREATE TABLE consent_tokens (
    tenant_id    uuid NOT NULL,
    token_hash   bytea NOT NULL,
    customer_id  uuid NOT NULL,
    channel      text NOT NULL,
    purpose      text NOT NULL,
    version      bigint NOT NULL,
    create_time  timestamptz NOT NULL,
    expire_time  timestamptz NOT NULL,
    use_time     timestamptz,
    revoke_time  timestamptz,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES contact_settings (tenant_id, customer_id),
    CONSTRAINT consent_tokens_hash_length CHECK (octet_length(token_hash) = 32),
    CONSTRAINT consent_tokens_used_or_revoked CHECK (use_time IS NULL OR revoke_time IS NULL)
);
CREATE INDEX consent_tokens_open ON consent_tokens (tenant_id, customer_id, channel, purpose)
    WHERE use_time IS NULL AND revoke_time IS NULL;

-- Every outbound touch of every service, as recorded through the governor.
-- (tenant_id, source_service, reference) makes recording idempotent for
-- ever, whatever request id a retry carries. Frequency caps count these rows.
CREATE TABLE contact_touches (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    customer_id    uuid NOT NULL,
    channel        text NOT NULL,
    purpose        text NOT NULL,
    source_service text NOT NULL,
    reference      text NOT NULL,
    touch_time     timestamptz NOT NULL,
    actor          text NOT NULL,
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, customer_id) REFERENCES contact_settings (tenant_id, customer_id),
    CONSTRAINT contact_touches_reference_unique UNIQUE (tenant_id, source_service, reference),
    CONSTRAINT contact_touches_channel_valid CHECK (channel IN ('email', 'sms', 'phone', 'push', 'messaging', 'post')),
    CONSTRAINT contact_touches_purpose_valid CHECK (purpose IN ('service', 'care', 'marketing', 'survey'))
);
CREATE INDEX contact_touches_customer_time ON contact_touches (tenant_id, customer_id, touch_time);

-- +goose Down
DROP TABLE contact_touches;
DROP TABLE consent_tokens;
DROP TRIGGER consent_events_no_truncate ON consent_events;
DROP TRIGGER consent_events_no_update_delete ON consent_events;
DROP TABLE consent_events;
DROP FUNCTION consent_events_append_only();
DROP TABLE consent_states;
DROP TABLE contact_settings;
DROP TABLE contact_policies;
