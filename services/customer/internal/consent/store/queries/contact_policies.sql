-- name: ContactPolicyGet :one
SELECT * FROM contact_policies WHERE tenant_id = @tenant_id;

-- name: ContactPolicyGetForUpdate :one
SELECT * FROM contact_policies WHERE tenant_id = @tenant_id FOR UPDATE;

-- name: ContactPolicyCreate :execrows
-- Stores the given values (the defaults) as the tenant's policy at version 0
-- unless it has one, so the next statement can lock it.
INSERT INTO contact_policies (tenant_id, default_time_zone, care_max, care_period_seconds, marketing_max,
                              marketing_period_seconds, survey_max, survey_period_seconds, global_max,
                              global_period_seconds, version, update_time)
VALUES (@tenant_id, @default_time_zone, @care_max, @care_period_seconds, @marketing_max,
        @marketing_period_seconds, @survey_max, @survey_period_seconds, @global_max,
        @global_period_seconds, 0, @update_time)
ON CONFLICT (tenant_id) DO NOTHING;

-- name: ContactPolicyUpdate :one
UPDATE contact_policies
SET default_time_zone = @default_time_zone, care_max = @care_max, care_period_seconds = @care_period_seconds,
    marketing_max = @marketing_max, marketing_period_seconds = @marketing_period_seconds,
    survey_max = @survey_max, survey_period_seconds = @survey_period_seconds,
    global_max = @global_max, global_period_seconds = @global_period_seconds,
    version = version + 1, update_time = @update_time
WHERE tenant_id = @tenant_id
RETURNING *;
