-- name: CareHolidayInsert :one
INSERT INTO care_holidays (tenant_id, id, name, holiday_date, month, day, create_time)
VALUES (@tenant_id, @id, @name, @holiday_date, @month, @day, @create_time)
RETURNING *;

-- CareHolidaysInYear lists the holidays falling in a year: the dated ones
-- of that year and every recurring one, with the date each falls on.
-- name: CareHolidaysInYear :many
SELECT h.*, coalesce(h.holiday_date, make_date(@year::int, h.month, h.day))::date AS occurs_on
FROM care_holidays h
WHERE h.tenant_id = @tenant_id
  AND (h.month IS NOT NULL OR extract(year FROM h.holiday_date) = @year::int)
ORDER BY occurs_on, h.name, h.id;

-- name: CareHolidayDelete :execrows
DELETE FROM care_holidays WHERE tenant_id = @tenant_id AND id = @id;

-- name: CareHolidayName :one
SELECT name FROM care_holidays WHERE tenant_id = @tenant_id AND id = @id;
