-- name: ContactTouchInsert :one
-- No row when (tenant, source_service, reference) is already recorded.
INSERT INTO contact_touches (tenant_id, id, customer_id, channel, purpose, source_service, reference, touch_time, actor)
VALUES (@tenant_id, @id, @customer_id, @channel, @purpose, @source_service, @reference, @touch_time, @actor)
ON CONFLICT (tenant_id, source_service, reference) DO NOTHING
RETURNING *;

-- name: ContactTouchGetByReference :one
SELECT * FROM contact_touches
WHERE tenant_id = @tenant_id AND source_service = @source_service AND reference = @reference;

-- name: ContactTouchListSince :many
-- The customer's touches after since, oldest first: what frequency caps count.
SELECT purpose, touch_time FROM contact_touches
WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND touch_time > @since
ORDER BY touch_time;
