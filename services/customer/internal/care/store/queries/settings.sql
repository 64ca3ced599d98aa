-- name: CareSettingsGet :one
SELECT * FROM care_settings WHERE tenant_id = @tenant_id;

-- name: CareSettingsLock :one
SELECT * FROM care_settings WHERE tenant_id = @tenant_id FOR UPDATE;

-- CareSettingsUpsert stores a tenant's settings as the next version.
-- name: CareSettingsUpsert :one
INSERT INTO care_settings AS s (
    tenant_id, birthday_enabled, anniversary_enabled, purchase_followup_days, ticket_followup_days,
    default_time_zone, due_hour, birthday_template_key, holiday_template_key, anniversary_template_key,
    purchase_followup_template_key, ticket_followup_template_key, version, update_time
) VALUES (
    @tenant_id, @birthday_enabled, @anniversary_enabled, @purchase_followup_days, @ticket_followup_days,
    @default_time_zone, @due_hour, @birthday_template_key, @holiday_template_key, @anniversary_template_key,
    @purchase_followup_template_key, @ticket_followup_template_key, 1, @now
)
ON CONFLICT (tenant_id) DO UPDATE SET
    birthday_enabled = excluded.birthday_enabled,
    anniversary_enabled = excluded.anniversary_enabled,
    purchase_followup_days = excluded.purchase_followup_days,
    ticket_followup_days = excluded.ticket_followup_days,
    default_time_zone = excluded.default_time_zone,
    due_hour = excluded.due_hour,
    birthday_template_key = excluded.birthday_template_key,
    holiday_template_key = excluded.holiday_template_key,
    anniversary_template_key = excluded.anniversary_template_key,
    purchase_followup_template_key = excluded.purchase_followup_template_key,
    ticket_followup_template_key = excluded.ticket_followup_template_key,
    version = s.version + 1,
    update_time = excluded.update_time
RETURNING *;

-- CareTimeZones lists the zone names PostgreSQL knows; the scheduler reads
-- it once (the list changes only with a server upgrade).
-- name: CareTimeZones :many
SELECT name::text AS name FROM pg_catalog.pg_timezone_names ORDER BY name;
