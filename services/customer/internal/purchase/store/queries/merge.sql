-- Merging customers (MergeCustomers): the sources' purchases move to the
-- primary inside the merge's transaction.

-- name: PurchaseMergeMove :one
-- Re-points the sources' purchases; their items follow (they hang off the
-- purchase, not the customer). Returns how many of each moved.
WITH moved AS (
    UPDATE purchases SET customer_id = @primary_id::uuid
    WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[])
    RETURNING id
)
SELECT (SELECT count(*) FROM moved)::bigint AS purchases,
       (SELECT count(*) FROM purchase_items i
        WHERE i.tenant_id = @tenant_id AND i.purchase_id IN (SELECT id FROM moved))::bigint AS items;

-- name: PurchaseMergeDropSegments :exec
-- A merged customer has no segment of its own any more; the primary's is
-- recomputed from all the purchases.
DELETE FROM customer_segments WHERE tenant_id = @tenant_id AND customer_id = ANY(@source_ids::uuid[]);
