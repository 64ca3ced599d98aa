-- +goose Up
-- The interaction timeline (issue: customer service, part 4). One table for
-- both kinds of entry, so a customer's history pages in one index scan:
--   * manual entries (note, call, visit, email, chat) logged by staff; their
--     free text is about a person, so it is sealed with the customer's key
--     (internal/pii) and dies with it on erasure;
--   * projected entries, one per event of another service (ticket, purchase,
--     points, coupon, survey, outreach). They hold ids and short
--     non-personal attributes only, as the events themselves do.
CREATE TABLE interactions (
    tenant_id      uuid NOT NULL,
    id             uuid NOT NULL,
    customer_id    uuid NOT NULL,
    kind           text NOT NULL,
    occur_time     timestamptz NOT NULL,
    create_time    timestamptz NOT NULL,
    -- The staff member (a subject id, not a name); '' when none.
    agent_id       text NOT NULL DEFAULT '',
    -- inbound/outbound for calls, emails and chats; '' otherwise.
    direction      text NOT NULL DEFAULT '',
    -- Manual entries: AEAD ciphertexts bound to (tenant, table, column,
    -- customer). NULL means empty, or erased.
    summary_sealed bytea,
    body_sealed    bytea,
    -- Projected entries: the event's id and subject. The id is unique in the
    -- tenant for ever, so an event replayed by any path (redelivery, a
    -- rebuilt consumer, a re-published outbox range) never adds an entry
    -- twice, independently of the inbox's own record.
    source_event_id text,
    source_subject  text,
    -- The projected aggregate's id (ticket, purchase, ledger entry, coupon,
    -- survey response, outreach delivery), to find its entries.
    reference_id   text NOT NULL DEFAULT '',
    -- The kind's typed attributes (TicketInteraction, PurchaseInteraction…
    -- in timeline.proto), as protobuf JSON: amounts, points, scores, codes,
    -- numbers; never personal data.
    details        jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT interactions_customer_fk FOREIGN KEY (tenant_id, customer_id)
        REFERENCES customers (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT interactions_source_event_unique UNIQUE (tenant_id, source_event_id),
    CONSTRAINT interactions_kind_known CHECK (kind IN (
        'note', 'call', 'visit', 'email', 'chat',
        'ticket_opened', 'ticket_resolved', 'purchase', 'points_earned', 'points_spent',
        'coupon_issued', 'coupon_redeemed', 'survey_answered', 'outreach_sent')),
    -- Manual entries have no source and no attributes; projected entries
    -- have a source and no sealed text.
    CONSTRAINT interactions_manual_or_projected CHECK (
        CASE WHEN kind IN ('note', 'call', 'visit', 'email', 'chat')
            THEN source_event_id IS NULL AND source_subject IS NULL AND reference_id = '' AND details = '{}'
            ELSE source_event_id IS NOT NULL AND source_subject IS NOT NULL AND reference_id <> ''
                 AND summary_sealed IS NULL AND body_sealed IS NULL AND direction = ''
        END),
    CONSTRAINT interactions_direction_known CHECK (direction IN ('', 'inbound', 'outbound')),
    CONSTRAINT interactions_direction_kind CHECK (direction = '' OR kind IN ('call', 'email', 'chat')),
    CONSTRAINT interactions_agent_id_length CHECK (length(agent_id) <= 200),
    CONSTRAINT interactions_source_event_id_length CHECK (length(source_event_id) BETWEEN 1 AND 200),
    CONSTRAINT interactions_source_subject_format CHECK (source_subject ~ '^rapport\.[a-z0-9_]+\.[a-z0-9_]+\.[a-z0-9_]+$'),
    CONSTRAINT interactions_reference_id_length CHECK (length(reference_id) <= 200),
    CONSTRAINT interactions_details_object CHECK (jsonb_typeof(details) = 'object'),
    CONSTRAINT interactions_summary_sealed_not_empty CHECK (octet_length(summary_sealed) > 0),
    CONSTRAINT interactions_body_sealed_not_empty CHECK (octet_length(body_sealed) > 0)
);

-- ListInteractions: a customer's entries newest first, keyset-paged on
-- (occur_time, id); a kind filter is a residual predicate on the same scan.
CREATE INDEX interactions_customer_time ON interactions (tenant_id, customer_id, occur_time DESC, id DESC);

-- +goose Down
DROP TABLE interactions;
