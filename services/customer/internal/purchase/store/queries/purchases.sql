-- PurchaseLockCustomer starts RecordPurchase's work on a customer:
--   * it takes the customer's transaction-scoped advisory lock, so a
--     customer's purchases are recorded one at a time and the segment
--     recompute of the second sees the first (two at once would each miss
--     the other's purchase); a merge of the customer takes it too;
--   * it makes this transaction plan every statement for its actual
--     parameters: the recompute serves one customer here and a whole tenant
--     on the schedule, and a generic plan cached from one would be wrong for
--     the other.
-- The customer's state is read by the next statement (PurchaseCustomerState),
-- not this one: this statement's snapshot predates its wait for the lock, so
-- it would miss a merge that committed while it waited.
-- name: PurchaseLockCustomer :exec
SELECT pg_advisory_xact_lock(@lock_key::bigint)::text AS locked,
       set_config('plan_cache_mode', 'force_custom_plan', true) AS plan_cache_mode;

-- PurchaseCustomerState says, under the lock, whether the customer exists in
-- the tenant (another tenant's customer does not; an erased one no longer
-- does) and whether it was merged into another.
-- name: PurchaseCustomerState :one
SELECT COALESCE((SELECT c.erase_time IS NULL FROM customers c
                 WHERE c.tenant_id = @tenant_id AND c.id = @customer_id), false)::boolean AS customer_exists,
       (SELECT c.merged_into FROM customers c
        WHERE c.tenant_id = @tenant_id AND c.id = @customer_id) AS merged_into;

-- PurchaseInsert records a purchase unless its order reference is taken; then
-- it returns no row and the caller reads the first purchase. A concurrent
-- insert of the same reference waits here until the other commits.
-- name: PurchaseInsert :one
INSERT INTO purchases (
    tenant_id, id, customer_id, order_reference, channel, currency_code,
    total_amount_minor, purchase_time, request_hash, create_time
) VALUES (
    @tenant_id, @id, @customer_id, @order_reference, @channel, @currency_code,
    @total_amount_minor, @purchase_time, @request_hash, @create_time
)
ON CONFLICT (tenant_id, order_reference) DO NOTHING
RETURNING *;

-- name: PurchaseItemsInsert :exec
INSERT INTO purchase_items (
    tenant_id, purchase_id, line, sku, name, category, quantity, currency_code, unit_price_minor
)
-- Several set-returning functions in one select list advance in lockstep:
-- row n takes element n of every array.
SELECT @tenant_id, @purchase_id, unnest(@lines::integer[]), unnest(@skus::text[]),
       unnest(@names::text[]), unnest(@categories::text[]), unnest(@quantities::integer[]),
       unnest(@currency_codes::text[]), unnest(@unit_prices_minor::bigint[]);

-- name: PurchaseGetByOrderReference :one
SELECT * FROM purchases WHERE tenant_id = @tenant_id AND order_reference = @order_reference;

-- name: PurchaseGet :one
SELECT * FROM purchases WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND id = @id;

-- PurchaseList pages a customer's purchases, newest purchase_time first,
-- after the cursor (the first page passes 'infinity').
-- name: PurchaseList :many
SELECT * FROM purchases
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (purchase_time, id) < (@before_time::timestamptz, @before_id::uuid)
ORDER BY purchase_time DESC, id DESC
LIMIT @row_limit;

-- name: PurchaseItemsList :many
SELECT * FROM purchase_items
WHERE tenant_id = @tenant_id AND purchase_id = ANY(@purchase_ids::uuid[])
ORDER BY purchase_id, line;

-- name: PurchaseCustomerExists :one
SELECT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id) AS customer_exists;
