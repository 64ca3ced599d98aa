// Package outreach owns templated messages to customers: the templates
// (tenant configuration, per locale, with variables), SendOutreach, the
// delivery worker and the channel drivers that hand messages to providers
// (SMTP for email; an HTTP webhook signed per Standard Webhooks for SMS and
// messaging apps), and the delivery log.
//
// Guarantees, and where they come from:
//   - Every message passes the contact governor. SendOutreach reserves the
//     touch with consent.Governor in its own transaction, so the touch
//     counts towards the frequency caps exactly when the delivery exists;
//     a refusal is recorded as a REFUSED delivery, never sent. A refusal
//     that passes with time (quiet hours; a frequency cap that frees within
//     Config.MaxDeferral of the delivery's creation) is DEFERRED instead,
//     with no touch: the worker asks the governor again at its next allowed
//     time (worker.go, recheckDeferred) and only then, in the transaction
//     that queues it, records the touch, so a waiting message does not eat
//     the cap. A deferral publishes no event; OutreachFailed comes only if
//     the re-check refuses it for good (REFUSED, its content dropped).
//   - One request id, one delivery, for ever: outreach_deliveries keeps the
//     request id under a unique key (idempotency_keys rows expire).
//   - A delivery is sent at least once and, as far as the provider can
//     tell, once: the worker claims it with FOR UPDATE SKIP LOCKED and a
//     lease, and the same delivery id travels with every attempt (the
//     webhook-id header; the email's Message-Id), so a provider can drop a
//     retry of a message it already took.
//   - Claims are fair across tenants: a batch takes every tenant's oldest
//     due delivery before any tenant's second (store: OutreachDeliveryClaim),
//     so one tenant's large backlog does not delay the others' messages.
//   - Every status change that ends a delivery commits with its event
//     (OutreachSent, OutreachFailed) in one transaction.
//   - A due care occasion (rapport.customer.care.due) whose kind has a
//     template in the tenant's care settings becomes one delivery, through
//     send like SendOutreach's, with purpose CARE (care.go): the inbox
//     applies each event once, and the request id derived from the
//     occasion id makes any copy of the event find that delivery.
//   - No plaintext personal data at rest: the rendered content is sealed
//     with the customer's data key, the variables are never stored, and the
//     address is read from the profile and opened at send time only.
//
// It must not log or return addresses, variables or content, and it never
// builds SQL: the store package holds it.
package outreach

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// Event subjects and aggregate, per DESIGN.md.
const (
	SubjectSent   = "rapport.customer.outreach.sent"
	SubjectFailed = "rapport.customer.outreach.failed"
	AggregateType = "outreach"
)

// SourceService is how outreach names itself to the governor; a touch's
// reference is the delivery id.
const SourceService = "outreach"

// ContentColumn is where a delivery's rendered content is sealed.
var ContentColumn = pii.Column{Table: "outreach_deliveries", Name: "content"}

// Failure reasons (OutreachFailed.reason, OutreachDelivery.failure_reason);
// refusals are "refused:" + the governor's reason.
const (
	ReasonNoAddress         = "no_address"
	ReasonNoDriver          = "no_driver"
	ReasonBounced           = "bounced"
	ReasonProviderRejected  = "provider_rejected"
	ReasonAttemptsExhausted = "attempts_exhausted"
	ReasonErased            = "erased"
	// ReasonNoTemplate: the care settings name a template key the tenant
	// has no template for (care occasions only).
	ReasonNoTemplate = "no_template"
	// ReasonRenderFailed: the template uses a variable care outreach does
	// not provide (care occasions only; SendOutreach refuses the request).
	ReasonRenderFailed = "render_failed"
	refusedPrefix      = "refused:"
)

// Templatable channels: the ones a driver kind exists for.
var templatable = []consent.Channel{consent.ChannelEmail, consent.ChannelSMS, consent.ChannelMessaging}

// Config is the process-level outreach configuration: the drivers and the
// retry policy. The env tags are the names the composer reads them from.
// A channel without a configured driver cannot send: its deliveries fail
// with reason no_driver.
type Config struct {
	SMTP      SMTPConfig
	SMS       WebhookConfig `env:", prefix=RAPPORT_OUTREACH_SMS_"`
	Messaging WebhookConfig `env:", prefix=RAPPORT_OUTREACH_MESSAGING_"`

	// MaxAttempts bounds the attempts per delivery; 0 means 5.
	MaxAttempts int `env:"RAPPORT_OUTREACH_MAX_ATTEMPTS, default=5"`
	// BackoffBase is the wait after the first failed attempt; it doubles
	// after each (with jitter: a random wait in [d/2, d]), up to BackoffMax.
	// 0 means 30 s.
	BackoffBase time.Duration `env:"RAPPORT_OUTREACH_BACKOFF_BASE, default=30s"`
	// BackoffMax caps the wait; 0 means 1 h.
	BackoffMax time.Duration `env:"RAPPORT_OUTREACH_BACKOFF_MAX, default=1h"`
	// PollInterval is how often the worker looks for due deliveries; 0
	// means 1 s.
	PollInterval time.Duration `env:"RAPPORT_OUTREACH_POLL_INTERVAL, default=1s"`
	// SendTimeout bounds one attempt; 0 means 30 s.
	SendTimeout time.Duration `env:"RAPPORT_OUTREACH_SEND_TIMEOUT, default=30s"`
	// MaxDeferral bounds how long a delivery the governor refused "for now"
	// waits (DEFERRED), counted from its creation: a refusal for quiet
	// hours or a frequency cap whose next allowed time lies beyond it is
	// final (REFUSED). 0 means 7 days.
	MaxDeferral time.Duration `env:"RAPPORT_OUTREACH_MAX_DEFERRAL, default=168h"`
}

// SMTPConfig configures the email driver.
type SMTPConfig struct {
	// Addr is host:port of the submission server; empty means no email
	// driver.
	Addr string `env:"RAPPORT_OUTREACH_SMTP_ADDR"`
	// TLS is "starttls" (required STARTTLS, the default), "tls" (implicit
	// TLS, port 465) or "none" (plain text: a local relay or tests only).
	TLS string `env:"RAPPORT_OUTREACH_SMTP_TLS, default=starttls"`
	// Username and Password, when set, authenticate (SMTP AUTH, the best
	// mechanism the server offers; never over plain text unless TLS=none).
	Username string `env:"RAPPORT_OUTREACH_SMTP_USERNAME"`
	Password string `env:"RAPPORT_OUTREACH_SMTP_PASSWORD" json:"-"`
	// From is the sender address, e.g. "Acme Care <care@acme.example>".
	From string `env:"RAPPORT_OUTREACH_SMTP_FROM"`
	// CAFile is a PEM file of certificate authorities trusted for the SMTP
	// server besides the system's (an internal relay with a private CA).
	CAFile string `env:"RAPPORT_OUTREACH_SMTP_CA_FILE"`
}

// WebhookConfig configures a webhook driver.
type WebhookConfig struct {
	// URL receives the POSTs; empty means no driver for the channel.
	URL string `env:"WEBHOOK_URL"`
	// Secret signs them: "whsec_" and the base64 key, as Standard Webhooks
	// providers issue it.
	Secret string `env:"WEBHOOK_SECRET" json:"-"`
}

func (c Config) withDefaults() Config {
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 5
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = 30 * time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = time.Hour
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.PollInterval <= 0 {
		c.PollInterval = time.Second
	}
	if c.SendTimeout <= 0 {
		c.SendTimeout = 30 * time.Second
	}
	if c.MaxDeferral <= 0 {
		c.MaxDeferral = 7 * 24 * time.Hour
	}
	if c.SMTP.TLS == "" {
		c.SMTP.TLS = "starttls"
	}
	return c
}

// Validate checks the configuration before anything connects.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.SMTP.Addr != "" {
		switch c.SMTP.TLS {
		case "starttls", "tls", "none":
		default:
			errs = append(errs, fmt.Errorf("outreach: SMTP TLS mode %q: want starttls, tls or none", c.SMTP.TLS))
		}
		if c.SMTP.From == "" {
			errs = append(errs, errors.New("outreach: an SMTP address needs a From address"))
		}
	}
	for name, w := range map[string]WebhookConfig{"SMS": c.SMS, "messaging": c.Messaging} {
		if w.URL == "" {
			continue
		}
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, fmt.Errorf("outreach: %s webhook URL must be an http(s) URL", name))
		}
		if _, err := newSigner(w.Secret); err != nil {
			errs = append(errs, fmt.Errorf("outreach: %s webhook secret: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
