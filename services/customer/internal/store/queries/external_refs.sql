-- name: ExternalRefsList :many
SELECT customer_id, system, ref FROM customer_external_refs
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[])
ORDER BY customer_id, system;

-- name: ExternalRefsDeleteExcept :exec
-- Removes the customer's refs in systems not in keep.
DELETE FROM customer_external_refs
WHERE tenant_id = @tenant_id AND customer_id = @customer_id AND NOT (system = ANY(@keep::text[]));

-- name: ExternalRefsPut :exec
-- Sets the customer's ref in each system (systems and refs pair up).
INSERT INTO customer_external_refs (tenant_id, customer_id, system, ref)
SELECT @tenant_id::uuid, @customer_id::uuid, s.system, r.ref
FROM unnest(@systems::text[]) WITH ORDINALITY AS s(system, n)
JOIN unnest(@refs::text[]) WITH ORDINALITY AS r(ref, n) USING (n)
ON CONFLICT (tenant_id, customer_id, system) DO UPDATE SET ref = excluded.ref
WHERE customer_external_refs.ref <> excluded.ref;

-- name: ExternalRefsDeleteFor :exec
DELETE FROM customer_external_refs
WHERE tenant_id = @tenant_id AND customer_id = ANY(@customer_ids::uuid[]);

-- name: ExternalRefsShared :many
-- The other live customers sharing a (system, ref) with the customer, with
-- the system each shares.
SELECT o.customer_id, o.system
FROM customer_external_refs mine
JOIN customer_external_refs o
  ON o.tenant_id = mine.tenant_id AND o.system = mine.system AND o.ref = mine.ref
 AND o.customer_id <> mine.customer_id
JOIN customers c ON c.tenant_id = o.tenant_id AND c.id = o.customer_id AND c.merged_into IS NULL
WHERE mine.tenant_id = @tenant_id AND mine.customer_id = @customer_id
ORDER BY o.customer_id DESC, o.system;

-- name: CustomerGetMany :many
SELECT * FROM customers WHERE tenant_id = @tenant_id AND id = ANY(@ids::uuid[]) ORDER BY id DESC;
