package compose

import (
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// profileCases are the duplicate and merge rows of the cross-tenant matrix.
// They call over gRPC whatever the row's transport; REST reaches the same
// handlers through the same interceptors (see the customer rows).
func profileCases(b *testBundle) map[string]func(t *testing.T, w world) {
	c := customerv1.NewCustomerServiceClient(b.grpcConn)
	create := func(t *testing.T, token string, cu *customerv1.Customer) *customerv1.Customer {
		t.Helper()
		got, err := c.CreateCustomer(authCtx(token), &customerv1.CreateCustomerRequest{Customer: cu})
		require.NoError(t, err)
		return got
	}
	notMerged := func(t *testing.T, w world, id string) {
		t.Helper()
		got, err := c.GetCustomer(authCtx(w.y), &customerv1.GetCustomerRequest{Id: id})
		require.NoError(t, err)
		require.Empty(t, got.GetMergedInto(), "X's attempt merged nothing of Y's")
	}
	return map[string]func(t *testing.T, w world){
		customerv1.CustomerService_FindDuplicateCustomers_FullMethodName: func(t *testing.T, w world) {
			twin := create(t, w.y, &customerv1.Customer{DisplayName: "Twin", Email: w.yCustomer.GetEmail()})
			_, err := c.FindDuplicateCustomers(authCtx(w.x), &customerv1.FindDuplicateCustomersRequest{CustomerId: w.yCustomer.GetId()})
			notFound(t, err)
			// X's own customer with Y's email has no duplicates in Y.
			mine := create(t, w.x, &customerv1.Customer{DisplayName: "Mine", Email: w.yCustomer.GetEmail()})
			resp, err := c.FindDuplicateCustomers(authCtx(w.x), &customerv1.FindDuplicateCustomersRequest{CustomerId: mine.GetId()})
			require.NoError(t, err)
			require.Empty(t, resp.GetDuplicates())
			// Y's own search works, so the case is not vacuous.
			resp, err = c.FindDuplicateCustomers(authCtx(w.y), &customerv1.FindDuplicateCustomersRequest{CustomerId: w.yCustomer.GetId()})
			require.NoError(t, err)
			require.Len(t, resp.GetDuplicates(), 1)
			require.Equal(t, twin.GetId(), resp.GetDuplicates()[0].GetCustomer().GetId())
		},
		customerv1.CustomerService_MergeCustomers_FullMethodName: func(t *testing.T, w world) {
			mine := create(t, w.x, &customerv1.Customer{DisplayName: "Mine"})
			yOther := create(t, w.y, &customerv1.Customer{DisplayName: "Y's other"})
			for _, dry := range []bool{true, false} {
				for _, ids := range [][2]string{
					{mine.GetId(), w.yCustomer.GetId()},   // Y's into X's
					{w.yCustomer.GetId(), mine.GetId()},   // X's into Y's
					{w.yCustomer.GetId(), yOther.GetId()}, // Y's into Y's, by X
				} {
					_, err := c.MergeCustomers(authCtx(w.x), &customerv1.MergeCustomersRequest{
						PrimaryId: ids[0], SourceIds: []string{ids[1]}, DryRun: dry})
					require.Equal(t, codes.NotFound, status.Code(err), "dry=%v %v: %v", dry, ids, err)
				}
			}
			notMerged(t, w, w.yCustomer.GetId())
			notMerged(t, w, yOther.GetId())
			// Y merges its own two customers.
			resp, err := c.MergeCustomers(authCtx(w.y), &customerv1.MergeCustomersRequest{
				PrimaryId: w.yCustomer.GetId(), SourceIds: []string{yOther.GetId()}})
			require.NoError(t, err)
			require.Equal(t, w.yCustomer.GetId(), resp.GetCustomer().GetId())
		},
	}
}

// TestProfileREST: the new fields, the duplicate search and the merge over
// REST: field violations name the API field, a PATCH body without a mask
// changes the address parts it carries, the merge and search routes work.
func TestProfileREST(t *testing.T) {
	b := setup(t)
	rest := restAPI{base: b.httpBase, b: b}
	token := b.token(t, uuid.NewString(), "admin-rest")

	bad := ada()
	bad.Birthday = &customerv1.Birthday{Year: 1991, Month: 2, Day: 29}
	r := rest.create(t, token, bad, "")
	require.Equal(t, codes.InvalidArgument, r.code)
	require.Equal(t, []string{"customer.birthday.day"}, r.fields)
	bad = ada()
	bad.Address = &customerv1.PostalAddress{CountryCode: "gb"}
	r = rest.create(t, token, bad, "")
	require.Equal(t, codes.InvalidArgument, r.code)
	require.Equal(t, []string{"customer.address.country_code"}, r.fields)

	full := ada()
	full.Birthday = &customerv1.Birthday{Month: 12, Day: 10}
	full.Address = &customerv1.PostalAddress{Lines: []string{"12 St James's Square"}, Locality: "London", CountryCode: "GB"}
	full.ExternalRefs = map[string]string{"shop": "C-1"}
	full.Attributes = map[string]string{"size": "38"}
	primary := rest.create(t, token, full, "")
	require.Equal(t, codes.OK, primary.code)
	require.Empty(t, cmp.Diff(full.GetAddress(), primary.customer.GetAddress(), protocmp.Transform()))

	// No updateMask: the gateway derives address.locality from the body.
	r = rest.do(t, http.MethodPatch, "/v1/customers/"+primary.customer.GetId(), token, "",
		[]byte(`{"address": {"locality": "Manchester"}}`), &customerv1.Customer{})
	require.Equal(t, codes.OK, r.code, "%v", r.fields)
	require.Equal(t, "Manchester", r.customer.GetAddress().GetLocality())
	require.Equal(t, []string{"12 St James's Square"}, r.customer.GetAddress().GetLines())

	source := rest.create(t, token, &customerv1.Customer{DisplayName: "Ada again", Email: "ada@example.com"}, "")
	require.Equal(t, codes.OK, source.code)
	dups := &customerv1.FindDuplicateCustomersResponse{}
	restOK(t, b, http.MethodGet, "/v1/customers/"+primary.customer.GetId()+":findDuplicates", token, "", nil, dups)
	require.Len(t, dups.GetDuplicates(), 1)
	require.Equal(t, source.customer.GetId(), dups.GetDuplicates()[0].GetCustomer().GetId())

	body := []byte(`{"sourceIds": ["` + source.customer.GetId() + `"]}`)
	merged := &customerv1.MergeCustomersResponse{}
	restOK(t, b, http.MethodPost, "/v1/customers/"+primary.customer.GetId()+":merge", token, uuid.NewString(), body, merged)
	require.Equal(t, primary.customer.GetId(), merged.GetCustomer().GetId())
	got := rest.get(t, token, source.customer.GetId())
	require.Equal(t, primary.customer.GetId(), got.customer.GetMergedInto())

	r = rest.do(t, http.MethodPost, "/v1/customers/"+source.customer.GetId()+":merge", token, "",
		[]byte(`{"sourceIds": ["`+primary.customer.GetId()+`"]}`), &customerv1.MergeCustomersResponse{})
	require.Equal(t, codes.FailedPrecondition, r.code)
	require.Equal(t, "CUSTOMER_MERGED", r.reason)
}
