-- +goose Up
-- The loyalty service's schema is created by the platform migrations (with its
-- outbox, inbox and idempotency tables); its own tables arrive with its
-- domain. This first migration records who owns the schema.
COMMENT ON SCHEMA loyalty IS 'Rapport loyalty service; no other service reads or writes it';

-- +goose Down
COMMENT ON SCHEMA loyalty IS NULL;
