-- The scheduler's statements: one INSERT ... SELECT per occasion kind, for
-- one tenant, set-based. Each inserts the occasions of the tenant's
-- customers that are due (due_time <= now) and not older than the catch-up
-- window (due_time > window_start), and returns only the rows it inserted:
-- the unique key (tenant, customer, kind, occasion_key) with ON CONFLICT DO
-- NOTHING makes an occasion that was recorded before, or that a racing
-- transaction records first, return nothing, so its care.due event is
-- written exactly once, by the transaction that inserted it. Rows are
-- inserted in a fixed order so racing transactions wait on each other's
-- keys in the same order and cannot deadlock.
--
-- Shared parameters:
--   now, window_start   the round's time and now minus the catch-up window;
--   first_day, last_day the UTC dates a due occasion's local date can fall
--                       on (the window widened by a day each side: local
--                       dates run up to 14 hours ahead of or 12 behind UTC);
--   months, days        the (month, day) pairs of those dates, a month's
--                       last day standing also for the days it lacks (Feb
--                       28 of a common year for Feb 29): the candidates'
--                       index keys, as a short list the planner probes;
--   zones               the time zone names PostgreSQL knows: a customer's
--                       zone outside it (a typo, '') falls back to
--                       default_zone, which the caller checked the same way;
--   due_hour            the local hour an occasion's day becomes due.
-- Merged customers (merged_into) and erased ones (their data key is gone)
-- have no occasions. The key check ends in OFFSET 0 so that it stays a probe
-- of customer_keys' primary key per candidate: as a semi-join the planner
-- hashed every tenant's keys to check a few hundred candidates.
-- A day is due at (date + due_hour) in the customer's zone. An occasion
-- dated before the customer's creation (local date) is never due: catching
-- up is for a scheduler that was down, not for customers who did not exist.

-- CareOccasionsInsertBirthdays: a birthday in the local year of now, or of
-- the year before (a Dec 31 birthday caught up on Jan 2). Days past the end
-- of a month clamp to its last day: Feb 29 birthdays fall on Feb 28 in
-- other years. Candidates come from the customers_birthday index by the
-- (month, day) pairs of the window.
-- name: CareOccasionsInsertBirthdays :many
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now, @window_start::timestamptz AS window_start,
           @due_hour::int AS due_hour
),
zones AS (SELECT unnest(@zones::text[]) AS name),
month_days AS (
    SELECT unnest(@months::smallint[]) AS m, unnest(@days::smallint[]) AS d
),
candidates AS (
    SELECT c.id AS customer_id, c.birth_month, c.birth_day, c.create_time,
           coalesce(z.name, @default_zone::text) AS zone
    FROM month_days md
    JOIN customers c ON c.tenant_id = @tenant_id AND c.birth_month = md.m AND c.birth_day = md.d
                    AND c.merged_into IS NULL
                    AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id OFFSET 0)
    LEFT JOIN zones z ON z.name = c.time_zone
),
dated AS (
    SELECT ca.customer_id, ca.zone, ca.create_time, y.year,
           make_date(y.year, ca.birth_month, 1)
             + (least(ca.birth_day::int,
                      extract(day FROM make_date(y.year, ca.birth_month, 1) + interval '1 month' - interval '1 day')::int) - 1)
             AS occasion_date
    FROM args, candidates ca,
         LATERAL (SELECT extract(year FROM timezone(ca.zone, args.now))::int - k AS year
                  FROM generate_series(0, 1) AS k) AS y
),
due AS (
    SELECT dated.customer_id, dated.zone, dated.create_time, dated.year, dated.occasion_date,
           timezone(dated.zone, dated.occasion_date + args.due_hour * interval '1 hour') AS due_time
    FROM args, dated
)
INSERT INTO care_occasions (
    tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time
)
SELECT args.tenant_id, care_new_id(), due.customer_id, 'birthday', 'birthday:' || due.year, due.occasion_date,
       due.due_time, due.zone, NULL, args.now
FROM args, due
WHERE due.due_time <= args.now AND due.due_time > args.window_start
  AND due.occasion_date >= timezone(due.zone, due.create_time)::date
ORDER BY due.customer_id, due.year
ON CONFLICT (tenant_id, customer_id, kind, occasion_key) DO NOTHING
RETURNING tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time;

-- CareOccasionsInsertAnniversaries: the anniversary of the customer's
-- creation (local date) in the local year of now or the year before, from
-- the first year on, clamped like birthdays. Candidates come from the
-- customers_anniversary index by the UTC month and day of create_time, which
-- is within a day of the local one: the caller widens first_day/last_day by
-- one more day for this statement.
-- name: CareOccasionsInsertAnniversaries :many
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now, @window_start::timestamptz AS window_start,
           @due_hour::int AS due_hour
),
zones AS (SELECT unnest(@zones::text[]) AS name),
month_days AS (
    SELECT unnest(@months::smallint[])::numeric AS m, unnest(@days::smallint[])::numeric AS d
),
candidates AS (
    SELECT c.id AS customer_id, c.create_time, coalesce(z.name, @default_zone::text) AS zone
    FROM month_days md
    JOIN customers c ON c.tenant_id = @tenant_id
                    AND EXTRACT(MONTH FROM c.create_time AT TIME ZONE 'UTC') = md.m
                    AND EXTRACT(DAY FROM c.create_time AT TIME ZONE 'UTC') = md.d
                    AND c.merged_into IS NULL
                    AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id OFFSET 0)
    LEFT JOIN zones z ON z.name = c.time_zone
),
joined AS (
    SELECT ca.customer_id, ca.zone, timezone(ca.zone, ca.create_time)::date AS join_date
    FROM candidates ca
),
years AS (
    SELECT j.customer_id, j.zone, j.join_date, extract(year FROM timezone(j.zone, args.now))::int - k AS year
    FROM args, joined j, generate_series(0, 1) AS k
),
dated AS (
    SELECT yr.customer_id, yr.zone, yr.year,
           make_date(yr.year, extract(month FROM yr.join_date)::int, 1)
             + (least(extract(day FROM yr.join_date)::int,
                      extract(day FROM make_date(yr.year, extract(month FROM yr.join_date)::int, 1)
                                       + interval '1 month' - interval '1 day')::int) - 1)
             AS occasion_date
    FROM years yr
    WHERE yr.year > extract(year FROM yr.join_date)
),
due AS (
    SELECT dated.customer_id, dated.zone, dated.year, dated.occasion_date,
           timezone(dated.zone, dated.occasion_date + args.due_hour * interval '1 hour') AS due_time
    FROM args, dated
)
INSERT INTO care_occasions (
    tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time
)
SELECT args.tenant_id, care_new_id(), due.customer_id, 'anniversary', 'anniversary:' || due.year, due.occasion_date,
       due.due_time, due.zone, NULL, args.now
FROM args, due
WHERE due.due_time <= args.now AND due.due_time > args.window_start
ORDER BY due.customer_id, due.year
ON CONFLICT (tenant_id, customer_id, kind, occasion_key) DO NOTHING
RETURNING tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time;

-- CareOccasionsInsertHolidays: every holiday of the tenant falling on a
-- day of the window (a dated one, or a recurring one in the years of the
-- window), for every customer of the tenant, per customer: the greeting of
-- each customer is its own occasion, due at the due hour of that date in
-- the zone of the customer. A holiday date recorded as done
-- (care_holiday_dates_done, CareHolidayDatesMarkDone) is left out: without
-- one, the statement reads no customer at all.
-- name: CareOccasionsInsertHolidays :many
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now, @window_start::timestamptz AS window_start,
           @first_day::date AS first_day, @last_day::date AS last_day, @default_zone::text AS default_zone,
           @due_hour::int AS due_hour
),
zones AS (SELECT unnest(@zones::text[]) AS name),
in_window AS (
    SELECT h.id AS holiday_id, h.holiday_date AS holiday_date
    FROM args JOIN care_holidays h ON h.tenant_id = @tenant_id
    WHERE h.holiday_date BETWEEN args.first_day AND args.last_day
    UNION ALL
    SELECT r.id, r.on_date
    FROM (SELECT h.id, make_date(y, h.month, h.day) AS on_date, args.first_day, args.last_day
          FROM args
          JOIN care_holidays h ON h.tenant_id = @tenant_id AND h.month IS NOT NULL
          CROSS JOIN generate_series(extract(year FROM args.first_day)::int, extract(year FROM args.last_day)::int) AS y
         ) AS r
    WHERE r.on_date BETWEEN r.first_day AND r.last_day
),
holidays AS (
    SELECT w.holiday_id, w.holiday_date FROM in_window w
    WHERE NOT EXISTS (SELECT 1 FROM care_holiday_dates_done d
                      WHERE d.tenant_id = @tenant_id AND d.holiday_id = w.holiday_id AND d.holiday_date = w.holiday_date)
),
candidates AS (
    SELECT c.id AS customer_id, c.create_time, coalesce(z.name, args.default_zone) AS zone
    FROM args
    JOIN customers c ON c.tenant_id = @tenant_id AND c.merged_into IS NULL
                    AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id OFFSET 0)
    LEFT JOIN zones z ON z.name = c.time_zone
    WHERE EXISTS (SELECT 1 FROM holidays)
),
due AS (
    SELECT ca.customer_id, ca.zone, ca.create_time, h.holiday_id, h.holiday_date,
           timezone(ca.zone, h.holiday_date + args.due_hour * interval '1 hour') AS due_time
    FROM args, candidates ca, holidays h
)
INSERT INTO care_occasions (
    tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time
)
SELECT args.tenant_id, care_new_id(), due.customer_id, 'holiday',
       'holiday:' || due.holiday_id || ':' || to_char(due.holiday_date, 'YYYY-MM-DD'),
       due.holiday_date, due.due_time, due.zone, due.holiday_id, args.now
FROM args, due
WHERE due.due_time <= args.now AND due.due_time > args.window_start
  AND due.holiday_date >= timezone(due.zone, due.create_time)::date
ORDER BY due.customer_id, due.holiday_id, due.holiday_date
ON CONFLICT (tenant_id, customer_id, kind, occasion_key) DO NOTHING
RETURNING tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time;

-- CareOccasionsInsertPurchaseFollowUps: the follow-up of each purchase,
-- follow_up_days after the local date of the purchase. Only purchases whose
-- follow-up can be due in the window are read (purchases_time), those made
-- in (source_after, source_before]: the window moved back by the days and
-- widened by a local date up to a day off and the due hour (DueParams).
-- name: CareOccasionsInsertPurchaseFollowUps :many
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now, @window_start::timestamptz AS window_start,
           @first_day::date AS first_day, @last_day::date AS last_day, @default_zone::text AS default_zone,
           @due_hour::int AS due_hour,
           @follow_up_days::int AS follow_up_days
),
zones AS (SELECT unnest(@zones::text[]) AS name),
candidates AS (
    SELECT p.id AS purchase_id, p.customer_id, coalesce(z.name, args.default_zone) AS zone,
           timezone(coalesce(z.name, args.default_zone), p.purchase_time)::date + args.follow_up_days AS occasion_date
    FROM args
    JOIN purchases p ON p.tenant_id = @tenant_id
    JOIN customers c ON c.tenant_id = p.tenant_id AND c.id = p.customer_id AND c.merged_into IS NULL
                    AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id OFFSET 0)
    LEFT JOIN zones z ON z.name = c.time_zone
    WHERE p.purchase_time > @source_after::timestamptz AND p.purchase_time <= @source_before::timestamptz
),
due AS (
    SELECT ca.purchase_id, ca.customer_id, ca.zone, ca.occasion_date,
           timezone(ca.zone, ca.occasion_date + args.due_hour * interval '1 hour') AS due_time
    FROM args, candidates ca
)
INSERT INTO care_occasions (
    tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time
)
SELECT args.tenant_id, care_new_id(), due.customer_id, 'purchase_follow_up', 'purchase_follow_up:' || due.purchase_id,
       due.occasion_date, due.due_time, due.zone, due.purchase_id, args.now
FROM args, due
WHERE due.due_time <= args.now AND due.due_time > args.window_start
ORDER BY due.customer_id, due.purchase_id
ON CONFLICT (tenant_id, customer_id, kind, occasion_key) DO NOTHING
RETURNING tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time;

-- CareOccasionsInsertTicketFollowUps: the follow-up of each resolved
-- ticket, like purchases, from care_ticket_resolutions. A ticket resolved
-- again after its follow-up fired does not fire again (same key).
-- name: CareOccasionsInsertTicketFollowUps :many
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now, @window_start::timestamptz AS window_start,
           @first_day::date AS first_day, @last_day::date AS last_day, @default_zone::text AS default_zone,
           @due_hour::int AS due_hour,
           @follow_up_days::int AS follow_up_days
),
zones AS (SELECT unnest(@zones::text[]) AS name),
candidates AS (
    SELECT r.ticket_id, r.customer_id, coalesce(z.name, args.default_zone) AS zone,
           timezone(coalesce(z.name, args.default_zone), r.resolve_time)::date + args.follow_up_days AS occasion_date
    FROM args
    JOIN care_ticket_resolutions r ON r.tenant_id = @tenant_id
    JOIN customers c ON c.tenant_id = r.tenant_id AND c.id = r.customer_id AND c.merged_into IS NULL
                    AND EXISTS (SELECT 1 FROM customer_keys k WHERE k.tenant_id = c.tenant_id AND k.customer_id = c.id OFFSET 0)
    LEFT JOIN zones z ON z.name = c.time_zone
    WHERE r.resolve_time > @source_after::timestamptz AND r.resolve_time <= @source_before::timestamptz
),
due AS (
    SELECT ca.ticket_id, ca.customer_id, ca.zone, ca.occasion_date,
           timezone(ca.zone, ca.occasion_date + args.due_hour * interval '1 hour') AS due_time
    FROM args, candidates ca
)
INSERT INTO care_occasions (
    tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time
)
SELECT args.tenant_id, care_new_id(), due.customer_id, 'ticket_follow_up', 'ticket_follow_up:' || due.ticket_id,
       due.occasion_date, due.due_time, due.zone, due.ticket_id, args.now
FROM args, due
WHERE due.due_time <= args.now AND due.due_time > args.window_start
ORDER BY due.customer_id, due.ticket_id
ON CONFLICT (tenant_id, customer_id, kind, occasion_key) DO NOTHING
RETURNING tenant_id, id, customer_id, kind, occasion_key, occasion_date, due_time, time_zone, reference_id, create_time;

-- CareTicketResolutionsPrune forgets resolutions whose follow-up can no
-- longer be due (older than the longest follow-up plus the window).
-- name: CareTicketResolutionsPrune :exec
DELETE FROM care_ticket_resolutions
WHERE tenant_id = @tenant_id AND resolve_time < @before::timestamptz;

-- CareTicketResolutionUpsert records a resolved ticket; a later resolution
-- of the same ticket replaces an earlier one, never the reverse (events may
-- arrive out of order).
-- name: CareTicketResolutionUpsert :exec
INSERT INTO care_ticket_resolutions AS r (tenant_id, ticket_id, customer_id, resolve_time)
VALUES (@tenant_id, @ticket_id, @customer_id, @resolve_time)
ON CONFLICT (tenant_id, ticket_id) DO UPDATE
SET customer_id = excluded.customer_id, resolve_time = excluded.resolve_time
WHERE r.resolve_time < excluded.resolve_time;

-- CareOccasionsByCustomer pages a customer's occasions, newest date first.
-- name: CareOccasionsByCustomer :many
SELECT * FROM care_occasions
WHERE tenant_id = @tenant_id AND customer_id = @customer_id
  AND (@kind::text = '' OR kind = @kind::text)
  AND (occasion_date, id) < (@before_date::date, @before_id::uuid)
ORDER BY occasion_date DESC, id DESC
LIMIT @row_limit;

-- CareOccasionsByDate pages a tenant's occasions in a date range, by date.
-- name: CareOccasionsByDate :many
SELECT * FROM care_occasions
WHERE tenant_id = @tenant_id
  AND occasion_date BETWEEN @start_date::date AND @end_date::date
  AND (@kind::text = '' OR kind = @kind::text)
  AND (occasion_date, id) > (@after_date::date, @after_id::uuid)
ORDER BY occasion_date, id
LIMIT @row_limit;

-- name: CareCustomerExists :one
SELECT EXISTS (SELECT 1 FROM customers c WHERE c.tenant_id = @tenant_id AND c.id = @customer_id) AS customer_exists;

-- CareHolidayDatesMarkDone runs after CareOccasionsInsertHolidays, in its
-- transaction and with its parameters. It records the tenant's holiday
-- dates of the window that are over in every zone of @zones (the next
-- local day has begun everywhere: max over the zones of the instant it
-- begins, <= now). By then every customer's occasion of that date was due
-- at or before now, so the holiday statement just recorded it unless it was
-- recorded before or is older than the catch-up window (and so never
-- recordable again); a customer created from now on has a later local
-- creation date in any zone, so it never has one. Later rounds skip the
-- date. Dates before first_day, which no window reaches again, are
-- forgotten. Racing rounds insert the same row once.
-- name: CareHolidayDatesMarkDone :exec
WITH args AS (
    SELECT @tenant_id::uuid AS tenant_id, @now::timestamptz AS now,
           @first_day::date AS first_day, @last_day::date AS last_day
),
pruned AS (
    DELETE FROM care_holiday_dates_done d
    USING args
    WHERE d.tenant_id = args.tenant_id AND d.holiday_date < args.first_day
),
in_window AS (
    SELECT h.id AS holiday_id, h.holiday_date AS holiday_date
    FROM args JOIN care_holidays h ON h.tenant_id = args.tenant_id
    WHERE h.holiday_date BETWEEN args.first_day AND args.last_day
    UNION ALL
    SELECT r.id, r.on_date
    FROM (SELECT h.id, make_date(y, h.month, h.day) AS on_date, args.first_day, args.last_day
          FROM args
          JOIN care_holidays h ON h.tenant_id = args.tenant_id AND h.month IS NOT NULL
          CROSS JOIN generate_series(extract(year FROM args.first_day)::int, extract(year FROM args.last_day)::int) AS y
         ) AS r
    WHERE r.on_date BETWEEN r.first_day AND r.last_day
)
INSERT INTO care_holiday_dates_done (tenant_id, holiday_id, holiday_date, done_time)
SELECT args.tenant_id, w.holiday_id, w.holiday_date, args.now
FROM args, in_window w
WHERE (SELECT max(timezone(z.name, (w.holiday_date + 1)::timestamp)) FROM unnest(@zones::text[]) AS z(name)) <= args.now
ORDER BY w.holiday_id, w.holiday_date
ON CONFLICT (tenant_id, holiday_id, holiday_date) DO NOTHING;
