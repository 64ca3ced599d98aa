package outreach

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"net/textproto"
	"os"
	"strconv"
	"strings"

	gomail "github.com/wneessen/go-mail"
)

// smtpDriver sends email through a submission server with go-mail, one
// connection per message (deliveries are spread over time; a pool would
// mostly hold idle connections).
type smtpDriver struct {
	host   string
	opts   []gomail.Option
	from   string
	domain string // of From: the Message-Id's right-hand side
}

func newSMTPDriver(c SMTPConfig) (*smtpDriver, error) {
	host, portStr, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return nil, fmt.Errorf("outreach: SMTP address %q: %w", c.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("outreach: SMTP port %q: %w", portStr, err)
	}
	from, err := mail.ParseAddress(c.From)
	if err != nil {
		return nil, fmt.Errorf("outreach: SMTP From %q: %w", c.From, err)
	}
	opts := []gomail.Option{gomail.WithPort(port)}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("outreach: SMTP CA file: %w", err)
		}
		roots, err := x509.SystemCertPool()
		if err != nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("outreach: SMTP CA file %s holds no PEM certificate", c.CAFile)
		}
		opts = append(opts, gomail.WithTLSConfig(&tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}))
	}
	switch c.TLS {
	case "tls":
		opts = append(opts, gomail.WithSSL())
	case "none":
		opts = append(opts, gomail.WithTLSPolicy(gomail.NoTLS))
	default:
		opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory))
	}
	if c.Username != "" {
		// Auto-discovery picks the strongest mechanism the server offers
		// and never sends a password in clear over an unencrypted
		// connection (PLAIN and LOGIN only after TLS).
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthAutoDiscover),
			gomail.WithUsername(c.Username), gomail.WithPassword(c.Password))
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	return &smtpDriver{host: host, opts: opts, from: c.From, domain: domain}, nil
}

// Send submits one message. The Message-Id is the delivery id at the
// sender's domain, the same on every attempt, so a retry after a lost
// reply is recognisable as the same message.
func (d *smtpDriver) Send(ctx context.Context, m Message) (string, error) {
	msg := gomail.NewMsg()
	if err := msg.From(d.from); err != nil {
		return "", &SendError{Code: "bad_sender", Permanent: true, Reason: ReasonProviderRejected}
	}
	if err := msg.To(m.To); err != nil {
		return "", &SendError{Code: "bad_address", Permanent: true, Reason: ReasonBounced}
	}
	id := m.DeliveryID.String() + "@" + d.domain
	msg.SetMessageIDWithValue(id)
	msg.SetDate()
	msg.Subject(m.Content.Subject)
	msg.SetBodyString(gomail.TypeTextPlain, m.Content.Text)
	if m.Content.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.Content.HTML)
	}
	if m.Locale != "" {
		msg.SetGenHeader(gomail.HeaderContentLang, m.Locale)
	}
	client, err := gomail.NewClient(d.host, d.opts...)
	if err != nil {
		return "", fmt.Errorf("smtp client: %w", err)
	}
	if err := client.DialAndSendWithContext(ctx, msg); err != nil {
		return "", smtpError(err)
	}
	return "<" + id + ">", nil
}

// smtpError classifies a go-mail error. A reply to the message itself
// (MAIL FROM, RCPT TO, DATA) decides: 4xx is temporary, 5xx permanent (a
// bounce). Everything before the message (connecting, TLS, EHLO, AUTH) is
// temporary whatever the reply: it is about the connection or our
// configuration (a rotated password), not this message, so the delivery
// waits for the fix and its attempts bound the wait.
func smtpError(err error) error {
	var se *gomail.SendError
	if errors.As(err, &se) {
		if code := se.ErrorCode(); code >= 400 && code < 600 {
			return &SendError{Code: "smtp_" + strconv.Itoa(code), Permanent: code >= 500, Reason: ReasonBounced}
		}
	}
	var tpe *textproto.Error
	if errors.As(err, &tpe) && tpe.Code >= 400 && tpe.Code < 600 {
		return &SendError{Code: "smtp_" + strconv.Itoa(tpe.Code)}
	}
	return classify(err)
}
