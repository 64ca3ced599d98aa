package privacy_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit/audittest"
)

// reason returns the ErrorInfo reason of a status error.
func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// TestSEC10ExportEraseExportErase: one subject, export, erase, export,
// erase. The first export has every section with the personal data in
// clear; after the erasure nothing personal can be read anywhere (export,
// API, database), the purchases keep their amounts under the pseudonymous
// id, the address is suppressed for marketing, the governor answers
// ERASED, and the second erasure changes nothing and publishes nothing.
func TestSEC10ExportEraseExportErase(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	ctx := grpcxtest.As(tenant)
	c := b.createCustomer(t, ctx)
	b.fill(t, tenant, c.GetId())

	// Export: complete, in clear.
	doc, raw := b.export(t, ctx, c.GetId())
	require.Equal(t, c.GetId(), doc.CustomerID)
	require.ElementsMatch(t, []string{"profile", "consent", "purchases"}, keys(doc.Sections))
	var prof customerv1.ProfileExport
	require.NoError(t, protojson.Unmarshal(doc.Sections["profile"], &prof))
	require.Equal(t, markerEmail, prof.GetCustomer().GetEmail())
	require.Equal(t, markerName, prof.GetCustomer().GetDisplayName())
	require.Equal(t, markerPhone, prof.GetCustomer().GetPhone())
	require.Equal(t, int32(1915), prof.GetCustomer().GetBirthday().GetYear())
	require.Equal(t, []string{markerStreet}, prof.GetCustomer().GetAddress().GetLines())
	require.Equal(t, markerRef, prof.GetCustomer().GetExternalRefs()["shop"])
	require.Equal(t, markerAttr, prof.GetCustomer().GetAttributes()["shoe_size"])
	require.False(t, prof.GetErased())
	var cons customerv1.ConsentExport
	require.NoError(t, protojson.Unmarshal(doc.Sections["consent"], &cons))
	require.Len(t, cons.GetConsents(), 1)
	require.Len(t, cons.GetConsentEvents(), 2, "pending, then confirmed")
	require.Equal(t, "22:00", cons.GetContactPreferences().GetQuietHours().GetStartTime())
	require.Len(t, cons.GetContactTouches(), 1)
	var purch customerv1.PurchaseExport
	require.NoError(t, protojson.Unmarshal(doc.Sections["purchases"], &purch))
	require.Len(t, purch.GetPurchases(), 1)
	require.Equal(t, markerItem, purch.GetPurchases()[0].GetItems()[0].GetName())
	require.NotEmpty(t, purch.GetSegment().GetSegment())
	require.Contains(t, raw, markerEmail)

	// Erase.
	first, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId(), RequestId: uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, c.GetId(), first.GetCustomerId())
	require.Equal(t, t0, first.GetEraseTime().AsTime())
	require.Equal(t, 1, b.erasedEvents(t, tenant))

	// Export again: complete, nothing personal.
	doc, raw = b.export(t, ctx, c.GetId())
	for _, m := range markers {
		require.NotContains(t, raw, m)
	}
	require.ElementsMatch(t, []string{"profile", "consent", "purchases"}, keys(doc.Sections))
	prof.Reset()
	require.NoError(t, protojson.Unmarshal(doc.Sections["profile"], &prof))
	require.True(t, prof.GetErased())
	require.Equal(t, t0, prof.GetEraseTime().AsTime())
	require.Nil(t, prof.GetCustomer().GetBirthday())
	require.Nil(t, prof.GetCustomer().GetAddress())
	require.Empty(t, prof.GetCustomer().GetExternalRefs())
	purch.Reset()
	require.NoError(t, protojson.Unmarshal(doc.Sections["purchases"], &purch))
	require.Len(t, purch.GetPurchases(), 1, "the ledger stays, pseudonymised")
	require.Equal(t, int64(4200), purch.GetPurchases()[0].GetTotalAmount().GetAmountMinor())
	require.Equal(t, c.GetId(), purch.GetPurchases()[0].GetCustomerId())
	cons.Reset()
	require.NoError(t, protojson.Unmarshal(doc.Sections["consent"], &cons))
	require.Nil(t, cons.GetContactPreferences().GetQuietHours(), "preferences forgotten")
	require.Len(t, cons.GetConsentEvents(), 2, "the consent evidence stays")

	// Nothing readable in the database: no key, no ciphertext, no index.
	require.Zero(t, b.count(t, `SELECT count(*) FROM customer_keys WHERE tenant_id = $1`, tenant))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM customers WHERE tenant_id = $1 AND erase_time IS NOT NULL
		AND octet_length(display_name_sealed) = 0 AND email_sealed IS NULL AND phone_sealed IS NULL
		AND email_bidx IS NULL AND phone_bidx IS NULL`, tenant))

	// The API has forgotten the customer.
	_, err = b.customers.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: c.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
	found, err := b.customers.LookupCustomers(ctx, &customerv1.LookupCustomersRequest{
		Key: &customerv1.LookupCustomersRequest_Email{Email: markerEmail}})
	require.NoError(t, err)
	require.Empty(t, found.GetCustomers())

	// The governor answers ERASED; consent cannot change.
	d, err := b.consents.CheckContact(ctx, &customerv1.CheckContactRequest{CustomerId: c.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE})
	require.NoError(t, err)
	require.False(t, d.GetAllowed())
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_ERASED, d.GetReason())
	r, err := b.consents.ReserveContact(ctx, &customerv1.ReserveContactRequest{CustomerId: c.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING,
		SourceService: "outreach", Reference: "o-1"})
	require.NoError(t, err)
	require.Equal(t, customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_ERASED, r.GetDecision().GetReason())
	require.Nil(t, r.GetTouch())
	_, err = b.consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: c.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_SMS, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Equal(t, "ERASED", reason(err))

	// The address is suppressed: for outreach (normalised), and for a
	// marketing grant to a new profile that carries it.
	sup, err := b.suppressions.Email(context.Background(), b.pool, tenant, "  ADA.Marker@Example.com ")
	require.NoError(t, err)
	require.True(t, sup)
	sup, err = b.suppressions.Phone(context.Background(), b.pool, tenant, markerPhone)
	require.NoError(t, err)
	require.True(t, sup)
	sup, err = b.suppressions.Email(context.Background(), b.pool, tenant, "someone.else@example.com")
	require.NoError(t, err)
	require.False(t, sup)
	sup, err = b.suppressions.Email(context.Background(), b.pool, uuid.New(), markerEmail)
	require.NoError(t, err)
	require.False(t, sup, "suppression is per tenant")
	again := b.createCustomer(t, ctx)
	_, err = b.consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: again.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.Equal(t, codes.FailedPrecondition, status.Code(err))
	require.Equal(t, "CONTACT_SUPPRESSED", reason(err))
	_, err = b.consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: again.GetId(),
		Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE,
		State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONTRACT, Source: "web-form"})
	require.NoError(t, err, "only marketing is refused")

	// The second erasure is a no-op: same answer, no event, no change.
	b.clock.Advance(24 * 60 * 60 * 1e9)
	second, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId(), RequestId: uuid.NewString()})
	require.NoError(t, err)
	require.Equal(t, first.GetEraseTime().AsTime(), second.GetEraseTime().AsTime())
	require.Equal(t, first.GetCustomerId(), second.GetCustomerId())
	require.Equal(t, 1, b.erasedEvents(t, tenant))
	doc2, _ := b.export(t, ctx, c.GetId())
	require.JSONEq(t, string(doc.Sections["profile"]), string(doc2.Sections["profile"]))
}

func TestEraseCustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)

	t.Run("AnotherTenantsCustomerIsNotFoundAndUntouched", func(t *testing.T) {
		t.Parallel()
		x, y := uuid.New(), uuid.New()
		c := b.createCustomer(t, grpcxtest.As(y))
		_, err := b.privacy.EraseCustomer(grpcxtest.As(x), &customerv1.EraseCustomerRequest{CustomerId: c.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.privacy.ExportCustomer(grpcxtest.As(x), &customerv1.ExportCustomerRequest{CustomerId: c.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		got, err := b.customers.GetCustomer(grpcxtest.As(y), &customerv1.GetCustomerRequest{Id: c.GetId()})
		require.NoError(t, err)
		require.Equal(t, markerEmail, got.GetEmail())
		require.Zero(t, b.erasedEvents(t, y))
		require.Zero(t, b.erasedEvents(t, x))
		list, err := b.privacy.ListAuditEvents(grpcxtest.As(x), &customerv1.ListAuditEventsRequest{})
		require.NoError(t, err)
		require.Empty(t, list.GetAuditEvents(), "X sees none of Y's audit rows")
	})

	t.Run("ReplayedRequestIDReturnsTheFirstResponse", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		ctx := grpcxtest.As(tenant)
		c := b.createCustomer(t, ctx)
		req := &customerv1.EraseCustomerRequest{CustomerId: c.GetId(), RequestId: uuid.NewString()}
		first, err := b.privacy.EraseCustomer(ctx, req)
		require.NoError(t, err)
		second, err := b.privacy.EraseCustomer(ctx, req)
		require.NoError(t, err)
		require.Equal(t, first.GetEraseTime().AsTime(), second.GetEraseTime().AsTime())
		require.Equal(t, 1, b.erasedEvents(t, tenant))
	})

	t.Run("StoredResponsesAreShredded", func(t *testing.T) {
		t.Parallel()
		ctx := grpcxtest.As(uuid.New())
		create := &customerv1.CreateCustomerRequest{Customer: newCustomer(), RequestId: uuid.NewString()}
		c, err := b.customers.CreateCustomer(ctx, create)
		require.NoError(t, err)
		_, err = b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId()})
		require.NoError(t, err)
		// A retry of the creation finds its stored response unreadable.
		_, err = b.customers.CreateCustomer(ctx, create)
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.customers.UpdateCustomer(ctx, &customerv1.UpdateCustomerRequest{
			Customer: &customerv1.Customer{Id: c.GetId(), DisplayName: "Back"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
		require.Equal(t, codes.NotFound, status.Code(err), "an erased profile cannot be refilled")
	})

	t.Run("CustomersMergedIntoItGoToo", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		ctx := grpcxtest.As(tenant)
		primary := b.createCustomer(t, ctx)
		source, err := b.customers.CreateCustomer(ctx, &customerv1.CreateCustomerRequest{Customer: &customerv1.Customer{
			DisplayName: markerName, Email: "ada.marker.old@example.com"}})
		require.NoError(t, err)
		_, err = b.customers.MergeCustomers(ctx, &customerv1.MergeCustomersRequest{PrimaryId: primary.GetId(),
			SourceIds: []string{source.GetId()}})
		require.NoError(t, err)
		_, err = b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: primary.GetId()})
		require.NoError(t, err)
		require.Equal(t, 2, b.erasedEvents(t, tenant), "one customer.erased per row")
		require.Zero(t, b.count(t, `SELECT count(*) FROM customer_keys WHERE tenant_id = $1`, tenant))
		require.Zero(t, b.count(t, `SELECT count(*) FROM customers WHERE tenant_id = $1 AND erase_time IS NULL`, tenant))
		sup, err := b.suppressions.Email(context.Background(), b.pool, tenant, "ada.marker.old@example.com")
		require.NoError(t, err)
		require.True(t, sup)
	})

	t.Run("UnknownCustomerIsNotFound", func(t *testing.T) {
		t.Parallel()
		_, err := b.privacy.EraseCustomer(grpcxtest.As(uuid.New()), &customerv1.EraseCustomerRequest{CustomerId: uuid.NewString()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		t.Parallel()
		ctx := grpcxtest.As(uuid.New())
		for _, call := range []func() error{
			func() error {
				_, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: "nope"})
				return err
			},
			func() error {
				_, err := b.privacy.ExportCustomer(ctx, &customerv1.ExportCustomerRequest{CustomerId: ""})
				return err
			},
			func() error {
				_, err := b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{CustomerId: "nope"})
				return err
			},
		} {
			err := call()
			require.Equal(t, codes.InvalidArgument, status.Code(err))
			require.Contains(t, status.Convert(err).Message(), "customer_id")
		}
		_, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: uuid.NewString(), RequestId: "x"})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Contains(t, status.Convert(err).Message(), "request_id")
		_, err = b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{PageToken: "garbage"})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
		require.Contains(t, status.Convert(err).Message(), "page_token")
	})

	t.Run("OnlyAdminsMayCall", func(t *testing.T) {
		t.Parallel()
		tenant := uuid.New()
		c := b.createCustomer(t, grpcxtest.As(tenant))
		for _, role := range []string{"agent", "supervisor", "marketer", "analyst"} {
			ctx := grpcxtest.As(tenant, role)
			_, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId()})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.privacy.ExportCustomer(ctx, &customerv1.ExportCustomerRequest{CustomerId: c.GetId()})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		}
		require.Zero(t, b.erasedEvents(t, tenant))
	})
}

// TestSEC09AuditRows: every read, change, export and erasure of personal
// data writes exactly one audit row, naming fields and never a value, and
// the log refuses UPDATE and DELETE.
func TestSEC09AuditRows(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	ctx := grpcxtest.AsSubject(tenant, "staff-7", "admin")
	var c *customerv1.Customer
	var token string

	steps := []struct {
		name   string
		action customerv1.AuditAction
		call   func(t *testing.T)
	}{
		{"CreateCustomer", customerv1.AuditAction_AUDIT_ACTION_CREATE, func(t *testing.T) { c = b.createCustomer(t, ctx) }},
		{"GetCustomer", customerv1.AuditAction_AUDIT_ACTION_READ, func(t *testing.T) {
			_, err := b.customers.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: c.GetId()})
			require.NoError(t, err)
		}},
		{"ListCustomers", customerv1.AuditAction_AUDIT_ACTION_LIST, func(t *testing.T) {
			_, err := b.customers.ListCustomers(ctx, &customerv1.ListCustomersRequest{})
			require.NoError(t, err)
		}},
		{"LookupCustomers", customerv1.AuditAction_AUDIT_ACTION_LOOKUP, func(t *testing.T) {
			_, err := b.customers.LookupCustomers(ctx, &customerv1.LookupCustomersRequest{
				Key: &customerv1.LookupCustomersRequest_Phone{Phone: markerPhone}})
			require.NoError(t, err)
		}},
		{"UpdateCustomer", customerv1.AuditAction_AUDIT_ACTION_UPDATE, func(t *testing.T) {
			_, err := b.customers.UpdateCustomer(ctx, &customerv1.UpdateCustomerRequest{
				Customer:   &customerv1.Customer{Id: c.GetId(), Phone: "+4915100000043"},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"phone"}}, RequestId: uuid.NewString()})
			require.NoError(t, err)
		}},
		{"SetConsent", customerv1.AuditAction_AUDIT_ACTION_CONSENT_CHANGE, func(t *testing.T) {
			set, err := b.consents.SetConsent(ctx, &customerv1.SetConsentRequest{CustomerId: c.GetId(),
				Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING,
				State: customerv1.ConsentState_CONSENT_STATE_GRANTED, LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
			require.NoError(t, err)
			token = set.GetConfirmationToken()
		}},
		{"ConfirmConsent", customerv1.AuditAction_AUDIT_ACTION_CONSENT_CHANGE, func(t *testing.T) {
			_, err := b.consents.ConfirmConsent(grpcxtest.AsSubject(tenant, "staff-7", "service"),
				&customerv1.ConfirmConsentRequest{Token: token})
			require.NoError(t, err)
		}},
		{"UpdateContactPreferences", customerv1.AuditAction_AUDIT_ACTION_PREFERENCES_CHANGE, func(t *testing.T) {
			_, err := b.consents.UpdateContactPreferences(ctx, &customerv1.UpdateContactPreferencesRequest{
				ContactPreferences: &customerv1.ContactPreferences{CustomerId: c.GetId(),
					QuietHours: &customerv1.QuietHours{StartTime: "22:00", EndTime: "07:00"}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
			require.NoError(t, err)
		}},
		{"ExportCustomer", customerv1.AuditAction_AUDIT_ACTION_EXPORT, func(t *testing.T) { b.export(t, ctx, c.GetId()) }},
		{"EraseCustomer", customerv1.AuditAction_AUDIT_ACTION_ERASE, func(t *testing.T) {
			_, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId()})
			require.NoError(t, err)
		}},
		{"EraseCustomerAgain", customerv1.AuditAction_AUDIT_ACTION_ERASE, func(t *testing.T) {
			_, err := b.privacy.EraseCustomer(ctx, &customerv1.EraseCustomerRequest{CustomerId: c.GetId()})
			require.NoError(t, err)
		}},
	}
	for _, s := range steps {
		before := b.auditRows(t, tenant)
		s.call(t)
		require.Equal(t, before+1, b.auditRows(t, tenant), "%s writes exactly one audit row", s.name)
		list, err := b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{PageSize: 1})
		require.NoError(t, err)
		require.Len(t, list.GetAuditEvents(), 1)
		e := list.GetAuditEvents()[0]
		require.Equal(t, s.action, e.GetAction(), s.name)
		require.Equal(t, "staff-7", e.GetActor())
		require.NotEmpty(t, e.GetActorRoles())
		require.Contains(t, e.GetCustomerIds(), c.GetId(), s.name)
		require.True(t, strings.HasSuffix(e.GetMethod(), "/"+strings.TrimSuffix(s.name, "Again")), e.GetMethod())
		require.NotEmpty(t, e.GetRequestId())
	}

	// A failed read writes nothing; reading the log writes nothing.
	before := b.auditRows(t, tenant)
	_, err := b.customers.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: uuid.NewString()})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{})
	require.NoError(t, err)
	require.Equal(t, before, b.auditRows(t, tenant))

	// Field names, never values.
	all := audittest.Rows(t, b.pool, tenant)
	require.Len(t, all, len(steps))
	for _, row := range all {
		for _, m := range append(markers, "4915100000043") {
			require.NotContains(t, row.Text, m)
		}
	}
	list, err := b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{CustomerId: c.GetId()})
	require.NoError(t, err)
	require.Len(t, list.GetAuditEvents(), len(steps))
	update := list.GetAuditEvents()[len(steps)-5]
	require.Equal(t, customerv1.AuditAction_AUDIT_ACTION_UPDATE, update.GetAction())
	require.Equal(t, []string{"phone"}, update.GetFields())
	require.NotEmpty(t, update.GetIdempotencyKey())

	// Immutable.
	_, err = b.pool.Exec(context.Background(), `UPDATE pii_audit SET fields = '{}' WHERE tenant_id = $1`, tenant)
	require.ErrorContains(t, err, "append-only")
	_, err = b.pool.Exec(context.Background(), `DELETE FROM pii_audit WHERE tenant_id = $1`, tenant)
	require.ErrorContains(t, err, "append-only")
	require.Equal(t, len(steps), b.auditRows(t, tenant))
}

// TestListAuditEventsPages: pages are newest first, disjoint, complete,
// and a token is refused with another filter.
func TestListAuditEventsPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	tenant := uuid.New()
	ctx := grpcxtest.As(tenant)
	c := b.createCustomer(t, ctx)
	for range 4 {
		_, err := b.customers.GetCustomer(ctx, &customerv1.GetCustomerRequest{Id: c.GetId()})
		require.NoError(t, err)
	}
	var ids []string
	tok := ""
	for {
		page, err := b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{PageSize: 2, PageToken: tok})
		require.NoError(t, err)
		for _, e := range page.GetAuditEvents() {
			ids = append(ids, e.GetId())
		}
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
		_, err = b.privacy.ListAuditEvents(ctx, &customerv1.ListAuditEventsRequest{PageSize: 2, PageToken: tok, CustomerId: c.GetId()})
		require.Equal(t, codes.InvalidArgument, status.Code(err))
	}
	require.Len(t, ids, 5, "one create, four reads")
	for i := 1; i < len(ids); i++ {
		require.Greater(t, ids[i-1], ids[i], "newest first")
	}
}

func keys(m map[string]json.RawMessage) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
