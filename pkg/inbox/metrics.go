package inbox

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/promx"
)

// metrics are per consumer (label consumer). A nil *metrics (no Registerer)
// records nothing.
type metrics struct {
	processedC   prometheus.Counter
	duplicatesC  prometheus.Counter
	redeliveredC prometheus.Counter
	parkedC      prometheus.Counter
	handlerH     prometheus.Observer
}

func newMetrics(reg prometheus.Registerer, consumer string) (*metrics, error) {
	if reg == nil {
		return nil, nil
	}
	counter := func(name, help string) (*prometheus.CounterVec, error) {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"consumer"})
		return register(reg, v)
	}
	processed, err := counter("rapport_inbox_processed_total",
		"Events whose effect was applied and committed.")
	if err != nil {
		return nil, err
	}
	duplicates, err := counter("rapport_inbox_duplicates_total",
		"Deliveries of events already applied, acked without running the handler.")
	if err != nil {
		return nil, err
	}
	redeliveries, err := counter("rapport_inbox_redeliveries_total",
		"Deliveries with NumDelivered > 1 (nak, AckWait expiry, crash before ack).")
	if err != nil {
		return nil, err
	}
	parked, err := counter("rapport_inbox_parked_total",
		"Events parked in dead_letters and terminated.")
	if err != nil {
		return nil, err
	}
	hv := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rapport_inbox_handler_seconds",
		Help:    "Time spent in the event handler, inside the inbox transaction.",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1 ms … 65 s
	}, []string{"consumer"})
	handler, err := register(reg, hv)
	if err != nil {
		return nil, err
	}
	return &metrics{
		processedC:   processed.WithLabelValues(consumer),
		duplicatesC:  duplicates.WithLabelValues(consumer),
		redeliveredC: redeliveries.WithLabelValues(consumer),
		parkedC:      parked.WithLabelValues(consumer),
		handlerH:     handler.WithLabelValues(consumer),
	}, nil
}

// register lets several consumers share one Registerer: the second one gets
// the collector the first registered.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	c, err := promx.Register(reg, c)
	var are prometheus.AlreadyRegisteredError
	switch {
	case err == nil:
		return c, nil
	case errors.As(err, &are):
		var zero C
		return zero, fmt.Errorf("register metrics: another collector uses the name: %w", err)
	default:
		var zero C
		return zero, fmt.Errorf("register metrics: %w", err)
	}
}

func (m *metrics) processed() {
	if m != nil {
		m.processedC.Inc()
	}
}

func (m *metrics) duplicate() {
	if m != nil {
		m.duplicatesC.Inc()
	}
}

func (m *metrics) redelivered() {
	if m != nil {
		m.redeliveredC.Inc()
	}
}

func (m *metrics) parked() {
	if m != nil {
		m.parkedC.Inc()
	}
}

func (m *metrics) observe(d time.Duration) {
	if m != nil {
		m.handlerH.Observe(d.Seconds())
	}
}
