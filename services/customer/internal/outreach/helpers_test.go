package outreach_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	profilestore "github.com/rapporthq/rapport/services/customer/internal/store"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

// t0 is a Wednesday, 10:00 UTC: outside any night-time quiet hours.
var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// whsec is the test webhook secret (the Standard Webhooks spec's example key).
const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

type testBundle struct {
	pool     *pgxpool.Pool
	sealer   *pii.Sealer
	clock    *grpcxtest.Clock
	srv      *outreach.Server
	conn     *grpc.ClientConn
	client   customerv1.OutreachServiceClient
	consents customerv1.ConsentServiceClient
	smtp     *smtpServer
	hook     *webhookServer
	tenant   uuid.UUID
	// metrics is the registry b.srv is instrumented on.
	metrics *prometheus.Registry
}

type setupOpts struct {
	// configure adjusts the configuration the test bundle builds.
	configure func(*outreach.Config)
}

func setup(t *testing.T, opts ...setupOpts) *testBundle {
	t.Helper()
	b := &testBundle{
		pool:   pgdbtest.NewPool(t, spec),
		clock:  grpcxtest.NewClock(t0),
		smtp:   startSMTP(t),
		hook:   startWebhook(t),
		tenant: uuid.New(),
	}
	master, err := pii.GenerateMasterKey()
	require.NoError(t, err)
	b.sealer, err = pii.New(b.pool, pii.Config{MasterKey: master})
	require.NoError(t, err)
	cfg := outreach.Config{
		SMTP:         outreach.SMTPConfig{Addr: b.smtp.addr, TLS: "none", From: "Acme Care <care@acme.example>"},
		SMS:          outreach.WebhookConfig{URL: b.hook.srv.URL + "/sms", Secret: whsec},
		MaxAttempts:  3,
		BackoffBase:  time.Minute,
		BackoffMax:   10 * time.Minute,
		PollInterval: 10 * time.Millisecond,
		SendTimeout:  5 * time.Second,
	}
	for _, o := range opts {
		if o.configure != nil {
			o.configure(&cfg)
		}
	}
	b.srv, err = outreach.New(b.pool, b.sealer, cfg, b.clock.Now, nil)
	require.NoError(t, err)
	b.metrics = prometheus.NewRegistry()
	require.NoError(t, b.srv.Instrument(b.metrics))
	conn := grpcxtest.Serve(t, func(r grpc.ServiceRegistrar) {
		b.srv.Register(r)
		consent.NewServer(b.pool, b.clock.Now).Register(r)
	})
	b.conn = conn
	b.client = customerv1.NewOutreachServiceClient(conn)
	b.consents = customerv1.NewConsentServiceClient(conn)
	return b
}

func (b *testBundle) ctx() context.Context { return grpcxtest.As(b.tenant) }

// person is a customer to create.
type person struct {
	email, phone, locale string
}

// newCustomer stores a customer of tenant through the profile store, so
// personal fields are sealed and indexed exactly as the profile API does.
func (b *testBundle) newCustomer(t testing.TB, tenant uuid.UUID, p person) uuid.UUID {
	t.Helper()
	id := uuid.Must(uuid.NewV7())
	b.inTx(t, func(tx pgx.Tx) {
		_, err := profilestore.New(b.sealer).Insert(context.Background(), tx, profile.Customer{
			TenantID: tenant, ID: id, DisplayName: "Test Person", Email: p.email, Phone: p.phone,
			Locale: p.locale, Tags: []string{}, CreateTime: t0, UpdateTime: t0,
		})
		require.NoError(t, err)
	})
	return id
}

// emailTemplate is a two-language email template with an HTML body.
func emailTemplate(key string) *customerv1.OutreachTemplate {
	return &customerv1.OutreachTemplate{
		Key: key, Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en",
		Variants: []*customerv1.OutreachTemplate_Variant{
			{Locale: "en", Subject: "Happy birthday, {{.first_name}}!", TextBody: "Dear {{.first_name}}, your code is {{.code}}.",
				HtmlBody: "<p>Dear {{.first_name}}, your code is <b>{{.code}}</b>.</p>"},
			{Locale: "de", Subject: "Alles Gute, {{.first_name}}!", TextBody: "Liebe(r) {{.first_name}}, Ihr Code: {{.code}}.",
				HtmlBody: "<p>Liebe(r) {{.first_name}}, Ihr Code: <b>{{.code}}</b>.</p>"},
		},
	}
}

func smsTemplate(key string) *customerv1.OutreachTemplate {
	return &customerv1.OutreachTemplate{
		Key: key, Channel: customerv1.ContactChannel_CONTACT_CHANNEL_SMS, DefaultLocale: "en",
		Variants: []*customerv1.OutreachTemplate_Variant{{Locale: "en", TextBody: "Your repair {{.ticket}} is ready."}},
	}
}

func (b *testBundle) createTemplate(t testing.TB, tpl *customerv1.OutreachTemplate) *customerv1.OutreachTemplate {
	t.Helper()
	out, err := b.client.CreateOutreachTemplate(b.ctx(), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: tpl})
	require.NoError(t, err)
	return out
}

func (b *testBundle) send(t testing.TB, req *customerv1.SendOutreachRequest) *customerv1.OutreachDelivery {
	t.Helper()
	d, err := b.client.SendOutreach(b.ctx(), req)
	require.NoError(t, err)
	return d
}

func (b *testBundle) delivery(t testing.TB, d *customerv1.OutreachDelivery) *customerv1.OutreachDelivery {
	t.Helper()
	got, err := b.client.GetOutreachDelivery(b.ctx(), &customerv1.GetOutreachDeliveryRequest{CustomerId: d.GetCustomerId(), Id: d.GetId()})
	require.NoError(t, err)
	return got
}

// deliverDue runs the worker once and returns how many it attempted.
func (b *testBundle) deliverDue(t testing.TB) int {
	t.Helper()
	n, err := b.srv.DeliverDue(context.Background())
	require.NoError(t, err)
	return n
}

// outboxEvents returns tenant's events on subject, decoded into new(T).
func outboxEvents[T proto.Message](t testing.TB, b *testBundle, tenant uuid.UUID, subject string, newT func() T) []T {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT payload FROM outbox WHERE tenant_id = $1 AND subject = $2 ORDER BY seq`, tenant, subject)
	require.NoError(t, err)
	defer rows.Close()
	var out []T
	for rows.Next() {
		var payload []byte
		require.NoError(t, rows.Scan(&payload))
		m := newT()
		require.NoError(t, proto.Unmarshal(payload, m))
		out = append(out, m)
	}
	require.NoError(t, rows.Err())
	return out
}

func sentEvents(t testing.TB, b *testBundle) []*customerv1.OutreachSent {
	return outboxEvents(t, b, b.tenant, outreach.SubjectSent, func() *customerv1.OutreachSent { return &customerv1.OutreachSent{} })
}

func failedEvents(t testing.TB, b *testBundle) []*customerv1.OutreachFailed {
	return outboxEvents(t, b, b.tenant, outreach.SubjectFailed, func() *customerv1.OutreachFailed { return &customerv1.OutreachFailed{} })
}

// inTx runs fn in a transaction that commits.
func (b *testBundle) inTx(t testing.TB, fn func(tx pgx.Tx)) {
	t.Helper()
	ctx := context.Background()
	tx, err := b.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	fn(tx)
	require.NoError(t, tx.Commit(ctx))
}

// smtpServer is a real SMTP server (emersion/go-smtp) on a loopback port,
// recording what arrives on the wire. Replies to RCPT TO can be scripted.
type smtpServer struct {
	addr string
	mu   sync.Mutex
	msgs []wireMessage
	// rcptReplies are returned by the next RCPT TO commands, in order;
	// nil accepts.
	rcptReplies []error
	rcpts       int // RCPT TO commands seen
	// user and password, when set, are required (AUTH PLAIN) before MAIL.
	user, password string
	authed         []string // users that authenticated
}

type wireMessage struct {
	From string
	To   []string
	Data []byte
}

func startSMTP(t testing.TB) *smtpServer { return startSMTPWith(t, nil) }

// startSMTPTLS starts a server offering STARTTLS with a certificate for
// 127.0.0.1 from a fresh CA, and returns the CA as a PEM file.
func startSMTPTLS(t testing.TB) (*smtpServer, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rapport test smtp"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	require.NoError(t, err)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return startSMTPWith(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), caFile
}

func startSMTPWith(t testing.TB, tlsConfig *tls.Config) *smtpServer {
	t.Helper()
	s := &smtpServer{}
	srv := smtp.NewServer(s)
	srv.Domain = "mx.test"
	srv.TLSConfig = tlsConfig
	// Without TLS the server offers AUTH too, so a test can show the
	// client refusing to send a password in clear.
	srv.AllowInsecureAuth = true
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = lis.Addr().String()
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// reject scripts the replies to the next RCPT TO commands.
func (s *smtpServer) reject(replies ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcptReplies = append(s.rcptReplies, replies...)
}

func (s *smtpServer) received() []wireMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]wireMessage(nil), s.msgs...)
}

func (s *smtpServer) rcptCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcpts
}

func (s *smtpServer) NewSession(*smtp.Conn) (smtp.Session, error) { return &smtpSession{srv: s}, nil }

type smtpSession struct {
	srv    *smtpServer
	from   string
	to     []string
	authed bool
}

func (s *smtpSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *smtpSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, password string) error {
		s.srv.mu.Lock()
		defer s.srv.mu.Unlock()
		if user != s.srv.user || password != s.srv.password {
			return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8}, Message: "bad credentials"}
		}
		s.authed = true
		s.srv.authed = append(s.srv.authed, user)
		return nil
	}), nil
}

func (s *smtpSession) Reset()        { s.from, s.to = "", nil }
func (s *smtpSession) Logout() error { return nil }

func (s *smtpSession) Mail(from string, _ *smtp.MailOptions) error {
	s.srv.mu.Lock()
	need := s.srv.user != ""
	s.srv.mu.Unlock()
	if need && !s.authed {
		return smtp.ErrAuthRequired
	}
	s.from = from
	return nil
}

func (s *smtpSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.rcpts++
	if len(s.srv.rcptReplies) > 0 {
		reply := s.srv.rcptReplies[0]
		s.srv.rcptReplies = s.srv.rcptReplies[1:]
		if reply != nil {
			return reply
		}
	}
	s.to = append(s.to, to)
	return nil
}

func (s *smtpSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.srv.mu.Lock()
	defer s.srv.mu.Unlock()
	s.srv.msgs = append(s.srv.msgs, wireMessage{From: s.from, To: s.to, Data: data})
	return nil
}

var (
	smtp451 = &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	smtp550 = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
)

// parsedMail is a received message, decoded.
type parsedMail struct {
	Header mail.Header
	Text   string
	HTML   string
}

func parseMail(t testing.TB, data []byte) parsedMail {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	out := parsedMail{Header: m.Header}
	var walk func(h map[string][]string, body io.Reader)
	walk = func(h map[string][]string, body io.Reader) {
		ct := mail.Header(h).Get("Content-Type")
		mt, params, err := mime.ParseMediaType(ct)
		require.NoError(t, err)
		if strings.HasPrefix(mt, "multipart/") {
			mr := multipart.NewReader(body, params["boundary"])
			for {
				p, err := mr.NextRawPart()
				if err == io.EOF {
					return
				}
				require.NoError(t, err)
				walk(p.Header, p)
			}
		}
		if strings.EqualFold(mail.Header(h).Get("Content-Transfer-Encoding"), "quoted-printable") {
			body = quotedprintable.NewReader(body)
		}
		b, err := io.ReadAll(body)
		require.NoError(t, err)
		switch mt {
		case "text/plain":
			out.Text = strings.TrimRight(string(b), "\r\n")
		case "text/html":
			out.HTML = strings.TrimRight(string(b), "\r\n")
		}
	}
	walk(m.Header, m.Body)
	return out
}

func decodeHeader(t testing.TB, v string) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(v)
	require.NoError(t, err)
	return s
}

// webhookServer is a provider endpoint that verifies every request's
// Standard Webhooks signature (with the official library) and answers with
// scripted statuses (200 when none is left).
type webhookServer struct {
	srv      *httptest.Server
	verifier *standardwebhooks.Webhook
	mu       sync.Mutex
	replies  []int
	// block, when set, holds the next request until it is closed.
	block chan struct{}
	reqs  []webhookRequest
}

type webhookRequest struct {
	Header      http.Header
	Body        map[string]string
	SignatureOK bool
}

func startWebhook(t testing.TB) *webhookServer {
	t.Helper()
	verifier, err := standardwebhooks.NewWebhook(whsec)
	require.NoError(t, err)
	h := &webhookServer{verifier: verifier}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *webhookServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	req := webhookRequest{Header: r.Header.Clone(), SignatureOK: h.verifier.Verify(body, r.Header) == nil}
	_ = json.Unmarshal(body, &req.Body)
	h.mu.Lock()
	h.reqs = append(h.reqs, req)
	code := http.StatusOK
	if len(h.replies) > 0 {
		code, h.replies = h.replies[0], h.replies[1:]
	}
	block := h.block
	h.block = nil
	h.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-r.Context().Done():
		}
		return
	}
	if !req.SignatureOK {
		code = http.StatusUnauthorized
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if code == http.StatusOK {
		_, _ = w.Write([]byte(`{"id":"prov-` + req.Body["delivery_id"] + `"}`))
	}
}

func (h *webhookServer) reply(codes ...int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.replies = append(h.replies, codes...)
}

func (h *webhookServer) requests() []webhookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhookRequest(nil), h.reqs...)
}

// touches counts the governor's recorded touches of a customer.
func (b *testBundle) touches(t testing.TB, customer uuid.UUID) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM contact_touches WHERE tenant_id = $1 AND customer_id = $2`, b.tenant, customer).Scan(&n))
	return n
}
