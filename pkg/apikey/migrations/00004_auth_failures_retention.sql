-- +goose Up

-- Refused calls are kept for 90 days, then pruned (AuthFailureLog.Run):
-- a flood of bad credentials must not grow the table for ever. The table
-- stays append-only for everything younger, so nobody can erase recent
-- traces of an attack.
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION auth_failures_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.occur_time < now() - interval '90 days' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'auth_failures is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION auth_failures_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'auth_failures is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
-- +goose StatementEnd
