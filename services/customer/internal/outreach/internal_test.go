package outreach

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
)

// TestSignerMatchesTheSpecVector: the signer turns the Standard Webhooks
// spec's published example into its published signature.
func TestSignerMatchesTheSpecVector(t *testing.T) {
	t.Parallel()
	wh, err := newSigner("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	require.NoError(t, err)
	sig, err := wh.Sign("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	require.NoError(t, err)
	require.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)

	for _, bad := range []string{"", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_", "whsec_!!!"} {
		_, err := newSigner(bad)
		require.Error(t, err, "%q", bad)
	}
}

// TestWebhookTimestampIsSigned: the webhook-timestamp header is the one in
// the signature, from the driver's clock.
func TestWebhookTimestampIsSigned(t *testing.T) {
	t.Parallel()
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.Header.Clone() }))
	t.Cleanup(srv.Close)
	d, err := newWebhookDriver(WebhookConfig{URL: srv.URL, Secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"})
	require.NoError(t, err)
	d.now = func() time.Time { return time.Unix(1614265330, 0) }
	id := uuid.New()
	_, err = d.Send(context.Background(), Message{DeliveryID: id, Channel: consent.ChannelSMS, To: "+4915100000000"})
	require.NoError(t, err)
	require.Equal(t, "1614265330", got.Get("webhook-timestamp"))
	require.Equal(t, id.String(), got.Get("webhook-id"))
	require.True(t, strings.HasPrefix(got.Get("webhook-signature"), "v1,"))
}

func TestPickVariant(t *testing.T) {
	t.Parallel()
	tpl := store.Template{DefaultLocale: "en", Variants: []store.Variant{
		{Locale: "en"}, {Locale: "zh"}, {Locale: "zh-Hant"}, {Locale: "pt-BR"}, {Locale: "de"},
	}}
	for locale, want := range map[string]string{
		"zh-Hant-TW": "zh-Hant", // drop the region
		"zh-Hans-CN": "zh",      // then the script
		"ZH-hant":    "zh-Hant", // case-insensitive
		"pt-BR":      "pt-BR",
		"pt-PT":      "en", // no pt variant: the default
		"de_AT":      "de", // POSIX-style separators
		"fr":         "en",
		"":           "en",
	} {
		require.Equal(t, want, pickVariant(tpl, locale).Locale, "locale %q", locale)
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	p, err := parse(store.Variant{Locale: "en", Subject: "Hi {{.name}}", TextBody: "Code {{.code}}", HTMLBody: "<a href=\"/c?{{.code}}\">{{.name}}</a>"})
	require.NoError(t, err)
	c, err := p.render(map[string]string{"name": "<Ann>", "code": "a&b"})
	require.NoError(t, err)
	require.Equal(t, Content{Subject: "Hi <Ann>", Text: "Code a&b", HTML: `<a href="/c?a%26b">&lt;Ann&gt;</a>`}, c)

	_, err = p.render(map[string]string{"name": "Ann"})
	var pe *partError
	require.ErrorAs(t, err, &pe, "a missing variable is an error, not <no value>")
	require.Equal(t, "text_body", pe.part)
	require.Contains(t, pe.err.Error(), `"code"`)

	_, err = p.render(map[string]string{"name": "Ann\r\nBcc: x@evil.example", "code": "1"})
	require.ErrorAs(t, err, &pe, "no header injection through the subject")
	require.Equal(t, "subject", pe.part)

	big, err := parse(store.Variant{Locale: "en", TextBody: "{{range 100000000}}xxxxxxxx{{end}}"})
	require.NoError(t, err)
	_, err = big.render(nil)
	require.True(t, errors.Is(err, errTooLarge), "%v", err)
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	s := &Server{cfg: Config{BackoffBase: time.Second, BackoffMax: 10 * time.Second}.withDefaults()}
	s.jitter = func(n time.Duration) time.Duration { return n } // the top of each range
	require.Equal(t, time.Second, s.backoff(1))
	require.Equal(t, 2*time.Second, s.backoff(2))
	require.Equal(t, 8*time.Second, s.backoff(4))
	require.Equal(t, 10*time.Second, s.backoff(5), "capped")
	require.Equal(t, 10*time.Second, s.backoff(60), "no overflow")
	s.jitter = func(time.Duration) time.Duration { return 0 } // the bottom
	require.Equal(t, 4*time.Second, s.backoff(4))
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	require.NoError(t, Config{}.Validate(), "no driver at all is a valid laptop setup")
	err := Config{SMTP: SMTPConfig{Addr: "mail:587", TLS: "ssl"}}.Validate()
	require.ErrorContains(t, err, "TLS mode")
	require.ErrorContains(t, err, "From")
	require.ErrorContains(t, Config{SMS: WebhookConfig{URL: "ftp://x", Secret: "whsec_AAAA"}}.Validate(), "http(s)")
	require.ErrorContains(t, Config{Messaging: WebhookConfig{URL: "https://x", Secret: "nope"}}.Validate(), "secret")
}
