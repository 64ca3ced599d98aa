-- +goose Up

-- Outreach (package internal/outreach): templates and the delivery log.
-- Every table leads with tenant_id. Channels, purposes and statuses are
-- stored as their lower-case names; the CHECKs are the backstop for the
-- enums in outreach.proto and consent.proto.

-- A template is tenant configuration, not personal data: its texts are
-- stored in clear. variants is a JSON array of {locale, subject, text_body,
-- html_body}, read and written whole (a template is small and always used
-- whole), checked by the domain before every write.
CREATE TABLE outreach_templates (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    key            text NOT NULL,
    channel        text NOT NULL,
    default_locale text NOT NULL,
    variants       jsonb NOT NULL,
    version        bigint NOT NULL,
    create_time    timestamptz NOT NULL,
    update_time    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT outreach_templates_key_unique UNIQUE (tenant_id, key),
    CONSTRAINT outreach_templates_key_format CHECK (key ~ '^[a-z][a-z0-9._-]{0,62}$'),
    CONSTRAINT outreach_templates_channel_valid CHECK (channel IN ('email', 'sms', 'messaging')),
    CONSTRAINT outreach_templates_variants_array CHECK (jsonb_typeof(variants) = 'array' AND jsonb_array_length(variants) >= 1),
    CONSTRAINT outreach_templates_version_positive CHECK (version > 0)
);

-- One row per message to one customer: the delivery log and the work queue
-- of the delivery worker.
--
-- content_sealed holds the rendered subject and bodies, sealed (internal/pii)
-- with the data key of the customer sealed_customer_id: the customer it was
-- rendered for. A merge re-points customer_id but not sealed_customer_id,
-- so the content still opens under the key that sealed it. Variables are
-- never stored; neither is the recipient's address, read from the profile
-- at send time. Erasing the customer destroys their key (so the content is
-- shredded) and the eraser deletes content_sealed besides.
--
-- request_id is kept for ever (unlike idempotency_keys rows): the same
-- request never makes a second delivery, so never a second message.
--
-- A queued delivery is due at next_attempt_time. The worker claims it by
-- moving next_attempt_time a lease ahead and counting the attempt (FOR
-- UPDATE SKIP LOCKED), sends outside any transaction, then records the
-- outcome only if attempts still equals what it claimed: a worker whose
-- lease ran out (and whose delivery another worker took over) records
-- nothing.
CREATE TABLE outreach_deliveries (
    tenant_id           uuid NOT NULL,
    id                  uuid NOT NULL,
    customer_id         uuid NOT NULL,
    sealed_customer_id  uuid NOT NULL,
    template_id         uuid NOT NULL,
    template_key        text NOT NULL,
    channel             text NOT NULL,
    purpose             text NOT NULL,
    locale              text NOT NULL,
    status              text NOT NULL,
    content_sealed      bytea,
    attempts            integer NOT NULL DEFAULT 0,
    next_attempt_time   timestamptz,
    last_error_code     text NOT NULL DEFAULT '',
    failure_reason      text NOT NULL DEFAULT '',
    refusal_reason      text NOT NULL DEFAULT '',
    next_allowed_time   timestamptz,
    provider_message_id text NOT NULL DEFAULT '',
    request_id          uuid,
    -- Counts the delivery's status changes; its events carry it.
    version             bigint NOT NULL DEFAULT 1,
    create_time         timestamptz NOT NULL,
    update_time         timestamptz NOT NULL,
    send_time           timestamptz,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT outreach_deliveries_request_id_unique UNIQUE (tenant_id, request_id),
    CONSTRAINT outreach_deliveries_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT outreach_deliveries_channel_valid CHECK (channel IN ('email', 'sms', 'messaging')),
    CONSTRAINT outreach_deliveries_purpose_valid CHECK (purpose IN ('service', 'care', 'marketing', 'survey')),
    CONSTRAINT outreach_deliveries_status_valid CHECK (status IN ('queued', 'sent', 'failed', 'refused')),
    CONSTRAINT outreach_deliveries_attempts_not_negative CHECK (attempts >= 0),
    CONSTRAINT outreach_deliveries_version_positive CHECK (version > 0),
    -- Only a queued delivery is due; a queued one always is, some time.
    CONSTRAINT outreach_deliveries_queued_due CHECK ((status = 'queued') = (next_attempt_time IS NOT NULL)),
    CONSTRAINT outreach_deliveries_sent_time CHECK ((status = 'sent') = (send_time IS NOT NULL)),
    CONSTRAINT outreach_deliveries_failure_reason CHECK ((status IN ('failed', 'refused')) = (failure_reason <> '')),
    CONSTRAINT outreach_deliveries_refusal CHECK ((status = 'refused') = (refusal_reason <> '')),
    -- Refused deliveries never send, so they hold no content.
    CONSTRAINT outreach_deliveries_refused_no_content CHECK (status <> 'refused' OR content_sealed IS NULL)
);

-- The worker's claim: due queued deliveries of every tenant, oldest due first.
CREATE INDEX outreach_deliveries_due ON outreach_deliveries (next_attempt_time) WHERE status = 'queued';
-- The delivery log, newest first (UUIDv7 ids sort by creation).
CREATE INDEX outreach_deliveries_customer ON outreach_deliveries (tenant_id, customer_id, id DESC);

-- +goose Down
DROP TABLE outreach_deliveries;
DROP TABLE outreach_templates;
