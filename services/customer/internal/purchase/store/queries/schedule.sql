-- SegmentScheduleAdd puts a tenant on the recompute schedule, due at once,
-- unless it is there already. It takes no row lock when the row exists, so a
-- purchase never waits for a running round.
-- name: SegmentScheduleAdd :exec
INSERT INTO segment_schedule (tenant_id, next_run_time)
VALUES (@tenant_id, @now)
ON CONFLICT (tenant_id) DO NOTHING;

-- SegmentScheduleClaim claims one due tenant for this transaction, skipping
-- tenants another replica is recomputing. A row whose round another replica
-- just committed is re-checked against its new next_run_time and skipped, so
-- a tenant runs once per round however many replicas race. It also lifts the
-- statement timeout for this transaction: a large tenant's recompute is one
-- long statement (the pool's default timeout bounds API calls).
-- name: SegmentScheduleClaim :one
SELECT s.tenant_id,
       set_config('statement_timeout', @statement_timeout::text, true) AS statement_timeout,
       set_config('plan_cache_mode', 'force_custom_plan', true) AS plan_cache_mode
FROM segment_schedule s
WHERE s.next_run_time <= @now
ORDER BY s.next_run_time
LIMIT 1
FOR UPDATE OF s SKIP LOCKED;

-- SegmentScheduleLock takes a tenant's schedule row for an unscheduled
-- recompute (RecomputeSegments), waiting for a round in progress, and sets
-- the same transaction options as SegmentScheduleClaim. The row must exist
-- (SegmentScheduleAdd first). It only locks the row, never writes a new
-- version of it: SegmentScheduleAdd in a concurrent RecordPurchase then sees
-- a committed row and goes on instead of waiting for this recompute.
-- name: SegmentScheduleLock :one
SELECT s.tenant_id,
       set_config('statement_timeout', @statement_timeout::text, true) AS statement_timeout,
       set_config('plan_cache_mode', 'force_custom_plan', true) AS plan_cache_mode
FROM segment_schedule s
WHERE s.tenant_id = @tenant_id
FOR UPDATE OF s;

-- SegmentScheduleDone records a finished round and when the next one is due.
-- name: SegmentScheduleDone :exec
UPDATE segment_schedule
SET next_run_time = @next_run_time, last_run_time = @now::timestamptz, rounds = rounds + 1, last_changed = @changed
WHERE tenant_id = @tenant_id;

-- SegmentScheduleRan records an unscheduled run; the schedule stays.
-- name: SegmentScheduleRan :exec
UPDATE segment_schedule
SET last_run_time = @now::timestamptz, last_changed = @changed
WHERE tenant_id = @tenant_id;

-- SegmentScheduleBringForward makes a tenant due now (its settings changed).
-- name: SegmentScheduleBringForward :exec
INSERT INTO segment_schedule AS s (tenant_id, next_run_time)
VALUES (@tenant_id, @now)
ON CONFLICT (tenant_id) DO UPDATE SET next_run_time = least(s.next_run_time, excluded.next_run_time);

-- name: SegmentScheduleNextDue :one
SELECT next_run_time FROM segment_schedule ORDER BY next_run_time LIMIT 1;

-- SegmentSchedulePostpone moves a tenant whose recompute failed to the back
-- of the queue so the others still run; a round another replica finished
-- meanwhile keeps its later due time.
-- name: SegmentSchedulePostpone :exec
UPDATE segment_schedule
SET next_run_time = greatest(next_run_time, @next_run_time::timestamptz)
WHERE tenant_id = @tenant_id;
