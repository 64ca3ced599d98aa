// Package outbox owns the transactional outbox of a Rapport service: Write
// adds events to the outbox table in the caller's transaction, so an event
// exists if and only if its change committed, and Relay publishes committed
// events to JetStream, in order per aggregate, at least once, with the event
// id as Nats-Msg-Id so the stream's duplicate window turns "at least once"
// into "stored once" (RELIABILITY.md §1.2).
//
// It must not consume events (the inbox does), decide streams (natsx does),
// or be bypassed: no service inserts into the outbox table itself.
//
// # Why there is no cursor
//
// seq is an identity column, so each row gets its number at INSERT time, but
// transactions commit in any order. A relay that remembers "published up to
// seq N" and asks for seq > N skips every row that was still uncommitted,
// with a lower seq, when it advanced past N: such a row becomes visible later
// and is never asked for again (Watermill #311; the OUTBOX-02 negative
// control in this package's tests shows it). The relay therefore keeps no
// position at all: it reads rows WHERE published_at IS NULL ORDER BY seq and
// marks what JetStream acknowledged. A row that commits late is simply
// pending on the next poll. This also means an open transaction never holds
// back anyone else's events, and a database restore (which restarts xids) needs
// no cursor reset.
//
// # Why order per aggregate holds
//
// A writer changes an aggregate under its row lock (SELECT … FOR UPDATE, or
// UPDATE … RETURNING version) and writes the event in the same transaction.
// Version n+1 can only take the lock once version n's transaction committed,
// so n+1's INSERT, and hence its seq, comes after n was already committed and
// visible (identity values are never cached per session here: the default
// CACHE 1 hands them out in call order across sessions). When a relay's batch
// holds n+1, n was visible to the same query: either still pending, so in the
// batch ahead of n+1 (the batch is a prefix of the pending rows by seq), or
// already marked, which happens only after its PubAck. The relay publishes a
// batch one event at a time, awaiting each PubAck, and stops at the first
// failure, so n is stored before n+1. Events of different aggregates may be
// published out of seq order; nothing promises otherwise.
//
// # One relay at a time, and what happens when two overlap
//
// Replicas elect a leader with a session-level advisory lock taken on a
// dedicated connection; the others retry every PollInterval. A crash between
// PubAck and marking, or a deposed leader that has not noticed yet (its
// session died mid-batch), only publishes again: JetStream drops the copy
// inside its duplicate window (natsx.DuplicateWindow), so the first stored
// copy of every event keeps the order argued above and no copy is stored
// twice.
//
// The relay polls; it does not LISTEN. NOTIFY takes a database-wide lock at
// commit that serialises every committing transaction that used it, a cost
// on every business write to save at most one PollInterval of latency.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/outbox/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/pgdb"
)

// Headers the relay adds to every message besides natsx's CloudEvents ones,
// so a consumer can order and scope an event before decoding its payload.
const (
	HeaderAggregateType    = "rapport-aggregate-type"
	HeaderAggregateID      = "rapport-aggregate-id"
	HeaderAggregateVersion = "rapport-aggregate-version"
)

const (
	// MaxPayloadSize bounds an event's marshalled payload. The rest of
	// natsx.MaxMsgSize is left to the headers. An event JetStream would
	// refuse must be refused here, at write time: in the outbox it would
	// block every later event of the service forever.
	MaxPayloadSize = natsx.MaxMsgSize - 8<<10
	// maxAggregateLen bounds AggregateType and AggregateID, which travel in
	// headers.
	maxAggregateLen = 256
)

// Event is one fact to publish.
type Event struct {
	// ID is the event id, and also ce-id and Nats-Msg-Id. Zero means a new
	// UUIDv7.
	ID uuid.UUID
	// TenantID is the tenant's UUID.
	TenantID string
	// Subject is rapport.<service>.<aggregate>.<event>, past tense, e.g.
	// rapport.customer.customer.created.
	Subject string
	// AggregateType and AggregateID name the aggregate whose change this
	// event records; AggregateVersion is its version after the change
	// (> 0). Consumers order an aggregate's events by it.
	AggregateType    string
	AggregateID      string
	AggregateVersion int64
	// Payload is marshalled deterministically; its full name is the event
	// type (ce-type).
	Payload proto.Message
	// OccurredAt is when the change happened; zero means now. Stored in UTC
	// with microsecond precision.
	OccurredAt time.Time
}

// ValidationError says which field of which event Write refused.
type ValidationError struct {
	Index  int    // position in Write's arguments
	Field  string // Event field name
	Reason string
}

func (e *ValidationError) Error() string {
	return fmt.Sprintf("outbox: event %d: %s: %s", e.Index, e.Field, e.Reason)
}

var queries = dbgen.New()

// Write adds events to the outbox in tx, the caller's transaction, in
// argument order: they are published when, and only if, tx commits. Every
// event is validated before any is written, so a *ValidationError leaves the
// outbox untouched. A reused event ID fails with pgdb.ErrAlreadyExists.
//
// Write does not lock anything. Per-aggregate order relies on the caller
// holding the aggregate's row lock in tx while it writes the aggregate's
// events (see the package documentation).
func Write(ctx context.Context, tx pgx.Tx, events ...Event) error {
	if tx == nil {
		return errors.New("outbox: write: nil transaction")
	}
	now := time.Now().UTC()
	rows := make([]dbgen.OutboxInsertParams, 0, len(events))
	for i, e := range events {
		row, err := prepare(i, e, now)
		if err != nil {
			return err
		}
		rows = append(rows, row)
	}
	if len(rows) == 1 {
		if err := queries.OutboxInsert(ctx, tx, rows[0]); err != nil {
			return fmt.Errorf("outbox: write event %s: %w", rows[0].ID, pgdb.Classify(err))
		}
		return nil
	}
	// Many events (a tenant-wide recompute writes thousands) go in one COPY:
	// one round trip instead of one per event. COPY inserts in order, so seq
	// still follows the order given, and per-aggregate order with it.
	many := make([]dbgen.OutboxInsertManyParams, len(rows))
	for i, row := range rows {
		many[i] = dbgen.OutboxInsertManyParams(row)
	}
	if _, err := queries.OutboxInsertMany(ctx, tx, many); err != nil {
		return fmt.Errorf("outbox: write %d events: %w", len(rows), pgdb.Classify(err))
	}
	return nil
}

// prepare validates e and turns it into a row.
func prepare(i int, e Event, now time.Time) (dbgen.OutboxInsertParams, error) {
	bad := func(field, format string, a ...any) (dbgen.OutboxInsertParams, error) {
		return dbgen.OutboxInsertParams{}, &ValidationError{Index: i, Field: field, Reason: fmt.Sprintf(format, a...)}
	}

	id := e.ID
	if id == uuid.Nil {
		var err error
		if id, err = uuid.NewV7(); err != nil {
			return dbgen.OutboxInsertParams{}, fmt.Errorf("outbox: event %d: new id: %w", i, err)
		}
	}
	if e.TenantID == "" {
		return bad("TenantID", "empty")
	}
	tenant, err := uuid.Parse(e.TenantID)
	if err != nil || tenant == uuid.Nil {
		return bad("TenantID", "not a non-nil UUID")
	}
	if !natsx.ValidSubject(e.Subject) {
		return bad("Subject", "%q is not %s.<service>.<aggregate>.<event> in lowercase letters, digits and '_'",
			e.Subject, natsx.SubjectPrefix)
	}
	if reason := checkHeaderValue(e.AggregateType); reason != "" {
		return bad("AggregateType", "%s", reason)
	}
	if reason := checkHeaderValue(e.AggregateID); reason != "" {
		return bad("AggregateID", "%s", reason)
	}
	if e.AggregateVersion <= 0 {
		return bad("AggregateVersion", "%d, want > 0", e.AggregateVersion)
	}
	if e.Payload == nil || !e.Payload.ProtoReflect().IsValid() {
		return bad("Payload", "nil message")
	}
	payload, err := proto.MarshalOptions{Deterministic: true}.Marshal(e.Payload)
	if err != nil {
		return bad("Payload", "marshal: %v", err)
	}
	if len(payload) > MaxPayloadSize {
		return bad("Payload", "%d bytes, want at most %d", len(payload), MaxPayloadSize)
	}
	occurred := e.OccurredAt
	if occurred.IsZero() {
		occurred = now
	}
	return dbgen.OutboxInsertParams{
		ID:               id,
		TenantID:         tenant,
		Subject:          e.Subject,
		EventType:        string(proto.MessageName(e.Payload)),
		AggregateType:    e.AggregateType,
		AggregateID:      e.AggregateID,
		AggregateVersion: e.AggregateVersion,
		Payload:          payload,
		OccurredAt:       occurred.UTC(),
	}, nil
}

// checkHeaderValue refuses what cannot travel as a NATS header value: a
// control character (CR or LF would end the header) or an oversized value.
func checkHeaderValue(v string) string {
	if v == "" {
		return "empty"
	}
	if len(v) > maxAggregateLen {
		return fmt.Sprintf("%d bytes, want at most %d", len(v), maxAggregateLen)
	}
	if !utf8.ValidString(v) {
		return fmt.Sprintf("%q is not valid UTF-8", v)
	}
	for _, r := range v {
		if unicode.IsControl(r) {
			return fmt.Sprintf("%q holds a control character", v)
		}
	}
	return ""
}
