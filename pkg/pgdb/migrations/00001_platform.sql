-- Tables every Rapport service carries in its own schema. Their owners are the
-- shared packages outbox, inbox and idem; no service writes them directly.

-- +goose Up

-- Events waiting for the relay. A row commits with the business change that
-- caused it; the relay publishes rows whose published_at is NULL in seq order.
-- seq is taken at INSERT time, so an aggregate's later version (written only
-- after the earlier one's transaction released the row lock) always has the
-- higher seq, and the relay never needs a cursor that could skip a row
-- committed out of sequence order.
CREATE TABLE outbox (
    id                uuid PRIMARY KEY,
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    tenant_id         uuid NOT NULL,
    subject           text NOT NULL,
    event_type        text NOT NULL,
    aggregate_type    text NOT NULL,
    aggregate_id      text NOT NULL,
    aggregate_version bigint NOT NULL,
    payload           bytea NOT NULL,
    occurred_at       timestamptz NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at      timestamptz,
    CONSTRAINT outbox_subject_not_empty CHECK (subject <> ''),
    CONSTRAINT outbox_version_positive CHECK (aggregate_version > 0)
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Events a consumer has applied. The row is inserted in the same transaction
-- as the effect, so a redelivered event finds it and changes nothing.
CREATE TABLE inbox (
    consumer     text NOT NULL,
    event_id     text NOT NULL,
    subject      text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_processed_at ON inbox (processed_at);

-- Messages a consumer gave up on: undecodable, or failing on their last
-- delivery. Kept for an operator to read and replay.
CREATE TABLE dead_letters (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer    text NOT NULL,
    event_id    text NOT NULL,
    subject     text NOT NULL,
    headers     jsonb NOT NULL DEFAULT '{}',
    payload     bytea NOT NULL,
    reason      text NOT NULL,
    deliveries  integer NOT NULL,
    parked_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (consumer, event_id)
);

-- Claimed request ids. The row is written in the same transaction as the
-- effect; the stored response is what every retry gets back.
CREATE TABLE idempotency_keys (
    tenant_id    uuid NOT NULL,
    principal    text NOT NULL,
    request_id   uuid NOT NULL,
    method       text NOT NULL,
    request_hash bytea NOT NULL,
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (tenant_id, principal, request_id)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
DROP TABLE dead_letters;
DROP TABLE inbox;
DROP TABLE outbox;
