package outreach

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rapporthq/rapport/pkg/promx"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
)

// Outcomes, the outcome label of rapport_outreach_deliveries_total.
const (
	outcomeSent     = "sent"     // a driver accepted the message
	outcomeFailed   = "failed"   // FAILED for good; reason: a Reason* constant
	outcomeRetry    = "retry"    // a temporary failure, tried again later; reason: the error class
	outcomeRefused  = "refused"  // REFUSED by the governor; reason: its consent.Reason
	outcomeDeferred = "deferred" // DEFERRED (again) by the governor; reason: its consent.Reason
)

// backlogEvery is how often (on the worker's clock) the due backlog gauges
// are refreshed while the worker runs: the count is one index range scan,
// not free on a large backlog, and the gauges need no finer grain.
const backlogEvery = 15 * time.Second

// metrics are the worker's instruments. No label carries a tenant or
// customer: channel is one of three, the reasons come from closed sets
// (see reasonLabel, errorClass). A nil *metrics records nothing.
type metrics struct {
	deliveries *prometheus.CounterVec   // channel, outcome, reason
	sendTime   *prometheus.HistogramVec // channel, result
	due        *prometheus.GaugeVec     // channel
	dueOldest  prometheus.Gauge

	mu          sync.Mutex
	lastBacklog time.Time
}

// Instrument registers the outreach metrics on reg (nil: none) and records
// into them from then on. Call it once, before Run and before serving.
// Several Servers may share one Registerer (all-in-one mode, tests): the
// second gets the collectors the first registered.
//
//   - rapport_outreach_deliveries_total{channel, outcome, reason}: delivery
//     outcomes. outcome sent (reason ""), failed (reason no_address,
//     no_driver, bounced, provider_rejected, attempts_exhausted, erased,
//     no_template, render_failed), retry (reason the error class: smtp,
//     http, timeout, network), refused and deferred (reason the governor's:
//     NO_CONSENT, WITHDRAWN, PENDING_CONFIRMATION, FREQUENCY_CAP,
//     QUIET_HOURS, ERASED, …). Counted when the outcome commits: by
//     SendOutreach, the care consumer, the deferral re-check and the send
//     worker.
//   - rapport_outreach_send_duration_seconds{channel, result}: one
//     driver.Send attempt; result ok, temporary or permanent.
//   - rapport_outreach_due{channel}: queued deliveries past due and not
//     leased (waiting for a worker), refreshed by the worker at most every
//     15 s; every replica reports the same database-wide figure (aggregate
//     with max, not sum).
//   - rapport_outreach_due_oldest_seconds: how long the oldest of them has
//     been due (0 when none): the worker's lag.
func (s *Server) Instrument(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	deliveries, err := promx.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rapport_outreach_deliveries_total",
		Help: "Outreach delivery outcomes by channel, outcome (sent, failed, retry, refused, deferred) and reason class.",
	}, []string{"channel", "outcome", "reason"}))
	if err != nil {
		return err
	}
	sendTime, err := promx.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "rapport_outreach_send_duration_seconds",
		Help:    "Duration of one outreach send attempt (driver hand-over to the provider) by channel and result (ok, temporary, permanent).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10), // 10 ms … 38 s (the send timeout is 30 s)
	}, []string{"channel", "result"}))
	if err != nil {
		return err
	}
	due, err := promx.Register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "rapport_outreach_due",
		Help: "Queued outreach deliveries past due and not leased by a worker (database-wide; aggregate replicas with max).",
	}, []string{"channel"}))
	if err != nil {
		return err
	}
	dueOldest, err := promx.Register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "rapport_outreach_due_oldest_seconds",
		Help: "How long the oldest due, unleased outreach delivery has been waiting; 0 when none is.",
	}))
	if err != nil {
		return err
	}
	for _, ch := range templatable {
		due.WithLabelValues(string(ch)) // present at 0 before the first refresh
	}
	s.metrics = &metrics{deliveries: deliveries, sendTime: sendTime, due: due, dueOldest: dueOldest}
	return nil
}

// channelLabel is a delivery's channel, "none" for the FAILED no_template
// deliveries that have none.
func channelLabel(ch string) string {
	if ch == "" {
		return "none"
	}
	return ch
}

// reasonLabel bounds a reason taken from stored data to the known set.
func reasonLabel(reason string) string {
	switch reason {
	case ReasonNoAddress, ReasonNoDriver, ReasonBounced, ReasonProviderRejected, ReasonAttemptsExhausted,
		ReasonErased, ReasonNoTemplate, ReasonRenderFailed:
		return reason
	}
	switch consent.Reason(reason) {
	case consent.ReasonCustomerUnknown, consent.ReasonErased, consent.ReasonNoConsent, consent.ReasonWithdrawn,
		consent.ReasonPendingConfirmation, consent.ReasonFrequencyCap, consent.ReasonQuietHours:
		return reason
	}
	return "other"
}

// errorClass is a SendError code without its status (smtp_451 → smtp,
// http_503 → http), so the label set stays small.
func errorClass(code string) string {
	class, _, _ := strings.Cut(code, "_")
	switch class {
	case "smtp", "http", "timeout", "network":
		return class
	}
	return "other"
}

// outcome counts a committed delivery state: a new delivery (SendOutreach,
// care) or a re-check's or attempt's result.
func (m *metrics) outcome(d store.Delivery) {
	if m == nil {
		return
	}
	switch d.Status {
	case store.StatusSent:
		m.count(d.Channel, outcomeSent, "")
	case store.StatusFailed:
		m.count(d.Channel, outcomeFailed, d.FailureReason)
	case store.StatusRefused:
		m.count(d.Channel, outcomeRefused, d.RefusalReason)
	case store.StatusDeferred:
		m.count(d.Channel, outcomeDeferred, d.RefusalReason)
	}
}

func (m *metrics) count(channel, outcome, reason string) {
	if m == nil {
		return
	}
	if reason != "" {
		reason = reasonLabel(reason)
	}
	m.deliveries.WithLabelValues(channelLabel(channel), outcome, reason).Inc()
}

// retry counts a temporary failure with attempts left.
func (m *metrics) retry(channel, code string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(channelLabel(channel), outcomeRetry, errorClass(code)).Inc()
}

// attempt observes one driver.Send.
func (m *metrics) attempt(channel string, took time.Duration, err error) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "temporary"
		if classify(err).Permanent {
			result = "permanent"
		}
	}
	m.sendTime.WithLabelValues(channelLabel(channel), result).Observe(took.Seconds())
}

// refreshBacklog sets the due gauges from the database when backlogEvery
// has passed on the worker's clock since the last refresh (or force).
func (s *Server) refreshBacklog(ctx context.Context, now time.Time, force bool) error {
	m := s.metrics
	if m == nil {
		return nil
	}
	m.mu.Lock()
	if !force && !m.lastBacklog.IsZero() && now.Sub(m.lastBacklog) < backlogEvery {
		m.mu.Unlock()
		return nil
	}
	m.lastBacklog = now
	m.mu.Unlock()
	backlog, err := s.store.DueBacklog(ctx, s.pool, now)
	if err != nil {
		return err
	}
	var oldest time.Time
	for _, ch := range templatable {
		m.due.WithLabelValues(string(ch)).Set(0)
	}
	for _, b := range backlog {
		m.due.WithLabelValues(channelLabel(b.Channel)).Set(float64(b.Count))
		if oldest.IsZero() || b.Oldest.Before(oldest) {
			oldest = b.Oldest
		}
	}
	if oldest.IsZero() {
		m.dueOldest.Set(0)
	} else {
		m.dueOldest.Set(max(now.Sub(oldest), 0).Seconds())
	}
	return nil
}
