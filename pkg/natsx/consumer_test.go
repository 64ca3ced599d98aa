package natsx_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
)

func TestConsumerConfig(t *testing.T) {
	t.Parallel()

	t.Run("DefaultsFromZeroOpts", func(t *testing.T) {
		t.Parallel()
		got := natsx.ConsumerConfig("ticket-sla", []string{"rapport.ticket.ticket.created"}, natsx.ConsumerOpts{})
		require.Equal(t, jetstream.ConsumerConfig{
			Durable:        "ticket-sla",
			FilterSubjects: []string{"rapport.ticket.ticket.created"},
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        30 * time.Second,
			MaxDeliver:     10,
			BackOff:        []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute},
			MaxAckPending:  1000,
			ReplayPolicy:   jetstream.ReplayInstantPolicy,
		}, got)
		require.NoError(t, natsx.CheckConsumerConfig(got, 20*time.Second))
	})

	t.Run("DerivesBackOffFromAckWait", func(t *testing.T) {
		t.Parallel()
		got := natsx.ConsumerConfig("d", nil, natsx.ConsumerOpts{AckWait: 2 * time.Second})
		require.Equal(t, []time.Duration{2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}, got.BackOff)
		require.Equal(t, 2*time.Second, got.AckWait)
	})

	t.Run("KeepsBackOffShorterThanMaxDeliver", func(t *testing.T) {
		t.Parallel()
		for maxDeliver, wantSteps := range map[int]int{1: 0, 2: 1, 3: 2, 6: 5, 10: 5, 100: 5} {
			got := natsx.ConsumerConfig("d", nil, natsx.ConsumerOpts{MaxDeliver: maxDeliver})
			require.Equal(t, maxDeliver, got.MaxDeliver)
			require.Len(t, got.BackOff, wantSteps, "max deliver %d", maxDeliver)
			require.NoError(t, natsx.CheckConsumerConfig(got, 0), "max deliver %d", maxDeliver)
		}
	})

	t.Run("NeverUnlimited", func(t *testing.T) {
		t.Parallel()
		got := natsx.ConsumerConfig("d", nil, natsx.ConsumerOpts{MaxDeliver: -1, MaxAckPending: -1})
		require.Equal(t, natsx.DefaultMaxDeliver, got.MaxDeliver)
		require.Equal(t, natsx.DefaultMaxAckPending, got.MaxAckPending)
	})

	t.Run("CopiesCallerSlices", func(t *testing.T) {
		t.Parallel()
		filters := []string{"rapport.loyalty.points.earned"}
		backOff := []time.Duration{time.Second, 2 * time.Second}
		got := natsx.ConsumerConfig("d", filters, natsx.ConsumerOpts{AckWait: time.Second, BackOff: backOff})
		filters[0], backOff[0] = "changed", time.Hour
		require.Equal(t, []string{"rapport.loyalty.points.earned"}, got.FilterSubjects)
		require.Equal(t, []time.Duration{time.Second, 2 * time.Second}, got.BackOff)
	})
}

func TestStreamConfig(t *testing.T) {
	t.Parallel()

	t.Run("FollowsTheRules", func(t *testing.T) {
		t.Parallel()
		got := natsx.StreamConfig("ticket", 1)
		require.Equal(t, "RAPPORT_TICKET", got.Name)
		require.Equal(t, []string{"rapport.ticket.>"}, got.Subjects)
		require.Equal(t, jetstream.FileStorage, got.Storage)
		require.Equal(t, 5*time.Minute, got.Duplicates)
		require.Equal(t, int32(1<<20), got.MaxMsgSize)
		require.Equal(t, jetstream.LimitsPolicy, got.Retention)
		require.Equal(t, 7*24*time.Hour, got.MaxAge)
		require.Equal(t, 1, got.Replicas)
		require.NoError(t, natsx.CheckStreamConfig(got))
	})

	t.Run("UsesThreeReplicasInACluster", func(t *testing.T) {
		t.Parallel()
		got := natsx.StreamConfig("loyalty", 3)
		require.Equal(t, 3, got.Replicas)
		require.NoError(t, natsx.CheckStreamConfig(got))
	})

	t.Run("TreatsZeroReplicasAsOne", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, 1, natsx.StreamConfig("survey", 0).Replicas)
	})
}
