package privacy_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/pkg/pgdb/pgdbtest"
	"github.com/rapporthq/rapport/services/customer"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
	"github.com/rapporthq/rapport/services/customer/internal/server"
	"github.com/rapporthq/rapport/services/customer/internal/store"
)

var spec = pgdbtest.Spec{Schema: customer.Name, Migrations: customer.Migrations()}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testBundle is the customer service's APIs that hold personal data, with
// PrivacyService wired over them as the composer wires it, served through
// the real interceptor chain.
type testBundle struct {
	pool         *pgxpool.Pool
	clock        *grpcxtest.Clock
	suppressions *privacy.Suppressions
	customers    customerv1.CustomerServiceClient
	consents     customerv1.ConsentServiceClient
	purchases    customerv1.PurchaseServiceClient
	privacy      customerv1.PrivacyServiceClient
}

func setup(tb testing.TB) *testBundle {
	tb.Helper()
	pool := pgdbtest.NewPool(tb, spec)
	clock := grpcxtest.NewClock(t0)
	key, err := pii.GenerateMasterKey()
	require.NoError(tb, err)
	sealer, err := pii.New(pool, pii.Config{MasterKey: key})
	require.NoError(tb, err)
	repo := store.New(sealer)
	custSrv := server.New(pool, profile.NewService(repo, clock.Now), sealer)
	consentSrv := consent.NewServer(pool, clock.Now)
	supp := privacy.NewSuppressions(sealer, repo)
	consentSrv.SetSuppressor(supp)
	purchaseSrv := purchase.NewServer(pool, clock.Now)
	privSrv, err := privacy.NewServer(privacy.Deps{
		Pool: pool, Sealer: sealer, Profiles: repo, Profile: custSrv.ProfileExporter(), Now: clock.Now,
		Exporters: []lifecycle.Exporter{consentSrv.Privacy(), purchaseSrv.Privacy()},
		Erasers:   []lifecycle.Eraser{consentSrv.Privacy(), purchaseSrv.Privacy()},
	})
	require.NoError(tb, err)
	conn := grpcxtest.Serve(tb, func(r grpc.ServiceRegistrar) {
		customerv1.RegisterCustomerServiceServer(r, custSrv)
		consentSrv.Register(r)
		purchaseSrv.Register(r)
		privSrv.Register(r)
	})
	return &testBundle{
		pool: pool, clock: clock, suppressions: supp,
		customers: customerv1.NewCustomerServiceClient(conn), consents: customerv1.NewConsentServiceClient(conn),
		purchases: customerv1.NewPurchaseServiceClient(conn), privacy: customerv1.NewPrivacyServiceClient(conn),
	}
}

// Markers: personal values no audit row, log, export after erasure or
// event may contain.
const (
	markerName  = "Ada Marker-Lovelace"
	markerEmail = "ada.marker@example.com"
	markerPhone = "+4915100000042"
	markerItem  = "Engraved: for Ada Marker"
)

var markers = []string{markerName, markerEmail, markerPhone, "Marker-Lovelace", "ada.marker", "4915100000042", "Engraved",
	markerStreet, markerRef, markerAttr}

const (
	markerStreet = "12 Markerstreet"
	markerRef    = "C-MARKER-42"
	markerAttr   = "marker-shoe-size"
)

// newCustomer is a profile with every personal field set to a marker.
func newCustomer() *customerv1.Customer {
	return &customerv1.Customer{
		DisplayName: markerName, Email: markerEmail, Phone: markerPhone, Locale: "en", TimeZone: "Europe/Berlin",
		Birthday:     &customerv1.Birthday{Year: 1915, Month: 12, Day: 10},
		Address:      &customerv1.PostalAddress{Lines: []string{markerStreet}, Locality: "London", CountryCode: "GB"},
		ExternalRefs: map[string]string{"shop": markerRef}, Attributes: map[string]string{"shoe_size": markerAttr},
	}
}

func (b *testBundle) createCustomer(tb testing.TB, ctx context.Context) *customerv1.Customer {
	tb.Helper()
	c, err := b.customers.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: newCustomer()})
	require.NoError(tb, err)
	return c
}

// fill gives the customer a consent (confirmed double opt-in), contact
// preferences, a recorded contact and a purchase: something in every
// section.
func (b *testBundle) fill(tb testing.TB, tenant uuid.UUID, id string) {
	tb.Helper()
	ctx := grpcxtest.As(tenant)
	set, err := b.consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: id,
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.NoError(tb, err)
	// Confirmation is the public page's call, with a service credential.
	_, err = b.consents.ConfirmConsent(grpcxtest.AsSubject(tenant, "confirm-page", "service"),
		&customerv1.ConfirmConsentRequest{Token: set.GetConfirmationToken()})
	require.NoError(tb, err)
	_, err = b.consents.UpdateContactPreferences(ctx, &customerv1.UpdateContactPreferencesRequest{
		ContactPreferences: &customerv1.ContactPreferences{CustomerId: id,
			QuietHours: &customerv1.QuietHours{StartTime: "22:00", EndTime: "07:00"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
	require.NoError(tb, err)
	_, err = b.consents.RecordContact(ctx, &customerv1.RecordContactRequest{CustomerId: id,
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE,
		SourceService: "ticket", Reference: "t-" + uuid.NewString()})
	require.NoError(tb, err)
	eur := func(minor int64) *typev1.Money { return &typev1.Money{CurrencyCode: "EUR", AmountMinor: minor} }
	_, err = b.purchases.RecordPurchase(ctx, &customerv1.RecordPurchaseRequest{CustomerId: id, Purchase: &customerv1.Purchase{
		OrderReference: "order-" + uuid.NewString(), TotalAmount: eur(4200),
		Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE, PurchaseTime: timestamppb.New(t0.Add(-time.Hour)),
		Items: []*customerv1.PurchaseItem{{Sku: "PEN-1", Name: markerItem, Category: "pens", Quantity: 1, UnitPrice: eur(4200)}},
	}})
	require.NoError(tb, err)
}

// document is the export as a client reads it.
type document struct {
	CustomerID string                     `json:"customerId"`
	Sections   map[string]json.RawMessage `json:"sections"`
}

func (b *testBundle) export(tb testing.TB, ctx context.Context, id string) (document, string) {
	tb.Helper()
	body, err := b.privacy.ExportCustomer(ctx, &customerv1.ExportCustomerRequest{CustomerId: id})
	require.NoError(tb, err)
	require.Equal(tb, "application/json", body.GetContentType())
	var doc document
	require.NoError(tb, json.Unmarshal(body.GetData(), &doc))
	return doc, string(body.GetData())
}

func (b *testBundle) count(tb testing.TB, sql string, args ...any) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

func (b *testBundle) auditRows(tb testing.TB, tenant uuid.UUID) int {
	tb.Helper()
	return b.count(tb, `SELECT count(*) FROM pii_audit WHERE tenant_id = $1`, tenant)
}

func (b *testBundle) erasedEvents(tb testing.TB, tenant uuid.UUID) int {
	tb.Helper()
	return b.count(tb, `SELECT count(*) FROM outbox WHERE tenant_id = $1 AND subject = $2`, tenant, privacy.SubjectErased)
}
