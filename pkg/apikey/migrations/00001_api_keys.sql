-- +goose Up

-- One row per API key, in the platform schema "access" (no domain service
-- owns keys: every process that serves gRPC verifies them). The secret is
-- never stored: only its SHA-256, which is enough for 256 random bits (a slow
-- hash protects guessable passwords, not random keys).
--
-- Ids are UUIDv7 and globally unique, so the key's id alone finds its row
-- when a call presents it, before the tenant is known. Management queries
-- still always scope by tenant_id.
CREATE TABLE api_keys (
    tenant_id      uuid NOT NULL,
    id             uuid PRIMARY KEY,
    display_name   text NOT NULL,
    roles          text[] NOT NULL,
    secret_hash    bytea NOT NULL,
    create_time    timestamptz NOT NULL,
    expire_time    timestamptz,
    revoke_time    timestamptz,
    last_used_time timestamptz,
    created_by     text NOT NULL,
    CONSTRAINT api_keys_display_name_length CHECK (char_length(display_name) BETWEEN 1 AND 100),
    CONSTRAINT api_keys_roles_not_empty CHECK (cardinality(roles) > 0),
    CONSTRAINT api_keys_secret_hash_sha256 CHECK (octet_length(secret_hash) = 32),
    CONSTRAINT api_keys_created_by_not_empty CHECK (created_by <> '')
);

-- ListApiKeys walks a tenant's ids downwards (UUIDv7 ids sort by creation time).
CREATE INDEX api_keys_tenant_id_desc ON api_keys (tenant_id, id DESC);

-- +goose Down
DROP TABLE api_keys;
