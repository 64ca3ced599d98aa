-- Export and erasure of one customer's consent data (consent/privacy.go).

-- name: ContactTouchListByCustomer :many
-- Every recorded contact of the customer, oldest first: the export.
SELECT * FROM contact_touches
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY touch_time, id;

-- name: ContactSettingsErase :exec
-- Forgets how the customer likes to be reached. The consent history stays:
-- it is the evidence of what the customer agreed to, and holds no personal
-- data beyond the (now pseudonymous) customer id.
UPDATE contact_settings
SET quiet_start_minute = NULL, quiet_end_minute = NULL, preferred_channels = '{}',
    preferences_update_time = now()
WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- name: ConsentTokenRevokeAllOpen :execrows
-- Voids every open confirmation token of the customer: no link in an old
-- email can grant anything after the erasure.
UPDATE consent_tokens SET revoke_time = now()
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND use_time IS NULL AND revoke_time IS NULL;
