package compose

import (
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// world is tenant Y with one customer, and tenant X's admin.
type world struct {
	api       api
	x, y      string // admin tokens of tenants X and Y
	yCustomer *customerv1.Customer
	yTenantID string
	xTenantID string
}

// notFound is the answer a cross-tenant call must get: NOT_FOUND, never
// the object and never a hint that it exists.
func notFound(t *testing.T, err error) {
	t.Helper()
	require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
}

// TestSEC01CrossTenantAccess: for every registered RPC, tenant X's admin
// acting on tenant Y's objects gets NOT_FOUND (never the object, never a
// hint it exists), lists show none of Y's objects, and creations land in
// X's tenant only. Over gRPC and REST. A registered RPC without a case here
// fails the test: a new method must say how it keeps tenants apart.
func TestSEC01CrossTenantAccess(t *testing.T) {
	b := setup(t)

	cases := map[string]func(t *testing.T, w world){
		customerv1.CustomerService_GetCustomer_FullMethodName: func(t *testing.T, w world) {
			r := w.api.get(t, w.x, w.yCustomer.GetId())
			require.Equal(t, codes.NotFound, r.code)
			require.Nil(t, r.customer)
		},
		customerv1.CustomerService_UpdateCustomer_FullMethodName: func(t *testing.T, w world) {
			r := w.api.update(t, w.x, &customerv1.Customer{Id: w.yCustomer.GetId(), DisplayName: "Mallory"}, []string{"display_name"}, "")
			require.Equal(t, codes.NotFound, r.code)
			require.Equal(t, w.yCustomer.GetDisplayName(), w.api.get(t, w.y, w.yCustomer.GetId()).customer.GetDisplayName())
		},
		customerv1.CustomerService_ListCustomers_FullMethodName: func(t *testing.T, w world) {
			r := w.api.list(t, w.x, &customerv1.ListCustomersRequest{PageSize: 500})
			require.Equal(t, codes.OK, r.code)
			require.Empty(t, r.list.GetCustomers(), "X sees none of Y's customers")
			tagged := w.api.list(t, w.x, &customerv1.ListCustomersRequest{Tag: "vip"})
			require.Empty(t, tagged.list.GetCustomers())
		},
		customerv1.CustomerService_LookupCustomers_FullMethodName: func(t *testing.T, w world) {
			byEmail := w.api.lookup(t, w.x, &customerv1.LookupCustomersRequest{
				Key: &customerv1.LookupCustomersRequest_Email{Email: w.yCustomer.GetEmail()}})
			require.Equal(t, codes.OK, byEmail.code)
			require.Empty(t, byEmail.found.GetCustomers(), "X finds none of Y's customers by email")
			byPhone := w.api.lookup(t, w.x, &customerv1.LookupCustomersRequest{
				Key: &customerv1.LookupCustomersRequest_Phone{Phone: w.yCustomer.GetPhone()}})
			require.Equal(t, codes.OK, byPhone.code)
			require.Empty(t, byPhone.found.GetCustomers(), "nor by phone")
			own := w.api.lookup(t, w.y, &customerv1.LookupCustomersRequest{
				Key: &customerv1.LookupCustomersRequest_Email{Email: w.yCustomer.GetEmail()}})
			require.Len(t, own.found.GetCustomers(), 1, "Y finds its own: the case is not vacuous")
		},
		customerv1.CustomerService_CreateCustomer_FullMethodName: func(t *testing.T, w world) {
			r := w.api.create(t, w.x, ada(), "")
			require.Equal(t, codes.OK, r.code)
			require.Equal(t, codes.NotFound, w.api.get(t, w.y, r.customer.GetId()).code, "X's creation is not in Y")
			require.Equal(t, 1, countCustomers(t, b, w.xTenantID))
			require.Equal(t, 1, countCustomers(t, b, w.yTenantID), "Y still has only its own")
		},
	}

	for m, c := range accessCases(b) {
		cases[m] = c
	}
	for m, c := range consentCases(b) {
		cases[m] = c
	}
	for _, more := range []map[string]func(t *testing.T, w world){purchaseCases(b), profileCases(b), timelineCases(b),
		careCases(b), outreachCases(b), insightCases(b), privacyCases(b)} {
		for m, c := range more {
			cases[m] = c
		}
	}
	for _, m := range registeredMethods(t, b) {
		if _, ok := cases[m]; !ok {
			t.Errorf("%s has no cross-tenant case in TestSEC01CrossTenantAccess", m)
		}
	}
	for _, a := range b.apis() {
		for m, run := range cases {
			if a.name() == "REST" && !strings.Contains(m, ".CustomerService/") && !strings.Contains(m, ".AccessService/") {
				continue // gRPC only; see consentCases
			}
			t.Run(a.name()+m, func(t *testing.T) {
				t.Parallel()
				w := world{api: a, xTenantID: uuid.NewString(), yTenantID: uuid.NewString()}
				w.x = b.token(t, w.xTenantID, "admin-x")
				w.y = b.token(t, w.yTenantID, "admin-y")
				r := a.create(t, w.y, ada(), "")
				require.Equal(t, codes.OK, r.code)
				w.yCustomer = r.customer
				run(t, w)
			})
		}
	}
}
