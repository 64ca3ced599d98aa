-- +goose Up

-- Due care occasions become outreach (DESIGN.md §4 customer: "due items
-- become outreach").
--
-- Per occasion kind, the key of the outreach template a due occasion of
-- that kind is sent with; '' means no automatic message. A key is the
-- outreach template's key (same format as outreach_templates.key), not a
-- reference: templates may be created after the setting, renamed or
-- deleted, so no foreign key. A key naming no template is recorded, when
-- an occasion falls due, as a FAILED delivery with reason no_template.
ALTER TABLE care_settings
    ADD COLUMN birthday_template_key          text NOT NULL DEFAULT '',
    ADD COLUMN holiday_template_key           text NOT NULL DEFAULT '',
    ADD COLUMN anniversary_template_key       text NOT NULL DEFAULT '',
    ADD COLUMN purchase_followup_template_key text NOT NULL DEFAULT '',
    ADD COLUMN ticket_followup_template_key   text NOT NULL DEFAULT '',
    ADD CONSTRAINT care_settings_template_keys_format CHECK (
        (birthday_template_key = '' OR birthday_template_key ~ '^[a-z][a-z0-9._-]{0,62}$')
        AND (holiday_template_key = '' OR holiday_template_key ~ '^[a-z][a-z0-9._-]{0,62}$')
        AND (anniversary_template_key = '' OR anniversary_template_key ~ '^[a-z][a-z0-9._-]{0,62}$')
        AND (purchase_followup_template_key = '' OR purchase_followup_template_key ~ '^[a-z][a-z0-9._-]{0,62}$')
        AND (ticket_followup_template_key = '' OR ticket_followup_template_key ~ '^[a-z][a-z0-9._-]{0,62}$'));

-- A care occasion whose configured template does not exist (any more) is
-- still logged, so the tenant sees why nothing was sent: a FAILED delivery
-- with reason no_template, the key it looked for, and neither a template
-- nor a channel (the channel is the template's). Every other delivery keeps
-- both.
ALTER TABLE outreach_deliveries
    ALTER COLUMN template_id DROP NOT NULL,
    DROP CONSTRAINT outreach_deliveries_channel_valid,
    ADD CONSTRAINT outreach_deliveries_channel_valid CHECK (
        channel IN ('email', 'sms', 'messaging')
        OR (channel = '' AND status = 'failed' AND failure_reason = 'no_template')),
    ADD CONSTRAINT outreach_deliveries_template_known CHECK (
        template_id IS NOT NULL OR (status = 'failed' AND failure_reason = 'no_template'));

-- +goose Down
-- Deliveries without a template cannot exist before this migration: they
-- are dropped (they never sent anything).
DELETE FROM outreach_deliveries WHERE template_id IS NULL OR channel = '';
ALTER TABLE outreach_deliveries
    DROP CONSTRAINT outreach_deliveries_template_known,
    DROP CONSTRAINT outreach_deliveries_channel_valid,
    ADD CONSTRAINT outreach_deliveries_channel_valid CHECK (channel IN ('email', 'sms', 'messaging')),
    ALTER COLUMN template_id SET NOT NULL;
ALTER TABLE care_settings
    DROP CONSTRAINT care_settings_template_keys_format,
    DROP COLUMN birthday_template_key,
    DROP COLUMN holiday_template_key,
    DROP COLUMN anniversary_template_key,
    DROP COLUMN purchase_followup_template_key,
    DROP COLUMN ticket_followup_template_key;
