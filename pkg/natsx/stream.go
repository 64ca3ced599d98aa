package natsx

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream limits required by RELIABILITY.md §1.3.
const (
	// DuplicateWindow is how long the stream remembers a Nats-Msg-Id. It
	// must cover the outbox relay's retry horizon: a relay that crashes
	// between PubAck and marking the row sent republishes within it, and
	// the stream drops the copy.
	DuplicateWindow = 5 * time.Minute
	// MaxMsgSize bounds one event (payload plus headers). It equals the
	// server's default max_payload, so an oversized event fails at publish
	// time in the relay, never later in a consumer.
	MaxMsgSize = 1 << 20
	// MaxAge is how long events stay replayable, e.g. for a consumer that
	// was down or a projection being rebuilt.
	MaxAge = 7 * 24 * time.Hour
)

// StreamConfig is the one stream of a service: every subject under
// rapport.<service>.>, on file storage, with limits retention so a new
// consumer can replay what older ones already acked. replicas is 1 on a
// single node and 3 in a Kubernetes cluster; below 1 means 1.
//
// StreamConfig does not validate service (EnsureStream does). A test that
// needs another Duplicates window (NATS-01) edits the returned value.
func StreamConfig(service string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        StreamName(service),
		Description: "Rapport " + service + " events",
		Subjects:    []string{streamSubjects(service)},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxAge:      MaxAge,
		MaxMsgSize:  MaxMsgSize,
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Duplicates:  DuplicateWindow,
		// Explicit, not left to the zero value: async persistence acks a
		// publish before it is written, which is what SyncAlways prevents.
		PersistMode: jetstream.DefaultPersistMode,
	}
}

// EnsureStream creates the service's stream or updates it to StreamConfig.
// Every instance of a service may call it at start: it is idempotent, and a
// change the server cannot apply in place (storage type, for one) fails
// instead of silently keeping the old stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, service string, replicas int) (jetstream.Stream, error) {
	if err := checkToken("service", service); err != nil {
		return nil, fmt.Errorf("ensure stream: %w", err)
	}
	cfg := StreamConfig(service, replicas)
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// CheckStreamConfig reports every way cfg breaks RELIABILITY.md §1.3. Give
// it what the server returns (stream.Info(ctx).Config), so defaults the
// server filled in are checked too; NATS-05 runs it on every stream.
func CheckStreamConfig(cfg jetstream.StreamConfig) error {
	var errs []error
	fail := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	service, ok := strings.CutPrefix(cfg.Name, "RAPPORT_")
	if !ok || checkToken("service", strings.ToLower(service)) != nil || service != strings.ToUpper(service) {
		fail("name %q is not RAPPORT_<SERVICE>", cfg.Name)
	} else if want := []string{streamSubjects(strings.ToLower(service))}; !slices.Equal(cfg.Subjects, want) {
		fail("subjects %q, want %q", cfg.Subjects, want)
	}
	if cfg.Storage != jetstream.FileStorage {
		fail("storage %s, want file: memory does not survive a restart", cfg.Storage)
	}
	if cfg.PersistMode != jetstream.DefaultPersistMode {
		fail("persist mode %s, want default: async acks before the write", cfg.PersistMode)
	}
	if cfg.NoAck {
		fail("no_ack set: publishers would never learn of a duplicate or a failure")
	}
	if cfg.Retention != jetstream.LimitsPolicy {
		fail("retention %s, want limits: acked events must stay replayable", cfg.Retention)
	}
	if cfg.Duplicates < DuplicateWindow {
		fail("duplicate window %s, want at least %s (the relay's retry horizon)", cfg.Duplicates, DuplicateWindow)
	}
	if cfg.MaxMsgSize <= 0 || cfg.MaxMsgSize > MaxMsgSize {
		fail("max message size %d, want 1..%d", cfg.MaxMsgSize, MaxMsgSize)
	}
	if cfg.MaxAge <= 0 {
		fail("max age unlimited, want a bound (%s)", MaxAge)
	}
	// Raft needs a majority: R2 loses availability with either node, so it
	// is never what was meant.
	if cfg.Replicas != 1 && (cfg.Replicas < 3 || cfg.Replicas%2 == 0) {
		fail("replicas %d, want 1 (single node) or an odd number ≥ 3 (cluster)", cfg.Replicas)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return nil
}

// EnsureStreamExists creates service's stream if it is missing, for a
// consumer of another service's events that may start before that service
// ever has: events published later are then kept for it. It never updates
// an existing stream (its owner's EnsureStream decides the configuration),
// and it creates it with the very StreamConfig the owner ensures, so the
// owner's later EnsureStream finds nothing to change.
func EnsureStreamExists(ctx context.Context, js jetstream.JetStream, service string, replicas int) error {
	if err := checkToken("service", service); err != nil {
		return fmt.Errorf("ensure stream: %w", err)
	}
	name := StreamName(service)
	_, err := js.Stream(ctx, name)
	if err == nil {
		return nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("look up stream %s: %w", name, err)
	}
	_, err = js.CreateStream(ctx, StreamConfig(service, replicas))
	if err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("create stream %s: %w", name, err)
	}
	return nil
}
