package compose

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// consentCases are the ConsentService rows of the cross-tenant matrix. They
// run over gRPC; REST reaches the same handlers through the same
// interceptors, and the customer and access rows prove that path.
func consentCases(b *testBundle) map[string]func(t *testing.T, w world) {
	c := customerv1.NewConsentServiceClient(b.grpcConn)
	email, marketing := customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING
	grant := func(t *testing.T, token, customerID string) *customerv1.SetConsentResponse {
		t.Helper()
		resp, err := c.SetConsent(authCtx(token), &customerv1.SetConsentRequest{CustomerId: customerID,
			Channel: email, Purpose: marketing, State: customerv1.ConsentState_CONSENT_STATE_GRANTED,
			LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
		require.NoError(t, err)
		return resp
	}
	return map[string]func(t *testing.T, w world){
		customerv1.ConsentService_GetConsents_FullMethodName: func(t *testing.T, w world) {
			_, err := c.GetConsents(authCtx(w.x), &customerv1.GetConsentsRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.ConsentService_SetConsent_FullMethodName: func(t *testing.T, w world) {
			_, err := c.SetConsent(authCtx(w.x), &customerv1.SetConsentRequest{CustomerId: w.yCustomer.GetId(),
				Channel: email, Purpose: marketing, State: customerv1.ConsentState_CONSENT_STATE_WITHDRAWN,
				LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
			notFound(t, err)
			events, err := c.ListConsentEvents(authCtx(w.y), &customerv1.ListConsentEventsRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Empty(t, events.GetConsentEvents(), "X's attempt left nothing in Y's history")
		},
		customerv1.ConsentService_ListConsentEvents_FullMethodName: func(t *testing.T, w world) {
			grant(t, w.y, w.yCustomer.GetId())
			_, err := c.ListConsentEvents(authCtx(w.x), &customerv1.ListConsentEventsRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.ConsentService_ConfirmConsent_FullMethodName: func(t *testing.T, w world) {
			pending := grant(t, w.y, w.yCustomer.GetId())
			require.NotEmpty(t, pending.GetConfirmationToken(), "marketing email needs double opt-in")
			// Confirmation is the public page's call, made with a service
			// credential of the tenant.
			service := func(tenant string) string { return b.tokenAs(t, tenant, "confirm-page", "service") }
			_, err := c.ConfirmConsent(authCtx(service(w.xTenantID)), &customerv1.ConfirmConsentRequest{Token: pending.GetConfirmationToken()})
			notFound(t, err)
			// The token still works for its own tenant: X's attempt spent nothing.
			_, err = c.ConfirmConsent(authCtx(service(w.yTenantID)), &customerv1.ConfirmConsentRequest{Token: pending.GetConfirmationToken()})
			require.NoError(t, err)
		},
		customerv1.ConsentService_GetContactPreferences_FullMethodName: func(t *testing.T, w world) {
			_, err := c.GetContactPreferences(authCtx(w.x), &customerv1.GetContactPreferencesRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
		},
		customerv1.ConsentService_UpdateContactPreferences_FullMethodName: func(t *testing.T, w world) {
			_, err := c.UpdateContactPreferences(authCtx(w.x), &customerv1.UpdateContactPreferencesRequest{
				ContactPreferences: &customerv1.ContactPreferences{CustomerId: w.yCustomer.GetId(),
					QuietHours: &customerv1.QuietHours{StartTime: "00:00", EndTime: "23:59"}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"quiet_hours"}}})
			notFound(t, err)
			prefs, err := c.GetContactPreferences(authCtx(w.y), &customerv1.GetContactPreferencesRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Nil(t, prefs.GetQuietHours(), "Y's preferences unchanged")
		},
		customerv1.ConsentService_CheckContact_FullMethodName: func(t *testing.T, w world) {
			_, err := c.CheckContact(authCtx(w.x), &customerv1.CheckContactRequest{CustomerId: w.yCustomer.GetId(),
				Channel: email, Purpose: marketing})
			notFound(t, err)
		},
		customerv1.ConsentService_ReserveContact_FullMethodName: func(t *testing.T, w world) {
			_, err := c.ReserveContact(authCtx(w.x), &customerv1.ReserveContactRequest{CustomerId: w.yCustomer.GetId(),
				Channel: email, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE, SourceService: "ticket", Reference: "t-1"})
			notFound(t, err)
		},
		customerv1.ConsentService_RecordContact_FullMethodName: func(t *testing.T, w world) {
			_, err := c.RecordContact(authCtx(w.x), &customerv1.RecordContactRequest{CustomerId: w.yCustomer.GetId(),
				Channel: email, Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE, SourceService: "ticket", Reference: "t-1"})
			notFound(t, err)
		},
		customerv1.ConsentService_GetContactPolicy_FullMethodName: func(t *testing.T, w world) {
			_, err := c.UpdateContactPolicy(authCtx(w.y), &customerv1.UpdateContactPolicyRequest{
				ContactPolicy: &customerv1.ContactPolicy{MarketingCap: &customerv1.FrequencyCap{MaxContacts: 9,
					Period: durationpb.New(24 * time.Hour)}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"marketing_cap"}}})
			require.NoError(t, err)
			xp, err := c.GetContactPolicy(authCtx(w.x), &customerv1.GetContactPolicyRequest{})
			require.NoError(t, err)
			require.NotEqual(t, int32(9), xp.GetMarketingCap().GetMaxContacts(), "X reads its own policy, not Y's")
		},
		customerv1.ConsentService_UpdateContactPolicy_FullMethodName: func(t *testing.T, w world) {
			before, err := c.GetContactPolicy(authCtx(w.y), &customerv1.GetContactPolicyRequest{})
			require.NoError(t, err)
			_, err = c.UpdateContactPolicy(authCtx(w.x), &customerv1.UpdateContactPolicyRequest{
				ContactPolicy: &customerv1.ContactPolicy{MarketingCap: &customerv1.FrequencyCap{MaxContacts: 7,
					Period: durationpb.New(24 * time.Hour)}},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"marketing_cap"}}})
			require.NoError(t, err)
			after, err := c.GetContactPolicy(authCtx(w.y), &customerv1.GetContactPolicyRequest{})
			require.NoError(t, err)
			require.Equal(t, before.GetMarketingCap().GetMaxContacts(), after.GetMarketingCap().GetMaxContacts(),
				"X's policy change left Y's alone")
		},
	}
}
