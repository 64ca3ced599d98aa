-- name: OutreachTemplateInsert :one
-- No row when the tenant already has a template with this key.
INSERT INTO outreach_templates (tenant_id, id, key, channel, default_locale, variants, version, create_time, update_time)
VALUES (@tenant_id, @id, @key, @channel, @default_locale, @variants, 1, @now, @now)
ON CONFLICT (tenant_id, key) DO NOTHING
RETURNING *;

-- name: OutreachTemplateGet :one
SELECT * FROM outreach_templates WHERE tenant_id = @tenant_id AND id = @id;

-- name: OutreachTemplateGetByKey :one
SELECT * FROM outreach_templates WHERE tenant_id = @tenant_id AND key = @key;

-- name: OutreachTemplateGetForUpdate :one
SELECT * FROM outreach_templates WHERE tenant_id = @tenant_id AND id = @id FOR UPDATE;

-- name: OutreachTemplateUpdate :one
UPDATE outreach_templates
SET key = @key, default_locale = @default_locale, variants = @variants, version = version + 1, update_time = @now
WHERE tenant_id = @tenant_id AND id = @id
RETURNING *;

-- name: OutreachTemplateDelete :execrows
DELETE FROM outreach_templates WHERE tenant_id = @tenant_id AND id = @id;

-- name: OutreachTemplateList :many
-- By key, keyset-paged: templates after the cursor key.
SELECT * FROM outreach_templates
WHERE tenant_id = @tenant_id AND key > @after_key
ORDER BY key
LIMIT @row_limit;
