-- RecommendationScheduleEnrol puts every tenant with a purchase on the
-- refresh schedule, due now, unless it is there already. The tenants are
-- found by a loose index scan of purchases' primary key (one probe per
-- tenant, not a scan of the purchases).
-- name: RecommendationScheduleEnrol :execrows
WITH RECURSIVE tenants AS (
    SELECT (SELECT p.tenant_id FROM purchases p ORDER BY p.tenant_id LIMIT 1) AS tenant_id
    UNION ALL
    SELECT (SELECT p.tenant_id FROM purchases p WHERE p.tenant_id > t.tenant_id ORDER BY p.tenant_id LIMIT 1)
    FROM tenants t
    WHERE t.tenant_id IS NOT NULL
)
INSERT INTO recommendation_schedule (tenant_id, next_run_time)
SELECT t.tenant_id, @now::timestamptz FROM tenants t WHERE t.tenant_id IS NOT NULL
ON CONFLICT (tenant_id) DO NOTHING;

-- RecommendationScheduleClaim claims one due tenant for this transaction,
-- skipping tenants another replica holds; a row another replica just
-- finished is re-checked against its new next_run_time and skipped. It
-- lifts the statement timeout for the transaction (the refresh is one long
-- statement for a large tenant).
-- name: RecommendationScheduleClaim :one
SELECT s.tenant_id,
       set_config('statement_timeout', @statement_timeout::text, true) AS statement_timeout
FROM recommendation_schedule s
WHERE s.next_run_time <= @now
ORDER BY s.next_run_time
LIMIT 1
FOR UPDATE OF s SKIP LOCKED;

-- RecommendationScheduleAdd puts a tenant on the schedule, due now, unless
-- it is there already; it never waits for a round in progress.
-- name: RecommendationScheduleAdd :exec
INSERT INTO recommendation_schedule (tenant_id, next_run_time)
VALUES (@tenant_id, @now::timestamptz)
ON CONFLICT (tenant_id) DO NOTHING;

-- RecommendationScheduleLock takes a tenant's schedule row (which must
-- exist) for an unscheduled refresh, waiting for a round in progress; same
-- transaction options as the claim.
-- name: RecommendationScheduleLock :one
SELECT s.tenant_id,
       set_config('statement_timeout', @statement_timeout::text, true) AS statement_timeout
FROM recommendation_schedule s
WHERE s.tenant_id = @tenant_id
FOR UPDATE OF s;

-- RecommendationScheduleDone records a finished refresh; next_run_time
-- moves on only for a scheduled round (an unscheduled one passes the
-- current value).
-- name: RecommendationScheduleDone :exec
UPDATE recommendation_schedule
SET next_run_time = coalesce(sqlc.narg(next_run_time)::timestamptz, next_run_time),
    last_run_time = @now::timestamptz, rounds = rounds + 1, items = @items, pairs = @pairs
WHERE tenant_id = @tenant_id;

-- RecommendationSchedulePostpone moves a tenant whose refresh failed behind
-- the others.
-- name: RecommendationSchedulePostpone :exec
UPDATE recommendation_schedule
SET next_run_time = greatest(next_run_time, @next_run_time::timestamptz)
WHERE tenant_id = @tenant_id;

-- name: RecommendationScheduleNextDue :one
SELECT next_run_time FROM recommendation_schedule ORDER BY next_run_time LIMIT 1;

-- name: RecommendationScheduleGet :one
SELECT * FROM recommendation_schedule WHERE tenant_id = @tenant_id;
