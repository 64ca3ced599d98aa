package compose

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// normalised clears what differs between two runs of the same operation
// (server-made ids and times) so results over gRPC and REST compare equal.
func normalised(r result) result {
	clear := func(c *customerv1.Customer) *customerv1.Customer {
		if c == nil {
			return nil
		}
		c = proto.Clone(c).(*customerv1.Customer)
		c.Id, c.CreateTime, c.UpdateTime = "", nil, nil
		return c
	}
	out := r
	out.customer = clear(r.customer)
	if r.list != nil {
		l := &customerv1.ListCustomersResponse{}
		for _, c := range r.list.GetCustomers() {
			l.Customers = append(l.Customers, clear(c))
		}
		if r.list.GetNextPageToken() != "" {
			l.NextPageToken = "(set)"
		}
		out.list = l
	}
	return out
}

func diffResults(want, got result) string {
	return cmp.Diff(want, got, cmp.AllowUnexported(result{}), protocmp.Transform())
}

// TestConformance runs each case over gRPC and over REST, each transport in
// its own fresh tenant, and requires equal results: the same response (but
// for server-made ids and times), the same code, message, field violations
// and reason. The HTTP status is checked against the code in restAPI.
func TestConformance(t *testing.T) {
	b := setup(t)

	// env is one transport's world: its api and a fresh tenant with an
	// admin, an analyst and one existing customer.
	type env struct {
		api      api
		admin    string
		analyst  string
		existing *customerv1.Customer
	}
	newEnv := func(t *testing.T, a api) env {
		tenant := uuid.NewString()
		e := env{api: a, admin: b.token(t, tenant, "admin")}
		e.analyst = b.tokenAs(t, tenant, "analyst", "analyst")
		r := a.create(t, e.admin, ada(), "")
		require.Equal(t, codes.OK, r.code)
		e.existing = r.customer
		return e
	}

	tooLong := ada()
	tooLong.DisplayName = string(make([]byte, 300))
	manyBad := ada()
	manyBad.Email, manyBad.Phone, manyBad.Locale = "x", "1", "??"
	key := uuid.NewString()

	cases := []struct {
		name string
		run  func(t *testing.T, e env) result
	}{
		{"CreateValid", func(t *testing.T, e env) result { return e.api.create(t, e.admin, ada(), "") }},
		{"CreateInvalidEmail", func(t *testing.T, e env) result {
			c := ada()
			c.Email = "nope"
			return e.api.create(t, e.admin, c, "")
		}},
		{"CreateSeveralInvalidFields", func(t *testing.T, e env) result { return e.api.create(t, e.admin, manyBad, "") }},
		{"CreateTooLong", func(t *testing.T, e env) result { return e.api.create(t, e.admin, tooLong, "") }},
		{"CreateReplayedByKey", func(t *testing.T, e env) result {
			first := e.api.create(t, e.admin, ada(), key)
			second := e.api.create(t, e.admin, ada(), key)
			require.Equal(t, first.customer.GetId(), second.customer.GetId(), "the replay is the first response")
			return second
		}},
		{"CreateKeyReused", func(t *testing.T, e env) result {
			k := uuid.NewString()
			e.api.create(t, e.admin, ada(), k)
			other := ada()
			other.DisplayName = "Someone Else"
			return e.api.create(t, e.admin, other, k)
		}},
		{"GetExisting", func(t *testing.T, e env) result { return e.api.get(t, e.admin, e.existing.GetId()) }},
		{"GetMissing", func(t *testing.T, e env) result { return e.api.get(t, e.admin, uuid.NewString()) }},
		{"GetBadID", func(t *testing.T, e env) result { return e.api.get(t, e.admin, "nope") }},
		{"GetWithoutToken", func(t *testing.T, e env) result { return e.api.get(t, "", e.existing.GetId()) }},
		{"GetAsAnalyst", func(t *testing.T, e env) result { return e.api.get(t, e.analyst, e.existing.GetId()) }},
		{"UpdateEmail", func(t *testing.T, e env) result {
			return e.api.update(t, e.admin, &customerv1.Customer{Id: e.existing.GetId(), Email: "new@example.com"}, []string{"email"}, "")
		}},
		{"UpdateReadOnly", func(t *testing.T, e env) result {
			return e.api.update(t, e.admin, &customerv1.Customer{Id: e.existing.GetId(), Version: 7}, []string{"version"}, "")
		}},
		{"UpdateMissing", func(t *testing.T, e env) result {
			return e.api.update(t, e.admin, &customerv1.Customer{Id: uuid.NewString(), Email: "x@example.com"}, []string{"email"}, "")
		}},
		{"ListFirstPage", func(t *testing.T, e env) result {
			return e.api.list(t, e.admin, &customerv1.ListCustomersRequest{PageSize: 1})
		}},
		{"ListBadPageSize", func(t *testing.T, e env) result {
			return e.api.list(t, e.admin, &customerv1.ListCustomersRequest{PageSize: -5})
		}},
	}
	apis := b.apis()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			overGRPC := normalised(tc.run(t, newEnv(t, apis[0])))
			overREST := normalised(tc.run(t, newEnv(t, apis[1])))
			require.Empty(t, diffResults(overGRPC, overREST), "(-gRPC +REST)")
		})
	}
}
