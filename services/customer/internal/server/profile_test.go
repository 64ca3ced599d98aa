package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

func fullProfile() *customerv1.Customer {
	return &customerv1.Customer{
		DisplayName: "Ada Lovelace", Email: "ada@example.org", Phone: "+442071234567",
		Locale: "en-GB", TimeZone: "Europe/London", Tags: []string{"vip"},
		Birthday: &customerv1.Birthday{Year: 1990, Month: 12, Day: 10},
		Address: &customerv1.PostalAddress{Lines: []string{"12 St James's Square", "Flat 3"},
			Locality: "London", Region: "Greater London", PostalCode: "SW1Y 4JH", CountryCode: "GB"},
		ExternalRefs: map[string]string{"shop": "C-1042", "crm.eu": "0031"},
		Attributes:   map[string]string{"shoe_size": "38", "newsletter_topic": "maths"},
	}
}

// TestProfileFields: every new field survives create, get, list, lookup and
// update over gRPC; each update path replaces its field whole; the clear
// columns hold only what they should.
func TestProfileFields(t *testing.T) {
	t.Parallel()
	b := newAPI(t)
	ctx := context.Background()
	opts := []cmp.Option{protocmp.Transform(), protocmp.IgnoreFields(&customerv1.Customer{}, "id", "version", "create_time", "update_time")}

	ada := b.create(t, fullProfile())

	t.Run("CreateGetListRoundTrip", func(t *testing.T) {
		require.Empty(t, cmp.Diff(fullProfile(), ada, opts...))
		require.Empty(t, cmp.Diff(ada, b.get(t, ada.GetId()), protocmp.Transform()))
		list, err := b.customers.ListCustomers(b.as(), &customerv1.ListCustomersRequest{})
		require.NoError(t, err)
		require.Len(t, list.GetCustomers(), 1)
		require.Empty(t, cmp.Diff(ada, list.GetCustomers()[0], protocmp.Transform()))
	})

	t.Run("LookupByExternalRef", func(t *testing.T) {
		resp, err := b.customers.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{
			Key: &customerv1.LookupCustomersRequest_ExternalRef{ExternalRef: &customerv1.ExternalRef{System: "shop", Ref: "C-1042"}}})
		require.NoError(t, err)
		require.Len(t, resp.GetCustomers(), 1)
		require.Empty(t, cmp.Diff(ada, resp.GetCustomers()[0], protocmp.Transform()))
		for _, ref := range []*customerv1.ExternalRef{{System: "shop", Ref: "c-1042"}, {System: "crm.eu", Ref: "C-1042"}} {
			resp, err = b.customers.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{
				Key: &customerv1.LookupCustomersRequest_ExternalRef{ExternalRef: ref}})
			require.NoError(t, err)
			require.Empty(t, resp.GetCustomers(), "refs match exactly, in their own system: %v", ref)
		}
	})

	t.Run("ClearColumnsHoldOnlyMonthDayAndCountry", func(t *testing.T) {
		var month, day int
		var country string
		var bday, addr, attrs []byte
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT birth_month, birth_day, country_code, birthday_sealed, address_sealed, attributes_sealed
			FROM customers WHERE id = $1`, ada.GetId()).Scan(&month, &day, &country, &bday, &addr, &attrs))
		require.Equal(t, []any{12, 10, "GB"}, []any{month, day, country})
		for _, ct := range [][]byte{bday, addr, attrs} {
			require.NotEmpty(t, ct)
			require.NotContains(t, string(ct), "1990")
			require.NotContains(t, string(ct), "London")
			require.NotContains(t, string(ct), "shoe_size")
		}
	})

	update := func(t *testing.T, c *customerv1.Customer, paths ...string) (*customerv1.Customer, error) {
		t.Helper()
		c.Id = ada.GetId()
		return b.customers.UpdateCustomer(b.as(), &customerv1.UpdateCustomerRequest{Customer: c,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	}

	t.Run("EachPathReplacesItsFieldWhole", func(t *testing.T) {
		want := proto.Clone(b.get(t, ada.GetId())).(*customerv1.Customer)
		got, err := update(t, &customerv1.Customer{Birthday: &customerv1.Birthday{Month: 2, Day: 29}}, "birthday")
		require.NoError(t, err)
		want.Birthday = &customerv1.Birthday{Month: 2, Day: 29}
		require.Empty(t, cmp.Diff(want, got, opts...))

		got, err = update(t, &customerv1.Customer{Address: &customerv1.PostalAddress{Locality: "Paris", CountryCode: "FR"}}, "address")
		require.NoError(t, err)
		want.Address = &customerv1.PostalAddress{Locality: "Paris", CountryCode: "FR"}
		require.Empty(t, cmp.Diff(want, got, opts...), "the old lines are gone: the address is replaced whole")

		got, err = update(t, &customerv1.Customer{ExternalRefs: map[string]string{"pos": "77"}}, "external_refs")
		require.NoError(t, err)
		want.ExternalRefs = map[string]string{"pos": "77"}
		require.Empty(t, cmp.Diff(want, got, opts...))

		got, err = update(t, &customerv1.Customer{Attributes: map[string]string{"shoe_size": "39"}}, "attributes")
		require.NoError(t, err)
		want.Attributes = map[string]string{"shoe_size": "39"}
		require.Empty(t, cmp.Diff(want, got, opts...))
		require.Empty(t, cmp.Diff(got, b.get(t, ada.GetId()), protocmp.Transform()), "what Update returned is what is stored")

		var country string
		var month int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT country_code, birth_month FROM customers WHERE id = $1`, ada.GetId()).Scan(&country, &month))
		require.Equal(t, "FR", country)
		require.Equal(t, 2, month)
		var refs int
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT count(*) FROM customer_external_refs WHERE customer_id = $1`, ada.GetId()).Scan(&refs))
		require.Equal(t, 1, refs)

		// An empty value clears.
		got, err = update(t, &customerv1.Customer{}, "birthday", "address", "external_refs", "attributes")
		require.NoError(t, err)
		require.Nil(t, got.GetBirthday())
		require.Nil(t, got.GetAddress())
		require.Empty(t, got.GetExternalRefs())
		require.Empty(t, got.GetAttributes())
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT country_code FROM customers WHERE id = $1`, ada.GetId()).Scan(&country))
		require.Empty(t, country)
	})

	t.Run("SubPathsOfBirthdayAndAddressChangeOnlyThemselves", func(t *testing.T) {
		_, err := update(t, fullProfile(), "birthday", "address")
		require.NoError(t, err)
		got, err := update(t, &customerv1.Customer{Address: &customerv1.PostalAddress{Locality: "Manchester", Lines: []string{"ignored"}},
			Birthday: &customerv1.Birthday{Year: 1985, Month: 7}}, "address.locality", "birthday.year")
		require.NoError(t, err)
		want := fullProfile()
		want.Address.Locality = "Manchester"
		want.Birthday.Year = 1985
		require.Empty(t, cmp.Diff(want.GetAddress(), got.GetAddress(), protocmp.Transform()))
		require.Empty(t, cmp.Diff(want.GetBirthday(), got.GetBirthday(), protocmp.Transform()))
		// The day it would make is checked like a whole birthday.
		_, err = update(t, &customerv1.Customer{Birthday: &customerv1.Birthday{Day: 31}}, "birthday.day")
		require.NoError(t, err, "December 31")
		_, err = update(t, &customerv1.Customer{Birthday: &customerv1.Birthday{Month: 2}}, "birthday.month")
		requireViolation(t, err, "customer.birthday.day")
		_, err = update(t, &customerv1.Customer{}, "birthday.month")
		requireViolation(t, err, "customer.birthday.month")
	})

	t.Run("UpdatedEventNamesFieldsAndCarriesNoPersonalData", func(t *testing.T) {
		_, err := update(t, &customerv1.Customer{}, "birthday", "address", "attributes", "external_refs")
		require.NoError(t, err)
		_, err = update(t, fullProfile(), "birthday", "address", "attributes", "external_refs")
		require.NoError(t, err)
		var payload []byte
		require.NoError(t, b.pool.QueryRow(ctx, `SELECT payload FROM outbox WHERE subject = 'rapport.customer.customer.updated'
			ORDER BY seq DESC LIMIT 1`).Scan(&payload))
		ev := &customerv1.CustomerUpdated{}
		require.NoError(t, proto.Unmarshal(payload, ev))
		require.Equal(t, []string{"birthday", "address", "external_refs", "attributes"}, ev.GetChangedFields())
		require.Equal(t, "GB", ev.GetCountryCode())
		for _, m := range []string{"1990", "Greater", "James", "SW1Y", "C-1042", "shoe_size", "maths"} {
			require.NotContains(t, string(payload), m)
		}
	})

	t.Run("BadInputNamesTheField", func(t *testing.T) {
		for name, tc := range map[string]struct {
			c     *customerv1.Customer
			path  string
			field string
		}{
			"Feb29NotLeap":     {&customerv1.Customer{Birthday: &customerv1.Birthday{Year: 1991, Month: 2, Day: 29}}, "birthday", "customer.birthday.day"},
			"April31":          {&customerv1.Customer{Birthday: &customerv1.Birthday{Month: 4, Day: 31}}, "birthday", "customer.birthday.day"},
			"Month13":          {&customerv1.Customer{Birthday: &customerv1.Birthday{Month: 13, Day: 1}}, "birthday", "customer.birthday.month"},
			"Future":           {&customerv1.Customer{Birthday: &customerv1.Birthday{Year: 2027, Month: 1, Day: 1}}, "birthday", "customer.birthday"},
			"Year1200":         {&customerv1.Customer{Birthday: &customerv1.Birthday{Year: 1200, Month: 1, Day: 1}}, "birthday", "customer.birthday.year"},
			"LowerCaseCountry": {&customerv1.Customer{Address: &customerv1.PostalAddress{CountryCode: "de"}}, "address", "customer.address.country_code"},
			"FourLines":        {&customerv1.Customer{Address: &customerv1.PostalAddress{Lines: []string{"a", "b", "c", "d"}}}, "address", "customer.address.lines"},
			"BadSystem":        {&customerv1.Customer{ExternalRefs: map[string]string{"Shop": "1"}}, "external_refs", "customer.external_refs"},
			"EmptyRef":         {&customerv1.Customer{ExternalRefs: map[string]string{"shop": ""}}, "external_refs", "customer.external_refs"},
			"BadAttributeKey":  {&customerv1.Customer{Attributes: map[string]string{"Shoe Size": "1"}}, "attributes", "customer.attributes"},
		} {
			t.Run(name, func(t *testing.T) {
				_, err := update(t, tc.c, tc.path)
				requireViolation(t, err, tc.field)
				c := proto.Clone(fullProfile()).(*customerv1.Customer)
				proto.Merge(c, tc.c)
				if tc.c.Birthday != nil {
					c.Birthday = tc.c.Birthday
				}
				if tc.c.Address != nil {
					c.Address = tc.c.Address
				}
				_, err = b.customers.CreateCustomer(b.as(), &customerv1.CreateCustomerRequest{Customer: c})
				requireViolation(t, err, tc.field)
			})
		}
		tooMany := map[string]string{}
		for i := range 21 {
			tooMany[fmt.Sprintf("s%d", i)] = "x"
		}
		_, err := update(t, &customerv1.Customer{ExternalRefs: tooMany}, "external_refs")
		requireViolation(t, err, "customer.external_refs")
		_, err = update(t, &customerv1.Customer{Attributes: map[string]string{"a": "b"}}, "attributes.a")
		requireViolation(t, err, "update_mask")
		_, err = update(t, &customerv1.Customer{ExternalRefs: map[string]string{"a": "b"}}, "external_refs.a")
		requireViolation(t, err, "update_mask")
		_, err = update(t, &customerv1.Customer{MergedInto: uuid.NewString()}, "merged_into")
		requireViolation(t, err, "update_mask")
		_, err = b.customers.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{
			Key: &customerv1.LookupCustomersRequest_ExternalRef{ExternalRef: &customerv1.ExternalRef{System: "shop"}}})
		requireViolation(t, err, "external_ref.ref")
	})

	t.Run("AFieldMovedToAnotherColumnDoesNotOpen", func(t *testing.T) {
		bob := b.create(t, fullProfile())
		_, err := b.pool.Exec(ctx, `UPDATE customers SET attributes_sealed = address_sealed WHERE id = $1`, bob.GetId())
		require.NoError(t, err)
		_, err = b.customers.GetCustomer(b.as(), &customerv1.GetCustomerRequest{Id: bob.GetId()})
		require.Equal(t, codes.Internal, status.Code(err))
		require.NotContains(t, status.Convert(err).Message(), "London")
	})
}

// TestFindDuplicateCustomers: email (any case), phone and external ref
// matches, each named; blind-index collisions, merged and other tenants'
// customers are not duplicates.
func TestFindDuplicateCustomers(t *testing.T) {
	t.Parallel()
	b := newAPI(t)
	ctx := context.Background()
	ada := b.create(t, &customerv1.Customer{DisplayName: "Ada", Email: "ada@example.org", Phone: "+442071234567",
		ExternalRefs: map[string]string{"shop": "C-1", "crm": "9"}})
	sameEmail := b.create(t, &customerv1.Customer{DisplayName: "A. L.", Email: "ADA@Example.org"})
	samePhoneAndRef := b.create(t, &customerv1.Customer{DisplayName: "Countess", Phone: "+442071234567",
		ExternalRefs: map[string]string{"shop": "C-1"}})
	sameRefOtherSystem := b.create(t, &customerv1.Customer{DisplayName: "Other", ExternalRefs: map[string]string{"pos": "C-1"}})
	b.create(t, &customerv1.Customer{DisplayName: "Unrelated", Email: "bob@example.org"})
	other := &apiBundle{customers: b.customers, tenant: uuid.New()}
	other.create(t, &customerv1.Customer{DisplayName: "Elsewhere", Email: "ada@example.org", ExternalRefs: map[string]string{"shop": "C-1"}})

	// An email whose blind index equals Ada's: a candidate, never a match.
	keys, err := b.sealer.LoadTenant(ctx, b.pool, b.tenant)
	require.NoError(t, err)
	want, err := keys.BlindIndex(pii.Email, "ada@example.org")
	require.NoError(t, err)
	var collision string
	for i := 0; collision == ""; i++ {
		e := fmt.Sprintf("c%d@example.org", i)
		got, err := keys.BlindIndex(pii.Email, e)
		require.NoError(t, err)
		if got == want {
			collision = e
		}
	}
	b.create(t, &customerv1.Customer{DisplayName: "Collides", Email: collision})

	find := func(t *testing.T, id string) map[string][]*customerv1.DuplicateMatch {
		t.Helper()
		resp, err := b.customers.FindDuplicateCustomers(b.as(), &customerv1.FindDuplicateCustomersRequest{CustomerId: id})
		require.NoError(t, err)
		out := map[string][]*customerv1.DuplicateMatch{}
		for _, d := range resp.GetDuplicates() {
			out[d.GetCustomer().GetId()] = d.GetMatches()
			require.NotEmpty(t, d.GetCustomer().GetDisplayName(), "duplicates come whole")
		}
		return out
	}
	email := &customerv1.DuplicateMatch{Key: customerv1.DuplicateKey_DUPLICATE_KEY_EMAIL}
	phone := &customerv1.DuplicateMatch{Key: customerv1.DuplicateKey_DUPLICATE_KEY_PHONE}
	shop := &customerv1.DuplicateMatch{Key: customerv1.DuplicateKey_DUPLICATE_KEY_EXTERNAL_REF, System: "shop"}

	t.Run("FindsEachKeyAndNamesIt", func(t *testing.T) {
		got := find(t, ada.GetId())
		require.Empty(t, cmp.Diff(map[string][]*customerv1.DuplicateMatch{
			sameEmail.GetId():       {email},
			samePhoneAndRef.GetId(): {phone, shop},
		}, got, protocmp.Transform()))
		require.NotContains(t, got, sameRefOtherSystem.GetId())
	})

	t.Run("IsSymmetric", func(t *testing.T) {
		require.Contains(t, find(t, sameEmail.GetId()), ada.GetId())
		require.Contains(t, find(t, samePhoneAndRef.GetId()), ada.GetId())
	})

	t.Run("MergedCustomersAreNoDuplicates", func(t *testing.T) {
		_, err := b.customers.MergeCustomers(b.as(), &customerv1.MergeCustomersRequest{
			PrimaryId: ada.GetId(), SourceIds: []string{sameEmail.GetId()}})
		require.NoError(t, err)
		got := find(t, ada.GetId())
		require.NotContains(t, got, sameEmail.GetId())
		require.Contains(t, got, samePhoneAndRef.GetId())
		_, err = b.customers.FindDuplicateCustomers(b.as(), &customerv1.FindDuplicateCustomersRequest{CustomerId: sameEmail.GetId()})
		requireReason(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
	})

	t.Run("AnotherTenantsCustomerIsNotFound", func(t *testing.T) {
		_, err := other.customers.FindDuplicateCustomers(other.as(), &customerv1.FindDuplicateCustomersRequest{CustomerId: ada.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.customers.FindDuplicateCustomers(b.as(), &customerv1.FindDuplicateCustomersRequest{CustomerId: "nope"})
		requireViolation(t, err, "customer_id")
	})
	require.False(t, strings.Contains(collision, "ada"))
}
