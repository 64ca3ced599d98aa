package schedule

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// The packages' own tests run Pass against Postgres with rounds that
// succeed; these cover what they cannot make happen: a failing round, claim
// or postponement. Rounds run in real transactions: each writes its tenant
// to the table rounds, so what a failed round wrote is seen to roll back.

// newDB returns a pool on a fresh database with the table rounds.
func newDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgdbtest.Pool(t, pgdbtest.NewDatabase(t), "schedtest")
	_, err := pool.Exec(context.Background(), `CREATE SCHEMA schedtest; CREATE TABLE schedtest.rounds (tenant uuid PRIMARY KEY)`)
	require.NoError(t, err)
	return pool
}

// committed returns the tenants whose rounds committed.
func committed(t *testing.T, pool *pgxpool.Pool) []uuid.UUID {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT tenant FROM rounds`)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	require.NoError(t, err)
	return out
}

type postponed struct {
	tenant uuid.UUID
	next   time.Time
}

// fake claims the tenants in due in turn, then none; a tenant in fail
// fails its round.
type fake struct {
	due       []uuid.UUID
	fail      map[uuid.UUID]error
	claimErr  error
	postErr   error
	ran       []uuid.UUID
	postponed []postponed
}

func (f *fake) round(every time.Duration, t *testing.T, now time.Time) Round {
	return Round{
		Claim: func(_ context.Context, _ pgx.Tx, at time.Time) (uuid.UUID, bool, error) {
			require.Equal(t, now, at)
			if len(f.due) == 0 {
				return uuid.Nil, false, f.claimErr
			}
			tenant := f.due[0]
			f.due = f.due[1:]
			return tenant, true, nil
		},
		Run: func(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, at, next time.Time) error {
			require.Equal(t, now, at)
			require.Equal(t, now.Add(every), next)
			f.ran = append(f.ran, tenant)
			_, err := tx.Exec(ctx, `INSERT INTO rounds (tenant) VALUES ($1)`, tenant)
			require.NoError(t, err)
			return f.fail[tenant]
		},
		Postpone: func(_ context.Context, tenant uuid.UUID, next time.Time) error {
			f.postponed = append(f.postponed, postponed{tenant, next})
			return f.postErr
		},
	}
}

func TestPass(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now.In(time.FixedZone("X", 3600)) } // Pass works in UTC
	a, b, c := uuid.New(), uuid.New(), uuid.New()
	errA, errC := errors.New("a failed"), errors.New("c failed")

	t.Run("FailingRoundsArePostponedAndThePassGoesOn", func(t *testing.T) {
		for _, every := range []time.Duration{time.Hour, 10 * time.Second} {
			db := newDB(t)
			f := &fake{due: []uuid.UUID{a, b, c}, fail: map[uuid.UUID]error{a: errA, c: errC}}
			n, err := Pass(context.Background(), db, clock, every, f.round(every, t, now))
			require.Equal(t, 1, n)
			require.ErrorIs(t, err, errA)
			require.ErrorIs(t, err, errC)
			require.Equal(t, []uuid.UUID{a, b, c}, f.ran)
			require.Equal(t, []uuid.UUID{b}, committed(t, db), "b's round commits; a's and c's roll back")
			wait := min(every, time.Minute)
			require.Equal(t, []postponed{{a, now.Add(wait)}, {c, now.Add(wait)}}, f.postponed)
		}
	})

	t.Run("AFailedClaimEndsThePass", func(t *testing.T) {
		errClaim := errors.New("claim failed")
		f := &fake{due: []uuid.UUID{a, b}, fail: map[uuid.UUID]error{a: errA}, claimErr: errClaim}
		n, err := Pass(context.Background(), newDB(t), clock, time.Hour, f.round(time.Hour, t, now))
		require.Equal(t, 1, n)
		require.ErrorIs(t, err, errA)
		require.ErrorIs(t, err, errClaim)
		require.Len(t, f.postponed, 1, "a claim that failed has no tenant to postpone")
	})

	t.Run("AFailedPostponementEndsThePass", func(t *testing.T) {
		errPost := errors.New("postpone failed")
		f := &fake{due: []uuid.UUID{a, b}, fail: map[uuid.UUID]error{a: errA}, postErr: errPost}
		n, err := Pass(context.Background(), newDB(t), clock, time.Hour, f.round(time.Hour, t, now))
		require.Zero(t, n)
		require.ErrorIs(t, err, errA)
		require.ErrorIs(t, err, errPost)
		require.Equal(t, []uuid.UUID{a}, f.ran, "b waits for the next pass")
	})
}

func TestUntilNextDue(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	due := func(next time.Time, ok bool, err error) func(context.Context) (time.Time, bool, error) {
		return func(context.Context) (time.Time, bool, error) { return next, ok, err }
	}
	for _, tc := range []struct {
		name    string
		every   time.Duration
		nextDue func(context.Context) (time.Time, bool, error)
		want    time.Duration
	}{
		{"DueSoon", time.Hour, due(now.Add(20*time.Second), true, nil), 20 * time.Second},
		{"AtLeastASecond", time.Hour, due(now.Add(-time.Hour), true, nil), time.Second},
		{"AtMostAMinute", time.Hour, due(now.Add(time.Hour), true, nil), time.Minute},
		{"EmptyScheduleWaitsTheMost", time.Hour, due(time.Time{}, false, nil), time.Minute},
		{"FailureWaitsTheMost", time.Hour, due(now, true, errors.New("down")), time.Minute},
		{"CappedByEvery", 500 * time.Millisecond, due(now.Add(time.Hour), true, nil), 500 * time.Millisecond},
		{"FloorCappedByEvery", 500 * time.Millisecond, due(now.Add(-time.Hour), true, nil), 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, untilNextDue(context.Background(), tc.every, tc.nextDue, clock))
		})
	}
}
