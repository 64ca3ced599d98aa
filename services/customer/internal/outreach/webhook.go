package outreach

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// webhookDriver POSTs each message as JSON to the provider's URL, signed
// per Standard Webhooks: webhook-id (the delivery id, the same on every
// attempt, so the provider can drop a retry it already handled),
// webhook-timestamp (Unix seconds) and webhook-signature ("v1," and the
// base64 HMAC-SHA256 of "id.timestamp.body" under the whsec_ secret).
type webhookDriver struct {
	url    string
	signer *standardwebhooks.Webhook
	client *http.Client
	now    func() time.Time // the signature's timestamp: real time, checked by the provider
}

// newSigner checks and decodes a whsec_ secret.
func newSigner(secret string) (*standardwebhooks.Webhook, error) {
	if !strings.HasPrefix(secret, "whsec_") || len(secret) == len("whsec_") {
		return nil, errors.New(`must be "whsec_" followed by the base64 key`)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return nil, errors.New("the key after whsec_ is not base64")
	}
	return wh, nil
}

func newWebhookDriver(c WebhookConfig) (*webhookDriver, error) {
	signer, err := newSigner(c.Secret)
	if err != nil {
		return nil, err
	}
	return &webhookDriver{
		url: c.URL, signer: signer, now: time.Now,
		client: &http.Client{
			// A redirect is not followed: the signed POST goes where it was
			// configured to go, or is a provider error.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// webhookPayload is the body providers receive.
type webhookPayload struct {
	// Type is "outreach.message".
	Type       string `json:"type"`
	DeliveryID string `json:"delivery_id"`
	TenantID   string `json:"tenant_id"`
	// Channel is "sms" or "messaging".
	Channel string `json:"channel"`
	Purpose string `json:"purpose"`
	Locale  string `json:"locale,omitempty"`
	// To is the recipient's phone number.
	To   string `json:"to"`
	Text string `json:"text"`
}

// webhookReply is what a provider may answer; id becomes the provider
// message id.
type webhookReply struct {
	ID string `json:"id"`
}

// Send POSTs m. 2xx is sent; 408, 429 and 5xx are temporary, as are
// network errors and timeouts; any other status is a permanent refusal.
func (d *webhookDriver) Send(ctx context.Context, m Message) (string, error) {
	body, err := json.Marshal(webhookPayload{
		Type: "outreach.message", DeliveryID: m.DeliveryID.String(), TenantID: m.TenantID.String(),
		Channel: string(m.Channel), Purpose: string(m.Purpose), Locale: m.Locale, To: m.To, Text: m.Content.Text,
	})
	if err != nil {
		return "", fmt.Errorf("encode webhook payload: %w", err)
	}
	id, ts := m.DeliveryID.String(), d.now()
	sig, err := d.signer.Sign(id, ts, body)
	if err != nil {
		return "", fmt.Errorf("sign webhook: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return "", fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(standardwebhooks.HeaderWebhookID, id)
	req.Header.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(standardwebhooks.HeaderWebhookSignature, sig)
	resp, err := d.client.Do(req)
	if err != nil {
		return "", classify(err)
	}
	defer func() { _ = resp.Body.Close() }()
	reply, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		var r webhookReply
		_ = json.Unmarshal(reply, &r) // the id is optional
		if len(r.ID) > 200 {
			r.ID = r.ID[:200]
		}
		return r.ID, nil
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return "", &SendError{Code: "http_" + strconv.Itoa(code)}
	default:
		return "", &SendError{Code: "http_" + strconv.Itoa(code), Permanent: true, Reason: ReasonProviderRejected}
	}
}
