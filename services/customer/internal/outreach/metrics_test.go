package outreach_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// metricValue is the value of the series of family name with exactly
// labels in reg: a counter's or gauge's value, a histogram's sample count;
// 0 when there is no such series.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != len(labels) {
				continue
			}
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; !ok || v != l.GetValue() {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// TestMetrics: real sends (the in-process SMTP server, the webhook server)
// and the governor's decisions show in the outcome counters with bounded
// labels, each attempt in the duration histogram, and the due backlog in
// the gauges as the worker saw it when its round began.
func TestMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, emailTemplate("birthday"))
	b.createTemplate(t, smsTemplate("repair-ready"))
	withEmail := b.newCustomer(t, b.tenant, person{email: "m@example.org"})
	withPhone := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	noAddress := b.newCustomer(t, b.tenant, person{phone: "+4915112345679"})
	quiet := b.newCustomer(t, b.tenant, person{email: "q@example.org"})
	b.grant(t, quiet, email, care)
	b.quietUntilNoon(t, b.tenant, quiet)

	serviceEmail := func(c string) *customerv1.SendOutreachRequest {
		return &customerv1.SendOutreachRequest{CustomerId: c, Purpose: service,
			Variables: map[string]string{"first_name": "M", "code": "C"},
			Template:  &customerv1.SendOutreachRequest_TemplateKey{TemplateKey: "birthday"}}
	}
	queued := customerv1.OutreachStatus_OUTREACH_STATUS_QUEUED
	require.Equal(t, queued, b.send(t, serviceEmail(withEmail.String())).GetStatus())
	require.Equal(t, queued, b.send(t, smsSend(withPhone, service)).GetStatus())
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_FAILED, b.send(t, serviceEmail(noAddress.String())).GetStatus())
	marketingEmail := serviceEmail(withEmail.String())
	marketingEmail.Purpose = marketing
	require.Equal(t, customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED, b.send(t, marketingEmail).GetStatus())
	require.Equal(t, deferred, b.send(t, careEmail(quiet)).GetStatus())

	// A minute later the worker finds two due deliveries waiting (the
	// deferred one is due at noon), sends the email and gets a 503 for the
	// SMS.
	b.hook.reply(http.StatusServiceUnavailable)
	b.clock.Advance(time.Minute)
	require.Equal(t, 2, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 1)
	require.Equal(t, 1.0, metricValue(t, b.metrics, "rapport_outreach_due", map[string]string{"channel": "email"}))
	require.Equal(t, 1.0, metricValue(t, b.metrics, "rapport_outreach_due", map[string]string{"channel": "sms"}))
	require.Equal(t, 0.0, metricValue(t, b.metrics, "rapport_outreach_due", map[string]string{"channel": "messaging"}))
	require.Equal(t, 60.0, metricValue(t, b.metrics, "rapport_outreach_due_oldest_seconds", nil))
	require.Equal(t, 1.0, metricValue(t, b.metrics, "rapport_outreach_send_duration_seconds",
		map[string]string{"channel": "email", "result": "ok"}))
	require.Equal(t, 1.0, metricValue(t, b.metrics, "rapport_outreach_send_duration_seconds",
		map[string]string{"channel": "sms", "result": "temporary"}))

	// At noon the deferred delivery is released and sent, the SMS retried
	// and sent; then nothing is due.
	b.clock.Set(noon)
	require.Equal(t, 2, b.deliverDue(t))
	require.Len(t, b.smtp.received(), 2)
	require.Len(t, b.hook.requests(), 2)
	require.Equal(t, 2.0, metricValue(t, b.metrics, "rapport_outreach_send_duration_seconds",
		map[string]string{"channel": "email", "result": "ok"}))
	require.Equal(t, 1.0, metricValue(t, b.metrics, "rapport_outreach_send_duration_seconds",
		map[string]string{"channel": "sms", "result": "ok"}))
	require.Zero(t, b.deliverDue(t))
	require.Equal(t, 0.0, metricValue(t, b.metrics, "rapport_outreach_due", map[string]string{"channel": "sms"}))
	require.Equal(t, 0.0, metricValue(t, b.metrics, "rapport_outreach_due_oldest_seconds", nil))

	require.NoError(t, testutil.GatherAndCompare(b.metrics, strings.NewReader(`
# HELP rapport_outreach_deliveries_total Outreach delivery outcomes by channel, outcome (sent, failed, retry, refused, deferred) and reason class.
# TYPE rapport_outreach_deliveries_total counter
rapport_outreach_deliveries_total{channel="email",outcome="deferred",reason="QUIET_HOURS"} 1
rapport_outreach_deliveries_total{channel="email",outcome="failed",reason="no_address"} 1
rapport_outreach_deliveries_total{channel="email",outcome="refused",reason="NO_CONSENT"} 1
rapport_outreach_deliveries_total{channel="email",outcome="sent",reason=""} 2
rapport_outreach_deliveries_total{channel="sms",outcome="retry",reason="http"} 1
rapport_outreach_deliveries_total{channel="sms",outcome="sent",reason=""} 1
`), "rapport_outreach_deliveries_total"))

	problems, err := testutil.GatherAndLint(b.metrics)
	require.NoError(t, err)
	require.Empty(t, problems)
}

// TestMetricsSharedRegisterer: a second Server instrumented on the same
// Registerer (all-in-one mode) shares the collectors instead of failing.
func TestMetricsSharedRegisterer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	require.NoError(t, b.srv.Instrument(b.metrics))
	require.NoError(t, b.srv.Instrument(nil), "nil: no metrics")
}
