package outbox

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/promx"
)

// metrics are the relay's instruments, labelled by RelayConfig.Source. A nil
// *metrics (no Registerer) records nothing.
type metrics struct {
	published     prometheus.Counter
	publishErrors prometheus.Counter
	pending       prometheus.Gauge
	oldest        prometheus.Gauge
	leading       prometheus.Gauge
}

// newMetrics registers the relay's collectors on reg, or reuses the ones a
// relay of another source (or an earlier relay of this one) registered
// there: in all-in-one mode every service's relay shares one registry.
func newMetrics(reg prometheus.Registerer, source string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	labels := []string{"source"}
	published, err := promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rapport_outbox_published_total",
		Help: "Outbox events JetStream acknowledged, duplicates of a republish included.",
	}, labels))
	if err != nil {
		return nil, err
	}
	publishErrors, err := promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rapport_outbox_publish_errors_total",
		Help: "Failed attempts to publish an outbox event; the relay backs off and retries.",
	}, labels))
	if err != nil {
		return nil, err
	}
	pending, err := promx.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rapport_outbox_pending",
		Help: "Committed outbox events not yet published.",
	}, labels))
	if err != nil {
		return nil, err
	}
	oldest, err := promx.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rapport_outbox_oldest_pending_seconds",
		Help: "Age of the oldest committed, unpublished outbox event; alert on it (outbox lag).",
	}, labels))
	if err != nil {
		return nil, err
	}
	leading, err := promx.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rapport_outbox_leading",
		Help: "Relays in this process holding the leader lock (at most 1 across all replicas).",
	}, labels))
	if err != nil {
		return nil, err
	}
	return &metrics{
		published:     published.WithLabelValues(source),
		publishErrors: publishErrors.WithLabelValues(source),
		pending:       pending.WithLabelValues(source),
		oldest:        oldest.WithLabelValues(source),
		leading:       leading.WithLabelValues(source),
	}, nil
}
