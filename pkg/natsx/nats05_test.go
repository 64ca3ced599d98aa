package natsx_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/natsx/natstest"
)

// TestNATS05 checks RELIABILITY.md NATS-05 on what the server reports back,
// not on what was asked for: server defaults and silent rewrites (BackOff
// replacing AckWait) only show there.
func TestNATS05(t *testing.T) {
	t.Parallel()

	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)

	t.Run("ServerSyncsAlways", func(t *testing.T) {
		t.Parallel()
		varz, err := s.Varz(nil)
		require.NoError(t, err)
		require.NotNil(t, varz.JetStream.Config, "jetstream disabled")
		require.True(t, varz.JetStream.Config.SyncAlways, "sync_interval is not always")
		require.NotEmpty(t, varz.JetStream.Config.StoreDir)
	})

	t.Run("ServerIsNewEnough", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, server.VERSION, nc.ConnectedServerVersion())
		require.NoError(t, natsx.CheckServer(nc))
	})

	t.Run("StreamMatchesRules", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		stream, err := natsx.EnsureStream(ctx, js, "ticket", 1)
		require.NoError(t, err)
		// A second service instance starting must not fail or change it.
		_, err = natsx.EnsureStream(ctx, js, "ticket", 1)
		require.NoError(t, err)

		info, err := stream.Info(ctx)
		require.NoError(t, err)
		got := info.Config
		require.Equal(t, "RAPPORT_TICKET", got.Name)
		require.Equal(t, []string{"rapport.ticket.>"}, got.Subjects)
		require.Equal(t, jetstream.FileStorage, got.Storage)
		require.Equal(t, jetstream.DefaultPersistMode, got.PersistMode)
		require.Equal(t, natsx.DuplicateWindow, got.Duplicates)
		require.Equal(t, int32(natsx.MaxMsgSize), got.MaxMsgSize)
		require.Equal(t, jetstream.LimitsPolicy, got.Retention)
		require.Equal(t, natsx.MaxAge, got.MaxAge)
		require.Equal(t, 1, got.Replicas)
		require.NoError(t, natsx.CheckStreamConfig(got))
	})

	t.Run("EnsureStreamRejectsABadServiceName", func(t *testing.T) {
		t.Parallel()
		_, err := natsx.EnsureStream(t.Context(), js, "Ticket.x", 1)
		require.ErrorContains(t, err, "service token")
	})

	t.Run("ConsumerMatchesRules", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		_, err := natsx.EnsureStream(ctx, js, "loyalty", 1)
		require.NoError(t, err)
		subject, err := natsx.Subject("loyalty", "points", "earned")
		require.NoError(t, err)

		cons, err := js.CreateOrUpdateConsumer(ctx, natsx.StreamName("loyalty"),
			natsx.ConsumerConfig("loyalty-tier", []string{subject}, natsx.ConsumerOpts{}))
		require.NoError(t, err)
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		got := info.Config
		require.Equal(t, "loyalty-tier", got.Durable)
		require.Empty(t, got.DeliverSubject, "not a pull consumer")
		require.Equal(t, []string{subject}, got.FilterSubjects)
		require.Equal(t, jetstream.DeliverAllPolicy, got.DeliverPolicy)
		require.Equal(t, jetstream.AckExplicitPolicy, got.AckPolicy)
		require.Equal(t, 30*time.Second, got.AckWait)
		require.Equal(t, 10, got.MaxDeliver)
		require.Less(t, len(got.BackOff), got.MaxDeliver)
		require.NotEmpty(t, got.BackOff)
		for i, d := range got.BackOff {
			require.GreaterOrEqual(t, d, got.AckWait, "backoff[%d]", i)
		}
		require.Equal(t, 1000, got.MaxAckPending)
		require.Zero(t, got.InactiveThreshold)

		// A handler bounded at 25 s fits a 30 s AckWait; one of 30 s does not.
		require.NoError(t, natsx.CheckConsumerConfig(got, 25*time.Second))
		require.ErrorContains(t, natsx.CheckConsumerConfig(got, 30*time.Second), "not above the handler timeout")
	})

	t.Run("ShortFirstBackOffCutsAckWait", func(t *testing.T) {
		t.Parallel()
		// Why BackOff is not 1s, 5s, …: the server makes BackOff[0] the
		// AckWait, so a 30 s handler budget silently becomes 1 s.
		ctx := t.Context()
		_, err := natsx.EnsureStream(ctx, js, "survey", 1)
		require.NoError(t, err)
		cfg := natsx.ConsumerConfig("survey-short", []string{"rapport.survey.>"}, natsx.ConsumerOpts{
			BackOff: []time.Duration{time.Second, 5 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute},
		})
		require.Equal(t, 30*time.Second, cfg.AckWait)
		require.ErrorContains(t, natsx.CheckConsumerConfig(cfg, 25*time.Second), "below ack wait")

		cons, err := js.CreateOrUpdateConsumer(ctx, natsx.StreamName("survey"), cfg)
		require.NoError(t, err)
		info, err := cons.Info(ctx)
		require.NoError(t, err)
		require.Equal(t, time.Second, info.Config.AckWait)
		require.ErrorContains(t, natsx.CheckConsumerConfig(info.Config, 25*time.Second), "not above the handler timeout")
	})
}

// TestCheckStreamConfig is the negative control for NATS-05: each broken rule
// is reported.
func TestCheckStreamConfig(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name   string
		mutate func(*jetstream.StreamConfig)
		want   string
	}{
		{"MemoryStorage", func(c *jetstream.StreamConfig) { c.Storage = jetstream.MemoryStorage }, "storage"},
		{"AsyncPersistence", func(c *jetstream.StreamConfig) { c.PersistMode = jetstream.AsyncPersistMode }, "persist mode"},
		{"NoAck", func(c *jetstream.StreamConfig) { c.NoAck = true }, "no_ack"},
		{"WorkQueueRetention", func(c *jetstream.StreamConfig) { c.Retention = jetstream.WorkQueuePolicy }, "retention"},
		{"InterestRetention", func(c *jetstream.StreamConfig) { c.Retention = jetstream.InterestPolicy }, "retention"},
		{"ShortDuplicateWindow", func(c *jetstream.StreamConfig) { c.Duplicates = 2 * time.Minute }, "duplicate window"},
		{"NoDuplicateWindow", func(c *jetstream.StreamConfig) { c.Duplicates = 0 }, "duplicate window"},
		{"UnboundedMessageSize", func(c *jetstream.StreamConfig) { c.MaxMsgSize = -1 }, "max message size"},
		{"OversizedMessages", func(c *jetstream.StreamConfig) { c.MaxMsgSize = 8 << 20 }, "max message size"},
		{"UnlimitedAge", func(c *jetstream.StreamConfig) { c.MaxAge = 0 }, "max age"},
		{"TwoReplicas", func(c *jetstream.StreamConfig) { c.Replicas = 2 }, "replicas"},
		{"FourReplicas", func(c *jetstream.StreamConfig) { c.Replicas = 4 }, "replicas"},
		{"BadName", func(c *jetstream.StreamConfig) { c.Name = "TICKETS" }, "name"},
		{"OtherSubjects", func(c *jetstream.StreamConfig) { c.Subjects = []string{"rapport.>"} }, "subjects"},
	} {
		t.Run("Rejects"+tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := natsx.StreamConfig("ticket", 1)
			tc.mutate(&cfg)
			require.ErrorContains(t, natsx.CheckStreamConfig(cfg), tc.want)
		})
	}
}

// TestCheckConsumerConfig is the negative control for NATS-05 consumers.
func TestCheckConsumerConfig(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name   string
		mutate func(*jetstream.ConsumerConfig)
		want   string
	}{
		{"Ephemeral", func(c *jetstream.ConsumerConfig) { c.Durable = "" }, "not durable"},
		{"InactiveThreshold", func(c *jetstream.ConsumerConfig) { c.InactiveThreshold = time.Hour }, "inactive threshold"},
		{"PushConsumer", func(c *jetstream.ConsumerConfig) { c.DeliverSubject = "_INBOX.x" }, "push consumer"},
		{"DeliverNew", func(c *jetstream.ConsumerConfig) { c.DeliverPolicy = jetstream.DeliverNewPolicy }, "deliver policy"},
		{"AckNone", func(c *jetstream.ConsumerConfig) { c.AckPolicy = jetstream.AckNonePolicy }, "ack policy"},
		{"AckAll", func(c *jetstream.ConsumerConfig) { c.AckPolicy = jetstream.AckAllPolicy }, "ack policy"},
		{"UnlimitedDelivery", func(c *jetstream.ConsumerConfig) { c.MaxDeliver = -1 }, "must be finite"},
		{"DefaultDelivery", func(c *jetstream.ConsumerConfig) { c.MaxDeliver = 0 }, "must be finite"},
		{"BackOffAsLongAsMaxDeliver", func(c *jetstream.ConsumerConfig) { c.MaxDeliver = 5 }, "backoff steps"},
		{"AckWaitBelowHandler", func(c *jetstream.ConsumerConfig) { c.AckWait, c.BackOff = 5*time.Second, nil }, "not above the handler timeout"},
		{"FirstBackOffNotAckWait", func(c *jetstream.ConsumerConfig) { c.BackOff[0] = time.Minute }, "first backoff"},
		{"BackOffBelowAckWait", func(c *jetstream.ConsumerConfig) { c.BackOff[3] = time.Second }, "backoff[3]"},
		{"UnboundedAckPending", func(c *jetstream.ConsumerConfig) { c.MaxAckPending = -1 }, "max ack pending"},
	} {
		t.Run("Rejects"+tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := natsx.ConsumerConfig("ticket-sla", []string{"rapport.ticket.>"}, natsx.ConsumerOpts{})
			require.NoError(t, natsx.CheckConsumerConfig(cfg, 10*time.Second))
			tc.mutate(&cfg)
			require.ErrorContains(t, natsx.CheckConsumerConfig(cfg, 10*time.Second), tc.want)
		})
	}
}
