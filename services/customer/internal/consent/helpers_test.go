package consent_test

import (
	"context"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/customertest"
)

var spec = pgdbtest.Spec{Schema: "customer", Migrations: customer.Migrations()}

type testBundle struct {
	pool   *pgxpool.Pool
	clock  *grpcxtest.Clock // tests move it, never sleep
	client customerv1.ConsentServiceClient
	tenant string // tenant A; every bundle gets a fresh one
}

// start is a Saturday, 12:00 in Berlin: outside any night-time quiet hours.
var start = utc("2024-06-15T10:00:00Z")

// setup serves the consent API through grpcxtest, which trusts the
// principal the call's metadata names (see asTenant).
func setup(t *testing.T) *testBundle {
	t.Helper()
	b := &testBundle{
		pool:   pgdbtest.NewPool(t, spec),
		clock:  grpcxtest.NewClock(start),
		tenant: uuid.NewString(),
	}
	conn := grpcxtest.Serve(t, consent.NewServer(b.pool, b.clock.Now).Register)
	b.client = customerv1.NewConsentServiceClient(conn)
	return b
}

// as is a call context of a principal of tenant A holding roles.
func (b *testBundle) as(t testing.TB, roles ...string) context.Context {
	return asTenant(t, b.tenant, roles...)
}

func asTenant(t testing.TB, tenant string, roles ...string) context.Context {
	return metadata.AppendToOutgoingContext(t.Context(), grpcxtest.MDTenant, tenant,
		grpcxtest.MDSubject, strings.Join(roles, "+")+"@test", grpcxtest.MDRoles, strings.Join(roles, ","))
}

// admin is tenant A's admin, who may call every RPC but ConfirmConsent.
func (b *testBundle) admin(t testing.TB) context.Context { return b.as(t, "admin") }

// customer inserts a customer of tenant into the profile table directly
// (customertest), in the given time zone ("" for none).
func (b *testBundle) customer(t testing.TB, tenant, zone string) string {
	t.Helper()
	return customertest.Insert(t, b.pool, uuid.MustParse(tenant), 1, customertest.Options{TimeZone: zone})[0].String()
}

const (
	email     = customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL
	sms       = customerv1.ContactChannel_CONTACT_CHANNEL_SMS
	phone     = customerv1.ContactChannel_CONTACT_CHANNEL_PHONE
	service   = customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE
	care      = customerv1.ContactPurpose_CONTACT_PURPOSE_CARE
	marketing = customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING
	survey    = customerv1.ContactPurpose_CONTACT_PURPOSE_SURVEY

	stateGranted   = customerv1.ConsentState_CONSENT_STATE_GRANTED
	stateWithdrawn = customerv1.ConsentState_CONSENT_STATE_WITHDRAWN
	statePending   = customerv1.ConsentState_CONSENT_STATE_PENDING

	basisConsent  = customerv1.LegalBasis_LEGAL_BASIS_CONSENT
	basisContract = customerv1.LegalBasis_LEGAL_BASIS_CONTRACT
)

// set records a decision as tenant A's agent and returns the response.
func (b *testBundle) set(t testing.TB, customerID string, ch customerv1.ContactChannel, p customerv1.ContactPurpose,
	s customerv1.ConsentState, basis customerv1.LegalBasis,
) *customerv1.SetConsentResponse {
	t.Helper()
	resp, err := b.client.SetConsent(b.as(t, "agent"), &customerv1.SetConsentRequest{
		CustomerId: customerID, Channel: ch, Purpose: p, State: s, LegalBasis: basis, Source: "web-form",
	})
	require.NoError(t, err)
	return resp
}

// grant grants ch × p on the consent basis; a marketing email grant is
// confirmed at once, so the consent is granted.
func (b *testBundle) grant(t testing.TB, customerID string, ch customerv1.ContactChannel, p customerv1.ContactPurpose) {
	t.Helper()
	resp := b.set(t, customerID, ch, p, stateGranted, basisConsent)
	if tok := resp.GetConfirmationToken(); tok != "" {
		_, err := b.client.ConfirmConsent(b.as(t, "service"), &customerv1.ConfirmConsentRequest{Token: tok})
		require.NoError(t, err)
	}
}

func (b *testBundle) check(t testing.TB, customerID string, ch customerv1.ContactChannel, p customerv1.ContactPurpose) *customerv1.ContactDecision {
	t.Helper()
	d, err := b.client.CheckContact(b.as(t, "marketer"), &customerv1.CheckContactRequest{CustomerId: customerID, Channel: ch, Purpose: p})
	require.NoError(t, err)
	return d
}

func (b *testBundle) reserve(t testing.TB, customerID string, ch customerv1.ContactChannel, p customerv1.ContactPurpose,
	ref string,
) *customerv1.ReserveContactResponse {
	t.Helper()
	r, err := b.client.ReserveContact(b.as(t, "service"), &customerv1.ReserveContactRequest{
		CustomerId: customerID, Channel: ch, Purpose: p, SourceService: "outreach", Reference: ref,
	})
	require.NoError(t, err)
	return r
}

func (b *testBundle) record(t testing.TB, customerID string, ch customerv1.ContactChannel, p customerv1.ContactPurpose, ref string) {
	t.Helper()
	_, err := b.client.RecordContact(b.as(t, "service"), &customerv1.RecordContactRequest{
		CustomerId: customerID, Channel: ch, Purpose: p, SourceService: "outreach", Reference: ref,
	})
	require.NoError(t, err)
}

func (b *testBundle) setQuietHours(t testing.TB, customerID, from, to string) {
	t.Helper()
	_, err := b.client.UpdateContactPreferences(b.as(t, "agent"), &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: customerID,
			QuietHours: &customerv1.QuietHours{StartTime: from, EndTime: to}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}},
	})
	require.NoError(t, err)
}

func (b *testBundle) count(t testing.TB, query string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(t.Context(), query, args...).Scan(&n))
	return n
}

// requireRefused asserts a refusal with reason and, when next is set, the
// next allowed time.
func requireRefused(t testing.TB, d *customerv1.ContactDecision, reason customerv1.ContactRefusalReason, next string) {
	t.Helper()
	require.False(t, d.GetAllowed(), "%v", d)
	require.Equal(t, reason, d.GetReason())
	if next == "" {
		require.Nil(t, d.GetNextAllowedTime())
		return
	}
	require.Equal(t, utc(next), d.GetNextAllowedTime().AsTime())
}

// requireCode asserts err's status code and, when reason is set, its
// ErrorInfo reason.
func requireCode(t testing.TB, err error, code codes.Code, reason string) {
	t.Helper()
	s := status.Convert(err)
	require.Equal(t, code, s.Code(), "%v", err)
	if reason == "" {
		return
	}
	for _, d := range s.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			require.Equal(t, reason, ei.GetReason())
			return
		}
	}
	t.Fatalf("no ErrorInfo in %v", err)
}

// requireField asserts INVALID_ARGUMENT naming field.
func requireField(t testing.TB, err error, field string) {
	t.Helper()
	s := status.Convert(err)
	require.Equal(t, codes.InvalidArgument, s.Code(), "%v", err)
	var fields []string
	for _, d := range s.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	require.Contains(t, fields, field)
}
