-- +goose Up

-- Every call refused by authentication (UNAUTHENTICATED) or authorization
-- (PERMISSION_DENIED), from grpcx's OnAuthFailure hook (AuthFailureLog):
-- the security audit trail RELIABILITY.md SEC-09 asks for. It lives in the
-- platform schema because a refused call has no trusted tenant: the key is
-- the row's own id, and tenant_id and subject are filled only for an
-- authorization refusal, whose principal was verified.
--
-- Never a credential: credential says which kind was presented, and for an
-- API key only its id (the public half) is kept, never the secret. No
-- client address either: it is personal data, and the request id leads to
-- the access log line.
CREATE TABLE auth_failures (
    id          uuid PRIMARY KEY,
    occur_time  timestamptz NOT NULL,
    method      text NOT NULL,
    code        text NOT NULL,
    request_id  text NOT NULL,
    credential  text NOT NULL,
    api_key_id  uuid,
    tenant_id   uuid,
    subject     text,
    CONSTRAINT auth_failures_code_valid CHECK (code IN ('unauthenticated', 'permission_denied')),
    CONSTRAINT auth_failures_credential_valid CHECK (credential IN ('none', 'jwt', 'api_key')),
    CONSTRAINT auth_failures_principal_verified CHECK (
        (code = 'permission_denied') OR (tenant_id IS NULL AND subject IS NULL))
);

CREATE INDEX auth_failures_time ON auth_failures (occur_time);
CREATE INDEX auth_failures_tenant ON auth_failures (tenant_id, occur_time) WHERE tenant_id IS NOT NULL;

-- Append-only, like every audit table.
-- +goose StatementBegin
CREATE FUNCTION auth_failures_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auth_failures is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER auth_failures_no_update_delete BEFORE UPDATE OR DELETE ON auth_failures
    FOR EACH ROW EXECUTE FUNCTION auth_failures_append_only();
CREATE TRIGGER auth_failures_no_truncate BEFORE TRUNCATE ON auth_failures
    FOR EACH STATEMENT EXECUTE FUNCTION auth_failures_append_only();

-- +goose Down
DROP TRIGGER auth_failures_no_truncate ON auth_failures;
DROP TRIGGER auth_failures_no_update_delete ON auth_failures;
DROP TABLE auth_failures;
DROP FUNCTION auth_failures_append_only();
