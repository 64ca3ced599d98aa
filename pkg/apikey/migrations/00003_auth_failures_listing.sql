-- +goose Up

-- ListAuthFailures reads a tenant's refusals newest first, keyset-paged on
-- (occur_time, id), from two branches: authorization refusals carrying the
-- tenant, and authentication refusals naming one of its API keys (those
-- carry no tenant: the caller was not verified, so the key's owner is found
-- through api_keys at read time). One index per branch, in the paging order.
DROP INDEX auth_failures_tenant;
CREATE INDEX auth_failures_tenant ON auth_failures (tenant_id, occur_time DESC, id DESC)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX auth_failures_api_key ON auth_failures (api_key_id, occur_time DESC, id DESC)
    WHERE api_key_id IS NOT NULL AND tenant_id IS NULL;

-- +goose Down
DROP INDEX auth_failures_api_key;
DROP INDEX auth_failures_tenant;
CREATE INDEX auth_failures_tenant ON auth_failures (tenant_id, occur_time) WHERE tenant_id IS NOT NULL;
