-- name: ContactSettingsLock :one
-- The per-customer lock: every consent change and every recorded touch of
-- the customer takes it first (the customer's side follows, in
-- ContactSettingsCustomer).
SELECT s.tenant_id, s.customer_id, s.consent_version, s.quiet_start_minute, s.quiet_end_minute,
       s.preferred_channels, s.preferences_update_time
FROM contact_settings s
WHERE s.tenant_id = @tenant_id AND s.customer_id = @customer_id
FOR UPDATE OF s;

-- name: ContactSettingsCustomer :one
-- The customer's side of the settings, read after ContactSettingsLock in a
-- statement of its own: when the lock had to wait (for a merge or an
-- erasure holding it), the lock statement's join still shows the
-- customer row from before the wait.
SELECT c.time_zone, (c.erase_time IS NOT NULL)::boolean AS erased, c.merged_into
FROM customers c
WHERE c.tenant_id = @tenant_id AND c.id = @customer_id;

-- name: ContactSettingsCreate :execrows
-- Creates the settings row of an existing customer; no row for an unknown one.
INSERT INTO contact_settings (tenant_id, customer_id, create_time)
SELECT c.tenant_id, c.id, @now::timestamptz
FROM customers c
WHERE c.tenant_id = @tenant_id AND c.id = @customer_id
ON CONFLICT (tenant_id, customer_id) DO NOTHING;

-- name: ContactSettingsGet :one
-- Reads without locking. The customer row decides existence; the settings
-- columns are NULL while the customer has none.
SELECT c.time_zone, s.consent_version, s.quiet_start_minute, s.quiet_end_minute,
       s.preferred_channels, s.preferences_update_time, (c.erase_time IS NOT NULL)::boolean AS erased, c.merged_into
FROM customers c
LEFT JOIN contact_settings s ON s.tenant_id = c.tenant_id AND s.customer_id = c.id
WHERE c.tenant_id = @tenant_id AND c.id = @customer_id;

-- name: ContactSettingsBumpConsentVersion :one
UPDATE contact_settings SET consent_version = consent_version + 1
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
RETURNING consent_version;

-- name: ContactSettingsUpdatePreferences :exec
UPDATE contact_settings
SET quiet_start_minute = sqlc.narg(quiet_start_minute), quiet_end_minute = sqlc.narg(quiet_end_minute),
    preferred_channels = @preferred_channels, preferences_update_time = @now::timestamptz
WHERE tenant_id = @tenant_id AND customer_id = @customer_id;
