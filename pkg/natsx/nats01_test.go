package natsx_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
)

// publishEvent sends one event the way the outbox relay does: the outbox
// row id as both Nats-Msg-Id and ce-id.
func publishEvent(ctx context.Context, js jetstream.JetStream, subject, eventID string) (*jetstream.PubAck, error) {
	msg := nats.NewMsg(subject)
	msg.Header.Set(natsx.HeaderMsgID, eventID)
	msg.Header.Set(natsx.HeaderID, eventID)
	msg.Header.Set(natsx.HeaderSpecVersion, natsx.SpecVersion)
	msg.Header.Set(natsx.HeaderContentType, natsx.ContentTypeProtobuf)
	msg.Data = []byte(eventID)
	return js.PublishMsg(ctx, msg)
}

func publish(ctx context.Context, t testing.TB, js jetstream.JetStream, subject, eventID string) *jetstream.PubAck {
	t.Helper()
	ack, err := publishEvent(ctx, js, subject, eventID)
	require.NoError(t, err)
	return ack
}

func storedMsgs(ctx context.Context, t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	return info.State.Msgs
}

// TestNATS01 is RELIABILITY.md NATS-01: the stream's duplicate window absorbs
// a relay's republishing, across a broker restart, and only inside the
// window.
func TestNATS01(t *testing.T) {
	t.Parallel()

	t.Run("StoresOneOfTenCopiesAndStillAfterRestart", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s := natstest.Start(t)
		nc, js := natstest.Connect(t, s)
		_, err := natsx.EnsureStream(ctx, js, "ticket", 1)
		require.NoError(t, err)
		subject, err := natsx.Subject("ticket", "ticket", "resolved")
		require.NoError(t, err)
		const eventID = "0192f0a4-7b1e-7c3d-9a55-3b1f2c4d5e6f"

		first := publish(ctx, t, js, subject, eventID)
		require.False(t, first.Duplicate)
		duplicates := 0
		for range 9 {
			ack := publish(ctx, t, js, subject, eventID)
			if ack.Duplicate {
				duplicates++
			}
			// The copy is acknowledged with the original's sequence, so a
			// relay can treat it as a success.
			require.Equal(t, first.Sequence, ack.Sequence)
		}
		require.Equal(t, 9, duplicates)
		require.Equal(t, uint64(1), storedMsgs(ctx, t, js, "RAPPORT_TICKET"))

		natstest.Restart(t, s)
		// The existing connection finds the restarted server by itself.
		require.Eventually(t, func() bool {
			return nc.Stats().Reconnects >= 1 && nc.IsConnected()
		}, 10*time.Second, 10*time.Millisecond)

		again := publish(ctx, t, js, subject, eventID)
		require.True(t, again.Duplicate, "the duplicate window was lost in the restart")
		require.Equal(t, first.Sequence, again.Sequence)
		require.Equal(t, uint64(1), storedMsgs(ctx, t, js, "RAPPORT_TICKET"))

		// Control: the restarted stream still stores a new event.
		other := publish(ctx, t, js, subject, "0192f0a4-7b1e-7c3d-9a55-3b1f2c4d5e70")
		require.False(t, other.Duplicate)
		require.Equal(t, uint64(2), storedMsgs(ctx, t, js, "RAPPORT_TICKET"))
	})

	t.Run("StoresAgainAfterTheWindow", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		s := natstest.Start(t)
		_, js := natstest.Connect(t, s)
		// The production window is 5 min; a 1 s one shows the same rule
		// ends where it should.
		const window = time.Second
		cfg := natsx.StreamConfig("loyalty", 1)
		cfg.Duplicates = window
		_, err := js.CreateStream(ctx, cfg)
		require.NoError(t, err)
		subject, err := natsx.Subject("loyalty", "points", "earned")
		require.NoError(t, err)
		const eventID = "0192f0a4-8000-7000-8000-000000000001"

		start := time.Now()
		first := publish(ctx, t, js, subject, eventID)
		require.False(t, first.Duplicate)
		require.True(t, publish(ctx, t, js, subject, eventID).Duplicate)

		// Resend until it is stored again; every resend inside the window
		// must still be a duplicate.
		// The condition runs off the test goroutine, so it keeps errors
		// instead of calling require.
		var stored *jetstream.PubAck
		var pubErr error
		require.Eventually(t, func() bool {
			ack, err := publishEvent(ctx, js, subject, eventID)
			if err != nil {
				pubErr = err
				return true
			}
			if !ack.Duplicate {
				stored = ack
			}
			return stored != nil
		}, 10*time.Second, 50*time.Millisecond)
		require.NoError(t, pubErr)
		require.GreaterOrEqual(t, time.Since(start), window, "stored again inside the window")
		require.Greater(t, stored.Sequence, first.Sequence)
		require.Equal(t, uint64(2), storedMsgs(ctx, t, js, "RAPPORT_LOYALTY"))
	})
}
