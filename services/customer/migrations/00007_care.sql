-- +goose Up

-- The care calendar and care plans (package internal/care). Every table
-- leads with tenant_id. Occasion kinds and task states are stored as their
-- lower-case names; the CHECKs are the backstop for the enums in care.proto.

-- UUIDv7 ids for occasions made in SQL (Rapport's ids are UUIDv7 and
-- PostgreSQL 15 has no generator): the millisecond Unix time over the
-- first 48 bits of a random UUID, version bits set to 7.
-- +goose StatementBegin
CREATE FUNCTION care_new_id() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
        PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
        FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid
$$;
-- +goose StatementEnd

-- A tenant's care settings. No row means the defaults in code
-- (care.DefaultSettings: every kind off, 09:00 UTC), so nothing fires for a
-- tenant until it opts in. due_hour is the local hour (in the customer's
-- zone) at which an occasion of that day becomes due.
CREATE TABLE care_settings (
    tenant_id              uuid PRIMARY KEY,
    birthday_enabled       boolean NOT NULL,
    anniversary_enabled    boolean NOT NULL,
    purchase_followup_days integer NOT NULL,
    ticket_followup_days   integer NOT NULL,
    default_time_zone      text NOT NULL,
    due_hour               smallint NOT NULL,
    version                bigint NOT NULL,
    update_time            timestamptz NOT NULL,
    CONSTRAINT care_settings_followup_days_range CHECK (
        purchase_followup_days BETWEEN 0 AND 365 AND ticket_followup_days BETWEEN 0 AND 365),
    CONSTRAINT care_settings_due_hour_range CHECK (due_hour BETWEEN 0 AND 23),
    CONSTRAINT care_settings_time_zone_length CHECK (length(default_time_zone) <= 64),
    CONSTRAINT care_settings_version_positive CHECK (version > 0)
);

-- A tenant's holiday calendar. A holiday is either one dated day
-- (holiday_date: lunar festivals such as the Spring Festival move every
-- year, so each year's date is entered) or a fixed day every year
-- (month/day). Exactly one of the two; Feb 29 cannot recur.
CREATE TABLE care_holidays (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    name         text NOT NULL,
    holiday_date date,
    month        smallint,
    day          smallint,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT care_holidays_name_length CHECK (length(name) BETWEEN 1 AND 100),
    CONSTRAINT care_holidays_dated_or_recurring CHECK (
        (holiday_date IS NOT NULL AND month IS NULL AND day IS NULL)
        OR (holiday_date IS NULL AND month IS NOT NULL AND day IS NOT NULL)),
    CONSTRAINT care_holidays_recurring_day_valid CHECK (
        month IS NULL OR (month BETWEEN 1 AND 12 AND day BETWEEN 1 AND
            CASE WHEN month = 2 THEN 28 WHEN month IN (4, 6, 9, 11) THEN 30 ELSE 31 END))
);

-- Which tenants the scheduler visits and when each is next due. A replica
-- claims a due tenant with FOR UPDATE SKIP LOCKED and computes its
-- occasions in the transaction that holds the claim, then moves
-- next_run_time on: replicas share the tenants, and a crash releases the
-- claim with nothing done. A tenant joins when it first stores settings or
-- a holiday.
CREATE TABLE care_schedule (
    tenant_id     uuid PRIMARY KEY,
    next_run_time timestamptz NOT NULL,
    last_run_time timestamptz,
    rounds        bigint NOT NULL DEFAULT 0
);
CREATE INDEX care_schedule_due ON care_schedule (next_run_time);

-- One row per occasion of a customer: a birthday in a year, a holiday on a
-- date, the follow-up of one purchase or one resolved ticket, the
-- membership anniversary in a year. The unique key is what makes an
-- occasion fire exactly once however many schedulers race: each inserts
-- with ON CONFLICT DO NOTHING and writes care.due only for rows it
-- inserted, in the same transaction. occasion_date is the local date in
-- the customer's zone; due_time the instant it became due.
CREATE TABLE care_occasions (
    tenant_id     uuid NOT NULL,
    id            uuid NOT NULL,
    customer_id   uuid NOT NULL,
    kind          text NOT NULL,
    occasion_key  text NOT NULL,
    occasion_date date NOT NULL,
    due_time      timestamptz NOT NULL,
    time_zone     text NOT NULL,
    -- The holiday, purchase or ticket the occasion is about; NULL for
    -- birthdays and anniversaries.
    reference_id  uuid,
    create_time   timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT care_occasions_once UNIQUE (tenant_id, customer_id, kind, occasion_key),
    CONSTRAINT care_occasions_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT care_occasions_kind_known CHECK (
        kind IN ('birthday', 'holiday', 'purchase_follow_up', 'ticket_follow_up', 'anniversary')),
    CONSTRAINT care_occasions_key_of_kind CHECK (starts_with(occasion_key, kind || ':')),
    CONSTRAINT care_occasions_reference CHECK (
        (reference_id IS NULL) = (kind IN ('birthday', 'anniversary')))
);
-- The calendar: a tenant's occasions by date (ListCareOccasions by range).
CREATE INDEX care_occasions_date ON care_occasions (tenant_id, occasion_date, id);

-- Resolved tickets, from rapport.ticket.ticket.resolved, kept until their
-- follow-up can no longer be due: the scheduler finds the follow-ups here
-- without asking the ticket service. One row per ticket; a ticket resolved
-- again keeps its latest resolution (its follow-up still fires once).
CREATE TABLE care_ticket_resolutions (
    tenant_id    uuid NOT NULL,
    ticket_id    uuid NOT NULL,
    customer_id  uuid NOT NULL,
    resolve_time timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, ticket_id)
);
CREATE INDEX care_ticket_resolutions_time ON care_ticket_resolutions (tenant_id, resolve_time);

-- Care plans: what staff will do for one customer. The title is free text
-- about a person, so it is sealed with the customer's data key
-- (internal/pii); erasing the customer shreds it.
CREATE TABLE care_plans (
    tenant_id    uuid NOT NULL,
    id           uuid NOT NULL,
    customer_id  uuid NOT NULL,
    title_sealed bytea NOT NULL,
    created_by   text NOT NULL,
    create_time  timestamptz NOT NULL,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT care_plans_customer_fk FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id),
    CONSTRAINT care_plans_title_sealed_not_empty CHECK (octet_length(title_sealed) > 0)
);
CREATE INDEX care_plans_customer ON care_plans (tenant_id, customer_id, create_time DESC, id DESC);

-- The tasks of a plan, each assigned to a staff member (their subject) and
-- due at a time. customer_id repeats the plan's so a merge or an erase
-- finds tasks directly. Title and outcome note are sealed like the plan's
-- title. A task is completed once: status, completion time and completer
-- change together.
CREATE TABLE care_tasks (
    tenant_id           uuid NOT NULL,
    id                  uuid NOT NULL,
    plan_id             uuid NOT NULL,
    customer_id         uuid NOT NULL,
    position            integer NOT NULL,
    title_sealed        bytea NOT NULL,
    assignee            text NOT NULL,
    due_time            timestamptz NOT NULL,
    status              text NOT NULL DEFAULT 'open',
    complete_time       timestamptz,
    completed_by        text,
    outcome_note_sealed bytea,
    PRIMARY KEY (tenant_id, id),
    CONSTRAINT care_tasks_plan_fk FOREIGN KEY (tenant_id, plan_id) REFERENCES care_plans (tenant_id, id) ON DELETE CASCADE,
    CONSTRAINT care_tasks_position_unique UNIQUE (tenant_id, plan_id, position),
    CONSTRAINT care_tasks_title_sealed_not_empty CHECK (octet_length(title_sealed) > 0),
    CONSTRAINT care_tasks_assignee_length CHECK (length(assignee) BETWEEN 1 AND 128),
    CONSTRAINT care_tasks_status_known CHECK (status IN ('open', 'done')),
    CONSTRAINT care_tasks_completion CHECK (
        (status = 'open' AND complete_time IS NULL AND completed_by IS NULL AND outcome_note_sealed IS NULL)
        OR (status = 'done' AND complete_time IS NOT NULL AND completed_by IS NOT NULL))
);
-- The worklist: a tenant's tasks by assignee and status, soonest due first.
CREATE INDEX care_tasks_worklist ON care_tasks (tenant_id, assignee, status, due_time, id);
CREATE INDEX care_tasks_due ON care_tasks (tenant_id, status, due_time, id);
CREATE INDEX care_tasks_customer ON care_tasks (tenant_id, customer_id);

-- The scheduler finds candidates through narrow indexes instead of reading
-- a tenant's customers or purchases every round:
--   * birthdays: customers_birthday (migration 00005);
--   * anniversaries: the UTC month and day of create_time (the local date
--     is at most a day away, so the query widens its window by a day);
--   * purchase follow-ups: purchases by time.
CREATE INDEX customers_anniversary ON customers (
    tenant_id,
    (EXTRACT(MONTH FROM create_time AT TIME ZONE 'UTC')),
    (EXTRACT(DAY FROM create_time AT TIME ZONE 'UTC')))
    WHERE merged_into IS NULL;
CREATE INDEX purchases_time ON purchases (tenant_id, purchase_time);

-- +goose Down
DROP INDEX purchases_time;
DROP INDEX customers_anniversary;
DROP TABLE care_tasks;
DROP TABLE care_plans;
DROP TABLE care_ticket_resolutions;
DROP TABLE care_occasions;
DROP TABLE care_schedule;
DROP TABLE care_holidays;
DROP TABLE care_settings;
DROP FUNCTION care_new_id();
