-- name: CarePlanInsert :exec
INSERT INTO care_plans (tenant_id, id, customer_id, title_sealed, created_by, create_time)
VALUES (@tenant_id, @id, @customer_id, @title_sealed, @created_by, @create_time);

-- CareTasksInsert inserts a plan's tasks; row n takes element n of every
-- array.
-- name: CareTasksInsert :exec
INSERT INTO care_tasks (tenant_id, id, plan_id, customer_id, position, title_sealed, assignee, due_time)
SELECT @tenant_id, unnest(@ids::uuid[]), @plan_id, @customer_id, unnest(@positions::integer[]),
       unnest(@titles_sealed::bytea[]), unnest(@assignees::text[]), unnest(@due_times::timestamptz[]);

-- name: CarePlanGet :one
SELECT * FROM care_plans WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND id = @id;

-- CarePlansByCustomer pages a customer's plans, newest first.
-- name: CarePlansByCustomer :many
SELECT * FROM care_plans
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (create_time, id) < (@before_time::timestamptz, @before_id::uuid)
ORDER BY create_time DESC, id DESC
LIMIT @row_limit;

-- name: CareTasksOfPlans :many
SELECT * FROM care_tasks
WHERE tenant_id = @tenant_id AND plan_id = ANY(@plan_ids::uuid[])
ORDER BY plan_id, position;

-- CareTaskLock reads a task for completion, holding it for the transaction.
-- name: CareTaskLock :one
SELECT * FROM care_tasks WHERE tenant_id = @tenant_id AND id = @id FOR UPDATE;

-- name: CareTaskComplete :one
UPDATE care_tasks
SET status = 'done', complete_time = @complete_time, completed_by = @completed_by,
    outcome_note_sealed = @outcome_note_sealed
WHERE tenant_id = @tenant_id AND id = @id AND status = 'open'
RETURNING *;

-- CareTasksList is the worklist, soonest due first, after the cursor.
-- name: CareTasksList :many
SELECT * FROM care_tasks
WHERE tenant_id = @tenant_id
  AND (@assignee::text = '' OR assignee = @assignee::text)
  AND (@status::text = '' OR status = @status::text)
  AND due_time < @due_before::timestamptz
  AND (due_time, id) > (@after_time::timestamptz, @after_id::uuid)
ORDER BY due_time, id
LIMIT @row_limit;

-- CareCustomerForWrite reads, before a plan is written for the customer,
-- whether it exists in the tenant and the customer it was merged into
-- (NULL if none). No row: no such customer. FOR SHARE holds the row until
-- the plan is committed, so a merge (which locks its customers FOR NO KEY
-- UPDATE before moving their plans) either waits and moves the new plan, or
-- commits first and the plan is refused: none is left under a merged id.
-- name: CareCustomerForWrite :one
SELECT c.merged_into FROM customers c
WHERE c.tenant_id = @tenant_id AND c.id = @customer_id
FOR SHARE OF c;
