package purchase_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
)

// replicas is two servers (replicas) on one database sharing a fake clock,
// each with its own pool, as two pods would be.
type replicas struct {
	a *testBundle
	b *purchase.Server
}

func setupReplicas(t *testing.T) replicas {
	t.Helper()
	dbURL := pgdbtest.NewDatabase(t, spec)
	a := setup(t, &setupOpts{pool: pgdbtest.Pool(t, dbURL, spec.Schema)})
	return replicas{a: a, b: purchase.NewServer(pgdbtest.Pool(t, dbURL, spec.Schema), a.clock.Now)}
}

// seedTenant gives tenant n customers, customer i with one purchase
// i*agoStep days before now, and puts the tenant on the schedule, due now,
// as its first purchase would have: rows written directly, so the first
// scheduled round computes every segment (a heavy round, a wide race).
func (b *testBundle) seedTenant(tb testing.TB, tenant uuid.UUID, n, agoStep int) {
	tb.Helper()
	ids := b.newCustomers(tb, tenant, n)
	ctx := context.Background()
	_, err := b.pool.Exec(ctx, `
		INSERT INTO purchases (tenant_id, id, customer_id, order_reference, channel, currency_code,
		                       total_amount_minor, purchase_time, request_hash, create_time)
		SELECT $1, gen_random_uuid(), c.id, 'seed-' || c.i, 'online', 'USD', 1000 * c.i,
		       $3::timestamptz - make_interval(days => (c.i * $4)::int), '\x00', $3
		FROM unnest($2::uuid[]) WITH ORDINALITY AS c(id, i)`, tenant, ids, b.clock.Now(), agoStep)
	require.NoError(tb, err)
	_, err = b.pool.Exec(ctx, `INSERT INTO segment_schedule (tenant_id, next_run_time) VALUES ($1, $2)`, tenant, b.clock.Now())
	require.NoError(tb, err)
}

func (b *testBundle) rounds(tb testing.TB, tenant uuid.UUID) int {
	tb.Helper()
	return b.count(tb, `SELECT rounds FROM segment_schedule WHERE tenant_id = $1`, tenant)
}

// requireEventChains requires that each customer's segment.changed events
// are one per change: versions 1, 2, … in outbox order, each naming the
// segment the previous one moved to, the last matching the stored segment.
func (b *testBundle) requireEventChains(tb testing.TB, tenant uuid.UUID) {
	tb.Helper()
	last := map[string]*customerv1.SegmentChanged{}
	for _, ev := range b.segmentEvents(tb, tenant) {
		prev := last[ev.GetCustomerId()]
		wantVersion, wantPrevious := int64(1), customerv1.Segment_SEGMENT_UNSPECIFIED
		if prev != nil {
			wantVersion, wantPrevious = prev.GetAggregateVersion()+1, prev.GetSegment()
		}
		require.Equal(tb, wantVersion, ev.GetAggregateVersion(), "customer %s", ev.GetCustomerId())
		require.Equal(tb, wantPrevious, ev.GetPreviousSegment(), "customer %s", ev.GetCustomerId())
		require.NotEqual(tb, ev.GetPreviousSegment(), ev.GetSegment(), "an event is a change")
		last[ev.GetCustomerId()] = ev
	}
	stored := b.count(tb, `SELECT count(*) FROM customer_segments WHERE tenant_id = $1`, tenant)
	require.Len(tb, last, stored, "every stored segment has its events")
	for id, ev := range last {
		got := b.segment(tb, tenant, uuid.MustParse(id))
		require.Equal(tb, ev.GetSegment(), got.GetSegment(), "customer %s", id)
		require.Equal(tb, ev.GetAggregateVersion(), got.GetVersion(), "customer %s", id)
	}
}

// TestRecomputeReplicasRace: two replicas race through the schedule with
// four workers each; every tenant is recomputed once per round, and no
// change is published twice.
func TestRecomputeReplicasRace(t *testing.T) {
	t.Parallel()
	r := setupReplicas(t)
	const tenants, customers, every = 8, 60, 24 * time.Hour
	var ids []uuid.UUID
	for range tenants {
		id := uuid.New()
		r.a.seedTenant(t, id, customers, 7)
		ids = append(ids, id)
	}

	race := func(t *testing.T) int {
		t.Helper()
		var (
			wg    sync.WaitGroup
			total atomic.Int64
		)
		for _, srv := range []*purchase.Server{r.a.server, r.b, r.a.server, r.b, r.a.server, r.b, r.a.server, r.b} {
			wg.Go(func() {
				n, err := srv.RecomputeDue(t.Context(), every)
				if assertNoError(t, err) {
					total.Add(int64(n))
				}
			})
		}
		wg.Wait()
		return int(total.Load())
	}

	require.Equal(t, tenants, race(t), "round 1: each tenant once")
	for _, id := range ids {
		require.Equal(t, 1, r.a.rounds(t, id))
		require.Equal(t, customers, len(r.a.segmentEvents(t, id)), "first round: every customer gets its first segment, once")
		r.a.requireEventChains(t, id)
	}

	r.a.clock.Advance(every - time.Second)
	require.Zero(t, race(t), "not due before the interval")

	// A day on, some customers cross a recency bound: round 2 publishes
	// exactly those changes.
	r.a.clock.Advance(time.Second + days(30))
	require.Equal(t, tenants, race(t), "round 2: each tenant once")
	for _, id := range ids {
		require.Equal(t, 2, r.a.rounds(t, id))
		require.Greater(t, len(r.a.segmentEvents(t, id)), customers, "round 2 moved someone")
		r.a.requireEventChains(t, id)
		require.Zero(t, r.a.recomputeAll(t, id).GetSegmentsChanged(), "the rounds left nothing to change")
	}
}

// TestRunRecompute runs the loop on two replicas: every tenant gets its
// first round once, and the loops stop cleanly with their context.
func TestRunRecompute(t *testing.T) {
	t.Parallel()
	r := setupReplicas(t)
	var ids []uuid.UUID
	for range 3 {
		id := uuid.New()
		r.a.seedTenant(t, id, 20, 30)
		ids = append(ids, id)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 2)
	for _, srv := range []*purchase.Server{r.a.server, r.b} {
		go func() { done <- srv.RunRecompute(ctx, time.Hour) }()
	}
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if r.a.rounds(t, id) != 1 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	cancel()
	for range 2 {
		require.NoError(t, <-done)
	}
	for _, id := range ids {
		require.Equal(t, 1, r.a.rounds(t, id), "the frozen clock made no tenant due again")
		r.a.requireEventChains(t, id)
	}

	require.Error(t, r.b.RunRecompute(t.Context(), 0), "a zero interval is refused")
}

// TestRecomputeRacesPurchases: customers come back with purchases while
// tenant-wide recomputes run. A recompute whose snapshot predates a
// purchase must not overwrite that purchase's segment with the old one;
// in the end every stored segment is current and each change was
// published once, in order.
func TestRecomputeRacesPurchases(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	const n = 40
	// Every seeded customer is lost, but none has a stored segment yet:
	// each recompute proposes "lost" for every customer it sees without
	// one, racing the purchase that makes the customer potential.
	b.seedTenant(t, tenant, n, 0)
	b.clock.Advance(days(400))
	customers := make([]uuid.UUID, 0, n)
	rows, err := b.pool.Query(t.Context(), `SELECT customer_id FROM purchases WHERE tenant_id = $1 ORDER BY customer_id`, tenant)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		customers = append(customers, id)
	}
	require.NoError(t, rows.Err())
	require.Len(t, customers, n)

	var (
		wg   sync.WaitGroup
		stop atomic.Bool
	)
	for range 2 {
		wg.Go(func() {
			for !stop.Load() {
				_, err := b.segments.RecomputeSegments(as(tenant), &customerv1.RecomputeSegmentsRequest{})
				if !assertNoError(t, err) {
					return
				}
			}
		})
	}
	var buyers sync.WaitGroup
	for w := range 4 {
		buyers.Go(func() {
			for i := w; i < n; i += 4 {
				_, err := b.purchases.RecordPurchase(as(tenant, "service"), &customerv1.RecordPurchaseRequest{
					CustomerId: customers[i].String(), Purchase: newPurchase(fmt.Sprintf("BACK-%d", i), 100)})
				assertNoError(t, err)
			}
		})
	}
	buyers.Wait()
	stop.Store(true)
	wg.Wait()

	require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged(), "every stored segment is current")
	for _, c := range customers {
		require.Equal(t, potential, b.segment(t, tenant, c).GetSegment())
	}
	b.requireEventChains(t, tenant)
}

// TestRecomputeNeverOverwritesANewerPurchase makes the race of
// TestRecomputeRacesPurchases happen every time: a tenant-wide recompute is
// held (by a row lock the test takes) after its snapshot and before its
// upsert reaches customer c; meanwhile c's purchase commits and makes c
// potential. The recompute's stale "lost" for c must be dropped, not
// written and not published.
func TestRecomputeNeverOverwritesANewerPurchase(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	tenant := uuid.New()
	b.seedTenant(t, tenant, 2, 0)
	b.clock.Advance(days(400))
	b.recomputeAll(t, tenant) // both lost
	var ids []uuid.UUID
	rows, err := b.pool.Query(t.Context(), `SELECT customer_id FROM customer_segments WHERE tenant_id = $1 ORDER BY customer_id`, tenant)
	require.NoError(t, err)
	for rows.Next() {
		var id uuid.UUID
		require.NoError(t, rows.Scan(&id))
		ids = append(ids, id)
	}
	require.NoError(t, rows.Err())
	// The recompute upserts in customer order: first d, then c. d's stored
	// scores are made stale so the recompute rewrites d; c's row is removed
	// so the recompute proposes c again.
	d, c := ids[0], ids[1]
	_, err = b.pool.Exec(t.Context(), `UPDATE customer_segments SET recency_score = 3 WHERE tenant_id = $1 AND customer_id = $2`, tenant, d)
	require.NoError(t, err)
	_, err = b.pool.Exec(t.Context(), `DELETE FROM customer_segments WHERE tenant_id = $1 AND customer_id = $2`, tenant, c)
	require.NoError(t, err)

	hold, err := b.pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = hold.Rollback(t.Context()) }()
	_, err = hold.Exec(t.Context(), `SELECT 1 FROM customer_segments WHERE tenant_id = $1 AND customer_id = $2 FOR UPDATE`, tenant, d)
	require.NoError(t, err)

	recomputed := make(chan *customerv1.RecomputeSegmentsResponse, 1)
	go func() {
		resp, err := b.segments.RecomputeSegments(as(tenant), &customerv1.RecomputeSegmentsRequest{})
		assertNoError(t, err)
		recomputed <- resp
	}()
	require.Eventually(t, func() bool {
		return b.count(t, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%SegmentRecompute%'`) == 1
	}, 10*time.Second, 5*time.Millisecond, "the recompute waits on d")

	b.record(t, tenant, c, newPurchase("BACK", 100))
	require.Equal(t, potential, b.segment(t, tenant, c).GetSegment())
	require.NoError(t, hold.Commit(t.Context()))

	resp := <-recomputed
	require.Equal(t, int64(0), resp.GetSegmentsChanged(), "d's scores changed but not its segment; c's stale result was dropped")
	require.Equal(t, potential, b.segment(t, tenant, c).GetSegment(), "the purchase's segment stands")
	require.Zero(t, b.recomputeAll(t, tenant).GetSegmentsChanged())
	evs := b.segmentEvents(t, tenant)
	require.Equal(t, customerv1.Segment_SEGMENT_POTENTIAL, evs[len(evs)-1].GetSegment(), "the last event is the purchase's")
}
