package care_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/care"
)

func birthdaysOn(tb testing.TB, b *testBundle) {
	tb.Helper()
	b.settings(tb, &customerv1.CareSettings{BirthdayEnabled: true, DueHour: 9}, "birthday_enabled", "due_hour")
}

// occasionDates maps each occasion key of a customer to its date.
func occasionDates(tb testing.TB, b *testBundle, customerID uuid.UUID) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for _, o := range b.occasions(tb, customerID) {
		out[o.GetOccasionKey()] = o.GetOccasionDate()
	}
	return out
}

func TestBirthdays(t *testing.T) {
	t.Parallel()

	t.Run("DueAtTheDueHourInTheCustomersZone", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		auckland := b.newCustomer(t, customerOpts{zone: "Pacific/Auckland", birth: [2]int{6, 10}})
		la := b.newCustomer(t, customerOpts{zone: "America/Los_Angeles", birth: [2]int{6, 10}})

		// Jun 10 09:00 in Auckland (UTC+12) is Jun 9 21:00 UTC; a minute
		// before, nothing is due.
		b.at(t, utc("2026-06-09T20:59:00Z"))
		require.Empty(t, b.dueEvents(t, b.tenant))
		b.at(t, utc("2026-06-09T21:00:00Z"))
		evs := b.dueEvents(t, b.tenant)
		require.Len(t, evs, 1)
		require.Equal(t, auckland.String(), evs[0].GetCustomerId())
		require.Equal(t, customerv1.CareOccasionKind_CARE_OCCASION_KIND_BIRTHDAY, evs[0].GetKind())
		require.Equal(t, "2026-06-10", evs[0].GetOccasionDate())
		require.Equal(t, "Pacific/Auckland", evs[0].GetTimeZone())
		require.Equal(t, utc("2026-06-09T21:00:00Z"), evs[0].GetDueTime().AsTime())
		require.Empty(t, evs[0].GetReferenceId())

		// Jun 10 09:00 in Los Angeles (UTC-7) is 16:00 UTC.
		b.at(t, utc("2026-06-10T15:59:00Z"))
		require.Len(t, b.dueEvents(t, b.tenant), 1)
		b.at(t, utc("2026-06-10T16:00:00Z"))
		evs = b.dueEvents(t, b.tenant)
		require.Len(t, evs, 2)
		require.Equal(t, la.String(), evs[1].GetCustomerId())
		require.Equal(t, "2026-06-10", evs[1].GetOccasionDate())

		// Later rounds find nothing new.
		for range 5 {
			b.clock.Advance(time.Hour)
			b.runDue(t)
		}
		require.Len(t, b.dueEvents(t, b.tenant), 2)
		require.Equal(t, map[string]string{"birthday:2026": "2026-06-10"}, occasionDates(t, b, auckland))
	})

	t.Run("UnknownZoneFallsBackToTheTenantDefault", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true, DueHour: 9, DefaultTimeZone: "Asia/Shanghai"},
			"birthday_enabled", "due_hour", "default_time_zone")
		typo := b.newCustomer(t, customerOpts{zone: "Mars/Olympus_Mons", birth: [2]int{6, 10}})
		none := b.newCustomer(t, customerOpts{zone: "", birth: [2]int{6, 10}})
		utcCustomer := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})

		// 09:00 in Shanghai (UTC+8) is 01:00 UTC.
		b.at(t, utc("2026-06-10T01:00:00Z"))
		evs := b.dueEvents(t, b.tenant)
		require.Len(t, evs, 2)
		got := map[string]string{}
		for _, e := range evs {
			got[e.GetCustomerId()] = e.GetTimeZone()
		}
		require.Equal(t, map[string]string{typo.String(): "Asia/Shanghai", none.String(): "Asia/Shanghai"}, got)
		b.at(t, utc("2026-06-10T09:00:00Z"))
		require.Len(t, b.dueEvents(t, b.tenant), 3)
		require.Contains(t, occasionDates(t, b, utcCustomer), "birthday:2026")
	})

	t.Run("Feb29FallsOnFeb28InCommonYears", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		leapling := b.newCustomer(t, customerOpts{zone: "Europe/Berlin", birth: [2]int{2, 29}})
		// 2027 is a common year: Feb 28, 09:00 in Berlin (UTC+1).
		b.at(t, utc("2027-02-28T07:59:00Z"))
		require.Empty(t, b.dueEvents(t, b.tenant))
		b.at(t, utc("2027-02-28T08:00:00Z"))
		require.Equal(t, map[string]string{"birthday:2027": "2027-02-28"}, occasionDates(t, b, leapling))
		// Not again on Mar 1.
		b.at(t, utc("2027-03-01T08:00:00Z"))
		require.Len(t, b.dueEvents(t, b.tenant), 1)
		// 2028 is a leap year: Feb 29 itself, not Feb 28.
		b.at(t, utc("2028-02-28T08:00:00Z"))
		require.Len(t, b.dueEvents(t, b.tenant), 1)
		b.at(t, utc("2028-02-29T08:00:00Z"))
		require.Equal(t, "2028-02-29", occasionDates(t, b, leapling)["birthday:2028"])
	})

	t.Run("CatchesUpWithinTheWindowOnly", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		// The scheduler was down: the first round after Jun 10's birthday
		// comes two days late, and records it once.
		recent := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
		// A birthday four days before the round is beyond the three-day
		// window: missed, never fired late.
		old := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 8}})
		// Last year's Dec birthday is never fired either.
		lastYear := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{12, 1}})
		b.at(t, utc("2026-06-12T10:00:00Z"))
		require.Equal(t, map[string]string{"birthday:2026": "2026-06-10"}, occasionDates(t, b, recent))
		require.Empty(t, occasionDates(t, b, old))
		require.Empty(t, occasionDates(t, b, lastYear))
		require.Len(t, b.dueEvents(t, b.tenant), 1)
	})

	t.Run("CatchesUpAcrossNewYear", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		eve := b.newCustomer(t, customerOpts{zone: "Asia/Tokyo", birth: [2]int{12, 31}})
		b.at(t, utc("2027-01-02T03:00:00Z"))
		require.Equal(t, map[string]string{"birthday:2026": "2026-12-31"}, occasionDates(t, b, eve))
	})

	t.Run("NotForDaysBeforeTheCustomerExisted", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		birthdaysOn(t, b)
		// Imported on Jun 11 with a birthday on Jun 10: no belated greeting.
		late := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}, created: utc("2026-06-11T08:00:00Z")})
		// Imported on the day itself: greeted.
		sameDay := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 11}, created: utc("2026-06-11T08:00:00Z")})
		b.at(t, utc("2026-06-11T10:00:00Z"))
		require.Empty(t, occasionDates(t, b, late))
		require.Contains(t, occasionDates(t, b, sameDay), "birthday:2026")
	})

	t.Run("OffByDefaultAndForMergedCustomers", func(t *testing.T) {
		t.Parallel()
		b := setup(t, nil)
		c := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
		// No settings: the tenant is not even on the schedule.
		n, err := b.server.RunDue(context.Background(), tick)
		require.NoError(t, err)
		require.Zero(t, n)
		b.settings(t, &customerv1.CareSettings{DueHour: 9}, "due_hour")
		b.at(t, utc("2026-06-10T10:00:00Z"))
		require.Empty(t, occasionDates(t, b, c), "birthdays are off by default")

		merged := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 11}})
		_, err = b.pool.Exec(context.Background(),
			`UPDATE customers SET merged_into = $2, merge_time = now() WHERE tenant_id = $1 AND id = $3`, b.tenant, c, merged)
		require.NoError(t, err)
		birthdaysOn(t, b)
		b.at(t, utc("2026-06-11T10:00:00Z"))
		require.Empty(t, occasionDates(t, b, merged), "a merged customer is not greeted")
		require.Contains(t, occasionDates(t, b, c), "birthday:2026", "turned on, the primary's birthday fires")
	})
}

func TestHolidays(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{DueHour: 10, DefaultTimeZone: "Asia/Shanghai"}, "due_hour", "default_time_zone")
	// The Mid-Autumn Festival of 2026, entered for its year, and a fixed day.
	midAutumn, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Mid-Autumn Festival", Date: "2026-09-25"}})
	require.NoError(t, err)
	national, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "National Day", RecurringMonth: 10, RecurringDay: 1}})
	require.NoError(t, err)
	shanghai := b.newCustomers(t, 3, customerOpts{})
	berlin := b.newCustomer(t, customerOpts{zone: "Europe/Berlin"})
	other := b.newCustomer(t, customerOpts{tenant: uuid.New()})
	// An erased customer keeps its row but loses its data key: no greetings.
	erased := b.newCustomer(t, customerOpts{zone: "Europe/Berlin"})
	_, err = b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, erased)
	require.NoError(t, err)

	// 10:00 in Shanghai is 02:00 UTC; in Berlin (UTC+2) 08:00 UTC.
	b.at(t, utc("2026-09-25T02:00:00Z"))
	evs := b.dueEvents(t, b.tenant)
	require.Len(t, evs, 3, "one occasion per customer in Shanghai")
	for _, e := range evs {
		require.Equal(t, customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY, e.GetKind())
		require.Equal(t, midAutumn.GetId(), e.GetReferenceId())
		require.Equal(t, "2026-09-25", e.GetOccasionDate())
	}
	b.at(t, utc("2026-09-25T08:00:00Z"))
	require.Len(t, b.dueEvents(t, b.tenant), 4)
	require.Equal(t, map[string]string{"holiday:" + midAutumn.GetId() + ":2026-09-25": "2026-09-25"}, occasionDates(t, b, berlin))
	require.Zero(t, b.count(t, `SELECT count(*) FROM care_occasions WHERE customer_id = $1`, other),
		"the holiday is the tenant's, not another tenant's customers'")
	require.Empty(t, occasionDates(t, b, erased))

	// The recurring holiday, every year.
	b.at(t, utc("2026-10-01T08:00:00Z"))
	require.Len(t, b.dueEvents(t, b.tenant), 8)
	b.at(t, utc("2027-10-01T08:00:00Z"))
	require.Len(t, b.dueEvents(t, b.tenant), 12)
	require.Equal(t, "2027-10-01", occasionDates(t, b, shanghai[0])["holiday:"+national.GetId()+":2027-10-01"])

	// The range view of the calendar.
	got, err := b.client.ListCareOccasions(b.as(), &customerv1.ListCareOccasionsRequest{
		StartDate: "2026-09-01", EndDate: "2026-09-30", Kind: customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY, PageSize: 3})
	require.NoError(t, err)
	require.Len(t, got.GetOccasions(), 3)
	require.NotEmpty(t, got.GetNextPageToken())
	next, err := b.client.ListCareOccasions(b.as(), &customerv1.ListCareOccasionsRequest{
		StartDate: "2026-09-01", EndDate: "2026-09-30", Kind: customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY,
		PageSize: 3, PageToken: got.GetNextPageToken()})
	require.NoError(t, err)
	require.Len(t, next.GetOccasions(), 1)
	require.Empty(t, next.GetNextPageToken())
}

// insertPurchase records a purchase row directly (the purchase package owns
// the API; the care calendar only reads the table).
func (b *testBundle) insertPurchase(tb testing.TB, customerID uuid.UUID, at time.Time) uuid.UUID {
	tb.Helper()
	id := uuid.Must(uuid.NewV7())
	_, err := b.pool.Exec(context.Background(), `
		INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel, currency_code,
		                       total_amount_minor, purchase_time, request_hash, create_time)
		VALUES ($1, $2, $3, $4, 'online', 'EUR', 1000, $5, '\x00', $5)`,
		b.tenant, id, customerID, "order-"+id.String(), at)
	require.NoError(tb, err)
	return id
}

func TestPurchaseFollowUps(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{PurchaseFollowUpDays: 7, DueHour: 9, DefaultTimeZone: "Europe/Paris"},
		"purchase_follow_up_days", "due_hour", "default_time_zone")
	c := b.newCustomer(t, customerOpts{})
	// Bought Jun 1 at 23:30 in Paris (21:30 UTC): the follow-up is Jun 8,
	// 09:00 Paris, 07:00 UTC.
	p1 := b.insertPurchase(t, c, utc("2026-06-01T21:30:00Z"))
	p2 := b.insertPurchase(t, c, utc("2026-06-02T10:00:00Z"))
	b.at(t, utc("2026-06-08T06:59:00Z"))
	require.Empty(t, b.dueEvents(t, b.tenant))
	b.at(t, utc("2026-06-08T07:00:00Z"))
	evs := b.dueEvents(t, b.tenant)
	require.Len(t, evs, 1)
	require.Equal(t, customerv1.CareOccasionKind_CARE_OCCASION_KIND_PURCHASE_FOLLOW_UP, evs[0].GetKind())
	require.Equal(t, p1.String(), evs[0].GetReferenceId())
	require.Equal(t, "2026-06-08", evs[0].GetOccasionDate())
	b.at(t, utc("2026-06-09T07:00:00Z"))
	b.at(t, utc("2026-06-09T12:00:00Z"))
	require.Equal(t, map[string]string{
		"purchase_follow_up:" + p1.String(): "2026-06-08",
		"purchase_follow_up:" + p2.String(): "2026-06-09",
	}, occasionDates(t, b, c))
	require.Len(t, b.dueEvents(t, b.tenant), 2)
}

func TestAnniversaries(t *testing.T) {
	t.Parallel()
	b := setup(t, &setupOpts{now: utc("2025-03-01T00:00:00Z")})
	b.settings(t, &customerv1.CareSettings{AnniversaryEnabled: true, DueHour: 9}, "anniversary_enabled", "due_hour")
	// Joined Mar 10, 2025 at 23:00 UTC: Mar 11 in Tokyo.
	tokyo := b.newCustomer(t, customerOpts{zone: "Asia/Tokyo", created: utc("2025-03-10T23:00:00Z")})
	b.at(t, utc("2025-03-11T00:00:00Z"))
	require.Empty(t, occasionDates(t, b, tokyo), "no anniversary in the year of joining")
	b.at(t, utc("2026-03-10T23:59:00Z"))
	require.Empty(t, occasionDates(t, b, tokyo))
	b.at(t, utc("2026-03-11T00:00:00Z"))
	require.Equal(t, map[string]string{"anniversary:2026": "2026-03-11"}, occasionDates(t, b, tokyo))
	b.at(t, utc("2026-03-11T10:00:00Z"))
	require.Len(t, b.dueEvents(t, b.tenant), 1)
}

// TestCareDueExactlyOnce: two schedulers (replicas on one database) run
// concurrently, round after round, while the clock crosses a month of
// birthdays, holidays and follow-ups across several tenants and zones.
// Every occasion is recorded once and published once.
func TestCareDueExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, &setupOpts{now: utc("2026-05-31T00:00:00Z")})
	zones := []string{"Pacific/Auckland", "Asia/Shanghai", "Europe/Berlin", "America/Los_Angeles", "", "Not/AZone"}
	tenants := []uuid.UUID{b.tenant, uuid.New(), uuid.New(), uuid.New()}
	var total int
	for ti, tenant := range tenants {
		b.tenant = tenant
		b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true, PurchaseFollowUpDays: 3, DueHour: int32(6 + ti),
			DefaultTimeZone: "Asia/Shanghai"}, "birthday_enabled", "purchase_follow_up_days", "due_hour", "default_time_zone")
		_, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
			Holiday: &customerv1.Holiday{Name: "Dragon Boat Festival", Date: "2026-06-19"}})
		require.NoError(t, err)
		n := 0
		for day := 1; day <= 28; day++ {
			ids := b.newCustomers(t, 2, customerOpts{zone: zones[(day+ti)%len(zones)], birth: [2]int{6, day}})
			n += 2 // birthday
			b.insertPurchase(t, ids[0], utc(fmt.Sprintf("2026-06-%02dT12:00:00Z", day)))
			n++ // its follow-up
		}
		n += 56 // the holiday, for each of the tenant's customers
		total += n
	}

	replicas := []interface {
		RunDue(context.Context, time.Duration) (int, error)
	}{b.server, b.newServer()}
	const every = 3 * time.Hour
	start := b.clock.Now()
	for step := range 40 * 24 / 3 { // every three hours to Jul 10
		b.clock.Set(start.Add(time.Duration(step) * every))
		var wg sync.WaitGroup
		for _, r := range replicas {
			wg.Go(func() {
				_, err := r.RunDue(context.Background(), every)
				require.NoError(t, err)
			})
		}
		wg.Wait()
	}

	var events int
	seen := map[string]bool{}
	for _, tenant := range tenants {
		for _, e := range b.dueEvents(t, tenant) {
			require.False(t, seen[e.GetOccasionId()], "occasion %s published twice", e.GetOccasionId())
			seen[e.GetOccasionId()] = true
			events++
		}
	}
	rows := b.count(t, `SELECT count(*) FROM care_occasions`)
	require.Equal(t, total, rows, "occasions recorded")
	require.Equal(t, total, events, "care.due events")
	require.Equal(t, rows, b.count(t, `SELECT count(*) FROM care_occasions o
		WHERE EXISTS (SELECT 1 FROM outbox e WHERE e.aggregate_id = o.id::text)`), "each occasion has its event")
}

// TestRoundsRacingOnOneTenant: the per-tenant claim normally keeps two
// replicas off one tenant; this takes it away and runs two rounds of the
// same tenant at the same instant in concurrent transactions. The unique
// key is then what decides: every occasion is recorded by exactly one of
// them, with exactly one event, and neither fails.
func TestRoundsRacingOnOneTenant(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{BirthdayEnabled: true, DueHour: 9}, "birthday_enabled", "due_hour")
	_, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Summer", Date: "2026-06-10"}})
	require.NoError(t, err)
	const n = 200
	b.newCustomers(t, n, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
	now := utc("2026-06-10T12:00:00Z")
	for round := range 5 {
		replicas := []*care.Server{b.newServer(), b.newServer()}
		got := make([]int, len(replicas))
		var wg sync.WaitGroup
		for i, r := range replicas {
			wg.Go(func() {
				tx, err := b.pool.Begin(context.Background())
				require.NoError(t, err)
				defer func() { _ = tx.Rollback(context.Background()) }()
				got[i], err = r.Round(context.Background(), tx, b.tenant, now.Add(time.Duration(round)*time.Minute))
				require.NoError(t, err)
				require.NoError(t, tx.Commit(context.Background()))
			})
		}
		wg.Wait()
		if round == 0 {
			require.Equal(t, 2*n, got[0]+got[1], "the two rounds share the occasions")
		} else {
			require.Equal(t, []int{0, 0}, got, "later rounds find everything recorded")
		}
	}
	require.Equal(t, 2*n, b.count(t, `SELECT count(*) FROM care_occasions WHERE tenant_id = $1`, b.tenant))
	require.Len(t, b.dueEvents(t, b.tenant), 2*n)
}

func TestRun(t *testing.T) {
	t.Parallel()
	b := setup(t, &setupOpts{now: utc("2026-06-10T10:00:00Z")})
	require.Error(t, b.server.Run(context.Background(), 0))
	birthdaysOn(t, b)
	c := b.newCustomer(t, customerOpts{zone: "UTC", birth: [2]int{6, 10}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.server.Run(ctx, time.Minute) }()
	// Run starts with a pass: the birthday is recorded without waiting.
	require.Eventually(t, func() bool { return len(b.occasions(t, c)) == 1 }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.Len(t, b.dueEvents(t, b.tenant), 1)
}

// TestHolidayDateDone: once a holiday's date has passed in every zone, the
// round records it as done (after recording its occasions) and later rounds
// no longer read the tenant's customers for it; until then they do. A
// scheduler that was down over the whole day still catches every occasion
// up, in the round that marks the date done, also with two rounds racing.
func TestHolidayDateDone(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.settings(t, &customerv1.CareSettings{DueHour: 9, DefaultTimeZone: "UTC"}, "due_hour", "default_time_zone")
	summer, err := b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Summer", Date: "2026-06-10"}})
	require.NoError(t, err)
	east := b.newCustomer(t, customerOpts{zone: "Pacific/Kiritimati"}) // UTC+14
	west := b.newCustomer(t, customerOpts{zone: "Etc/GMT+12"})         // UTC-12
	done := func() int {
		return b.count(t, `SELECT count(*) FROM care_holiday_dates_done WHERE tenant_id = $1 AND holiday_id = $2`,
			b.tenant, summer.GetId())
	}
	key := "holiday:" + summer.GetId() + ":2026-06-10"

	// 09:00 on June 10 at UTC+14 is June 9, 19:00 UTC.
	b.at(t, utc("2026-06-09T19:00:00Z"))
	require.Contains(t, occasionDates(t, b, east), key)
	require.Empty(t, occasionDates(t, b, west))
	// 09:00 at UTC-12 is June 10, 21:00 UTC; June 10 ends there on June 11,
	// 12:00 UTC. A customer created (back-dated) before then is still seen.
	b.at(t, utc("2026-06-10T21:00:00Z"))
	require.Contains(t, occasionDates(t, b, west), key)
	late := b.newCustomer(t, customerOpts{zone: "Etc/GMT+12"})
	b.at(t, utc("2026-06-11T11:59:59Z"))
	require.Zero(t, done(), "June 10 is not over at UTC-12")
	require.Contains(t, occasionDates(t, b, late), key)

	b.at(t, utc("2026-06-11T12:00:00Z"))
	require.Equal(t, 1, done())
	// From now on the date is skipped: even a customer that would qualify
	// (only a back-dated insert can) is no longer read for it.
	skipped := b.newCustomer(t, customerOpts{zone: "Etc/GMT+12"})
	b.at(t, utc("2026-06-11T13:00:00Z"))
	require.Empty(t, occasionDates(t, b, skipped))
	require.Len(t, b.dueEvents(t, b.tenant), 3)

	// Out of every window, the row is forgotten.
	b.at(t, utc("2026-06-20T00:00:00Z"))
	require.Zero(t, done())

	// Down over a whole holiday: the first round after it, racing another,
	// records every customer's occasion (once) and marks the date done.
	_, err = b.client.CreateHoliday(b.as(), &customerv1.CreateHolidayRequest{
		Holiday: &customerv1.Holiday{Name: "Later", Date: "2026-06-22"}})
	require.NoError(t, err)
	now := utc("2026-06-24T00:00:00Z") // 48 h after the day began at UTC+14: inside the 72 h catch-up
	replicas := []*care.Server{b.newServer(), b.newServer()}
	got := make([]int, len(replicas))
	var wg sync.WaitGroup
	for i, r := range replicas {
		wg.Go(func() {
			tx, err := b.pool.Begin(context.Background())
			require.NoError(t, err)
			defer func() { _ = tx.Rollback(context.Background()) }()
			got[i], err = r.Round(context.Background(), tx, b.tenant, now)
			require.NoError(t, err)
			require.NoError(t, tx.Commit(context.Background()))
		})
	}
	wg.Wait()
	require.Equal(t, 4, got[0]+got[1], "every customer's occasion, once")
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM care_holiday_dates_done WHERE tenant_id = $1 AND holiday_date = '2026-06-22'`, b.tenant))
	require.Len(t, b.dueEvents(t, b.tenant), 3+4)

	// Deleting the holiday deletes its record.
	_, err = b.pool.Exec(context.Background(), `DELETE FROM care_holidays WHERE tenant_id = $1`, b.tenant)
	require.NoError(t, err)
	require.Zero(t, b.count(t, `SELECT count(*) FROM care_holiday_dates_done WHERE tenant_id = $1`, b.tenant))
}
