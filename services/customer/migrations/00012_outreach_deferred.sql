-- +goose Up

-- Two changes: outreach deferrals, and the care scheduler's record of
-- holiday dates it has finished (at the end).

-- Outreach refusals that only mean "not now" wait instead of ending the
-- delivery (package internal/outreach, worker.go): a delivery the governor
-- refused for QUIET_HOURS, or for FREQUENCY_CAP when the cap frees within
-- the deferral bound, is DEFERRED until next_allowed_time. It holds its
-- sealed content (it will be sent) but no touch: the governor is asked
-- again when it comes due, and the touch is recorded only then, when the
-- send goes ahead. refusal_reason says why it waits; it is cleared when the
-- delivery is queued.
--
-- next_attempt_time is when the worker re-checks a deferred delivery (the
-- same column the queue uses, so one partial index serves both); it equals
-- next_allowed_time except while a worker holds the re-check's lease.
ALTER TABLE outreach_deliveries
    DROP CONSTRAINT outreach_deliveries_status_valid,
    ADD CONSTRAINT outreach_deliveries_status_valid CHECK (status IN ('queued', 'deferred', 'sent', 'failed', 'refused')),
    DROP CONSTRAINT outreach_deliveries_queued_due,
    ADD CONSTRAINT outreach_deliveries_queued_due CHECK ((status IN ('queued', 'deferred')) = (next_attempt_time IS NOT NULL)),
    DROP CONSTRAINT outreach_deliveries_refusal,
    ADD CONSTRAINT outreach_deliveries_refusal CHECK ((status IN ('refused', 'deferred')) = (refusal_reason <> '')),
    -- Only these two refusals pass with time; the others need the customer
    -- to act (consent) or can never pass (unknown, erased).
    ADD CONSTRAINT outreach_deliveries_deferred_reason CHECK (
        status <> 'deferred' OR (refusal_reason IN ('QUIET_HOURS', 'FREQUENCY_CAP') AND next_allowed_time IS NOT NULL));

DROP INDEX outreach_deliveries_due;
-- The worker's claims: due queued and deferred deliveries of every tenant,
-- oldest due first.
CREATE INDEX outreach_deliveries_due ON outreach_deliveries (status, next_attempt_time) WHERE status IN ('queued', 'deferred');

-- The care scheduler (package internal/care, schedule.go): a holiday date
-- whose occasions are all recorded. A holiday inside the round's window
-- makes the round check every customer of the tenant; once its date has
-- passed in every time zone the scheduler knows, each customer's occasion
-- was due and the round that saw it so recorded it (or it fell out of the
-- catch-up window, for good), and no customer created since can have it
-- (its local creation date is later). The round that finds the date over
-- inserts this row, in its transaction, after its holiday statement; later
-- rounds leave the date out. Rows older than any window are pruned by the
-- rounds; deleting the holiday deletes its rows.
CREATE TABLE care_holiday_dates_done (
    tenant_id    uuid NOT NULL,
    holiday_id   uuid NOT NULL,
    holiday_date date NOT NULL,
    done_time    timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, holiday_id, holiday_date),
    CONSTRAINT care_holiday_dates_done_holiday_fk FOREIGN KEY (tenant_id, holiday_id)
        REFERENCES care_holidays (tenant_id, id) ON DELETE CASCADE
);

-- +goose Down
DROP TABLE care_holiday_dates_done;
-- A deferred delivery cannot exist before this migration: it becomes the
-- REFUSED delivery it would have been (content dropped, as refused ones
-- hold none).
UPDATE outreach_deliveries
SET status = 'refused', next_attempt_time = NULL, content_sealed = NULL, failure_reason = 'refused:' || refusal_reason
WHERE status = 'deferred';
DROP INDEX outreach_deliveries_due;
CREATE INDEX outreach_deliveries_due ON outreach_deliveries (next_attempt_time) WHERE status = 'queued';
ALTER TABLE outreach_deliveries
    DROP CONSTRAINT outreach_deliveries_deferred_reason,
    DROP CONSTRAINT outreach_deliveries_refusal,
    ADD CONSTRAINT outreach_deliveries_refusal CHECK ((status = 'refused') = (refusal_reason <> '')),
    DROP CONSTRAINT outreach_deliveries_queued_due,
    ADD CONSTRAINT outreach_deliveries_queued_due CHECK ((status = 'queued') = (next_attempt_time IS NOT NULL)),
    DROP CONSTRAINT outreach_deliveries_status_valid,
    ADD CONSTRAINT outreach_deliveries_status_valid CHECK (status IN ('queued', 'sent', 'failed', 'refused'));
