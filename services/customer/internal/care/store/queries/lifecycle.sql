-- name: CareOccasionsOfCustomer :many
SELECT * FROM care_occasions WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY occasion_date, id;

-- name: CarePlansOfCustomer :many
SELECT * FROM care_plans WHERE tenant_id = @tenant_id AND customer_id = @customer_id
ORDER BY create_time, id;

-- CareOccasionsMerge moves the sources' occasions to the primary, except
-- those the primary already has (its own birthday of that year stays the
-- one that fired); those are deleted with the sources' others.
-- name: CareOccasionsMerge :execrows
UPDATE care_occasions o SET customer_id = @primary_id
WHERE o.tenant_id = @tenant_id AND o.customer_id = ANY(@source_ids::uuid[])
  AND NOT EXISTS (
      SELECT 1 FROM care_occasions p
      WHERE p.tenant_id = o.tenant_id AND p.customer_id = @primary_id AND p.kind = o.kind AND p.occasion_key = o.occasion_key)
  AND o.id = (
      -- one per key when two sources share it
      SELECT min(s.id::text)::uuid FROM care_occasions s
      WHERE s.tenant_id = o.tenant_id AND s.customer_id = ANY(@source_ids::uuid[])
        AND s.kind = o.kind AND s.occasion_key = o.occasion_key);

-- name: CareOccasionsDeleteOfCustomers :execrows
DELETE FROM care_occasions WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[]);

-- name: CareTicketResolutionsMerge :execrows
UPDATE care_ticket_resolutions SET customer_id = @primary_id
WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);

-- name: CareTicketResolutionsDeleteOfCustomer :exec
DELETE FROM care_ticket_resolutions WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- name: CarePlansDeleteOfCustomer :execrows
DELETE FROM care_plans WHERE tenant_id = @tenant_id AND customer_id = @customer_id;

-- CareTasksResealMove gives many tasks to the primary with their texts
-- resealed: row n takes element n of every array (NULL stays NULL).
-- name: CareTasksResealMove :exec
UPDATE care_tasks t
SET customer_id = @primary_id, title_sealed = u.title_sealed, outcome_note_sealed = u.outcome_note_sealed
FROM (
    SELECT unnest(@ids::uuid[]) AS id,
           unnest(@titles_sealed::bytea[]) AS title_sealed,
           unnest(@outcome_notes_sealed::bytea[]) AS outcome_note_sealed
) u
WHERE t.tenant_id = @tenant_id AND t.id = u.id;

-- CarePlansResealMove gives many plans to the primary with their titles
-- resealed: row n takes element n of both arrays.
-- name: CarePlansResealMove :exec
UPDATE care_plans p
SET customer_id = @primary_id, title_sealed = u.title_sealed
FROM (SELECT unnest(@ids::uuid[]) AS id, unnest(@titles_sealed::bytea[]) AS title_sealed) u
WHERE p.tenant_id = @tenant_id AND p.id = u.id;

-- CareTasksLockOfCustomers locks the customers' tasks until the merge's
-- transaction ends: a CompleteCareTask (which locks its task too) either
-- commits first, and the merge reads and reseals its note, or waits and
-- then seals its note for the customer the task moved to.
-- name: CareTasksLockOfCustomers :exec
SELECT 1 FROM care_tasks
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[])
ORDER BY id
FOR UPDATE;
