-- Erasure of one customer's purchase data (purchase/privacy.go).

-- name: PurchaseItemsForgetNames :execrows
-- Item names are free text from the selling system and may carry a
-- personalisation (an engraving, a dedication); an erasure clears them.
-- SKUs, categories, quantities and amounts stay: they identify no one once
-- the customer's profile is shredded, and revenue must still add up.
UPDATE purchase_items i SET name = ''
FROM purchases p
WHERE p.tenant_id = @tenant_id AND p.customer_id = @customer_id
  AND i.tenant_id = p.tenant_id AND i.purchase_id = p.id AND i.name <> '';
