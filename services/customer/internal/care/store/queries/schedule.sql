-- CareScheduleBringForward puts a tenant on the schedule due now, or makes
-- its next round due now (its settings or holidays changed).
-- name: CareScheduleBringForward :exec
INSERT INTO care_schedule AS s (tenant_id, next_run_time)
VALUES (@tenant_id, @now)
ON CONFLICT (tenant_id) DO UPDATE SET next_run_time = least(s.next_run_time, excluded.next_run_time);

-- CareScheduleClaim claims one due tenant for this transaction, skipping
-- tenants another replica holds. A row whose round another replica just
-- committed is re-checked against its new next_run_time and skipped. It
-- also sets the transaction's statement timeout: a holiday of a large
-- tenant is one long statement.
-- name: CareScheduleClaim :one
SELECT s.tenant_id,
       set_config('statement_timeout', @statement_timeout::text, true) AS statement_timeout
FROM care_schedule s
WHERE s.next_run_time <= @now
ORDER BY s.next_run_time
LIMIT 1
FOR UPDATE OF s SKIP LOCKED;

-- name: CareScheduleDone :exec
UPDATE care_schedule
SET next_run_time = @next_run_time, last_run_time = @now::timestamptz, rounds = rounds + 1
WHERE tenant_id = @tenant_id;

-- CareSchedulePostpone moves a failing tenant behind the others.
-- name: CareSchedulePostpone :exec
UPDATE care_schedule
SET next_run_time = greatest(next_run_time, @next_run_time::timestamptz)
WHERE tenant_id = @tenant_id;

-- name: CareScheduleNextDue :one
SELECT next_run_time FROM care_schedule ORDER BY next_run_time LIMIT 1;
