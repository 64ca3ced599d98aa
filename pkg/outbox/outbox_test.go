package outbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rapporthq/rapport/pkg/pgdb"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
)

// inRolledBackTx runs fn in a transaction that is always rolled back: a
// store test sees its own writes and leaves nothing behind.
func inRolledBackTx(t *testing.T, pool *pgxpool.Pool, fn func(tx pgx.Tx)) {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(t.Context())) }()
	fn(tx)
}

func countRows(t *testing.T, tx pgx.Tx, ids ...uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, tx.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE id = ANY($1)", ids).Scan(&n))
	return n
}

func TestWrite(t *testing.T) {
	t.Parallel()
	pool := pgdbtest.NewPool(t, pgdbtest.Spec{Schema: testSchema})

	rejects := []struct {
		name   string
		field  string
		mutate func(*Event)
	}{
		{"RejectsSubjectWithoutPrefix", "Subject", func(e *Event) { e.Subject = "customer.customer.created" }},
		{"RejectsSubjectWithTooFewTokens", "Subject", func(e *Event) { e.Subject = "rapport.customer.created" }},
		{"RejectsSubjectWithTooManyTokens", "Subject", func(e *Event) { e.Subject = "rapport.customer.customer.created.now" }},
		{"RejectsSubjectWithCapitals", "Subject", func(e *Event) { e.Subject = "rapport.customer.Customer.created" }},
		{"RejectsSubjectWithWildcard", "Subject", func(e *Event) { e.Subject = "rapport.customer.*.created" }},
		{"RejectsEmptySubject", "Subject", func(e *Event) { e.Subject = "" }},
		{"RejectsEmptyTenant", "TenantID", func(e *Event) { e.TenantID = "" }},
		{"RejectsTenantThatIsNotAUUID", "TenantID", func(e *Event) { e.TenantID = "acme" }},
		{"RejectsNilTenant", "TenantID", func(e *Event) { e.TenantID = uuid.Nil.String() }},
		{"RejectsVersionZero", "AggregateVersion", func(e *Event) { e.AggregateVersion = 0 }},
		{"RejectsNegativeVersion", "AggregateVersion", func(e *Event) { e.AggregateVersion = -3 }},
		{"RejectsEmptyAggregateType", "AggregateType", func(e *Event) { e.AggregateType = "" }},
		{"RejectsEmptyAggregateID", "AggregateID", func(e *Event) { e.AggregateID = "" }},
		{"RejectsNewlineInAggregateID", "AggregateID", func(e *Event) { e.AggregateID = "w1\r\nNats-Msg-Id: x" }},
		{"RejectsOversizedAggregateID", "AggregateID", func(e *Event) { e.AggregateID = strings.Repeat("w", maxAggregateLen+1) }},
		{"RejectsNilPayload", "Payload", func(e *Event) { e.Payload = nil }},
		{"RejectsTypedNilPayload", "Payload", func(e *Event) { e.Payload = (*wrapperspb.StringValue)(nil) }},
		{"RejectsOversizedPayload", "Payload", func(e *Event) { e.Payload = wrapperspb.Bytes(make([]byte, MaxPayloadSize)) }},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := testEvent("w1", 1)
			tc.mutate(&e)
			inRolledBackTx(t, pool, func(tx pgx.Tx) {
				err := Write(t.Context(), tx, e)
				var verr *ValidationError
				require.ErrorAs(t, err, &verr)
				require.Equal(t, tc.field, verr.Field)
				require.Equal(t, 0, verr.Index)
				require.Zero(t, countRows(t, tx, e.ID), "rows written")
			})
		})
	}

	t.Run("RejectsTheWholeCallWhenOneEventIsBad", func(t *testing.T) {
		t.Parallel()
		good, bad := testEvent("w1", 1), testEvent("w1", 2)
		bad.TenantID = ""
		inRolledBackTx(t, pool, func(tx pgx.Tx) {
			err := Write(t.Context(), tx, good, bad)
			var verr *ValidationError
			require.ErrorAs(t, err, &verr)
			require.Equal(t, 1, verr.Index)
			require.Equal(t, "TenantID", verr.Field)
			require.Zero(t, countRows(t, tx, good.ID, bad.ID), "rows written")
		})
	})

	t.Run("RejectsNilTransaction", func(t *testing.T) {
		t.Parallel()
		require.Error(t, Write(t.Context(), nil, testEvent("w1", 1)))
	})

	t.Run("RejectsAReusedEventID", func(t *testing.T) {
		t.Parallel()
		first := testEvent("w1", 1)
		again := testEvent("w1", 2)
		again.ID = first.ID
		inRolledBackTx(t, pool, func(tx pgx.Tx) {
			require.NoError(t, Write(t.Context(), tx, first))
			err := Write(t.Context(), tx, again)
			require.ErrorIs(t, err, pgdb.ErrAlreadyExists)
		})
	})

	t.Run("StoresTheEventWithDefaultsFilledIn", func(t *testing.T) {
		t.Parallel()
		payload, err := structpb.NewStruct(map[string]any{"b": 2, "a": "x", "c": []any{true}})
		require.NoError(t, err)
		e := Event{
			TenantID:         testTenant,
			Subject:          "rapport.customer.customer.created",
			AggregateType:    "customer",
			AggregateID:      "0190b5c4-7d2e-7000-8000-0000000000aa",
			AggregateVersion: 7,
			Payload:          payload,
		}
		before := time.Now()
		inRolledBackTx(t, pool, func(tx pgx.Tx) {
			require.NoError(t, Write(t.Context(), tx, e))
			rows, err := queries.OutboxPending(t.Context(), tx, 10)
			require.NoError(t, err)
			require.Len(t, rows, 1)
			got := rows[0]
			require.Equal(t, uuid.Version(7), got.ID.Version(), "generated id is a UUIDv7")
			require.Equal(t, testTenant, got.TenantID.String())
			require.Equal(t, e.Subject, got.Subject)
			require.Equal(t, "google.protobuf.Struct", got.EventType)
			require.Equal(t, "customer", got.AggregateType)
			require.Equal(t, e.AggregateID, got.AggregateID)
			require.Equal(t, int64(7), got.AggregateVersion)
			require.WithinRange(t, got.OccurredAt, before.Add(-time.Second), time.Now().Add(time.Second))
			// Deterministic: the same message always gives the same bytes.
			want, err := proto.MarshalOptions{Deterministic: true}.Marshal(payload)
			require.NoError(t, err)
			require.Equal(t, want, got.Payload)
		})
	})

	t.Run("KeepsGivenIDAndOccurredAtInArgumentOrder", func(t *testing.T) {
		t.Parallel()
		at := time.Date(2026, 3, 1, 12, 30, 0, 123456000, time.FixedZone("CET", 3600))
		e1, e2 := testEvent("w1", 1), testEvent("w1", 2)
		e1.OccurredAt, e2.OccurredAt = at, at
		inRolledBackTx(t, pool, func(tx pgx.Tx) {
			require.NoError(t, Write(t.Context(), tx, e1, e2))
			rows, err := queries.OutboxPending(t.Context(), tx, 10)
			require.NoError(t, err)
			require.Len(t, rows, 2)
			require.Equal(t, []uuid.UUID{e1.ID, e2.ID}, []uuid.UUID{rows[0].ID, rows[1].ID}, "seq follows argument order")
			require.True(t, at.Equal(rows[0].OccurredAt), "occurred_at %s, want %s", rows[0].OccurredAt, at)
		})
	})

	t.Run("ManyEventsInOneWriteKeepTheirOrder", func(t *testing.T) {
		t.Parallel()
		events := make([]Event, 1000)
		for i := range events {
			events[i] = testEvent(fmt.Sprintf("many-%d", i%7), int64(i/7+1))
		}
		inRolledBackTx(t, pool, func(tx pgx.Tx) {
			require.NoError(t, Write(t.Context(), tx, events...))
			rows, err := tx.Query(t.Context(), "SELECT id FROM outbox WHERE aggregate_id LIKE 'many-%' ORDER BY seq")
			require.NoError(t, err)
			got, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
			require.NoError(t, err)
			want := make([]uuid.UUID, len(events))
			for i, e := range events {
				want[i] = e.ID
			}
			require.Equal(t, want, got, "seq follows argument order across a COPY")
		})
	})

	t.Run("RollsBackWithTheTransaction", func(t *testing.T) {
		t.Parallel()
		e := testEvent("w1", 1)
		wantErr := errors.New("business rule refused")
		err := pgdb.InTx(t.Context(), pool, func(tx pgx.Tx) error {
			require.NoError(t, Write(t.Context(), tx, e))
			return wantErr
		})
		require.ErrorIs(t, err, wantErr)
		var n int
		require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM outbox WHERE id = $1", e.ID).Scan(&n))
		require.Zero(t, n)
	})
}
