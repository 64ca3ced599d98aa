package compose

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/idem"
)

func ada() *customerv1.Customer {
	return &customerv1.Customer{DisplayName: "Ada Lovelace", Email: "ada@example.com", Phone: "+442071234567",
		Locale: "en-GB", TimeZone: "Europe/London", Tags: []string{"vip", "newsletter"}}
}

func TestCustomerSlice(t *testing.T) {
	b := setup(t)
	tokA := b.token(t, tenantA, "agent-a")
	tokB := b.token(t, tenantB, "agent-b")

	for _, a := range b.apis() {
		t.Run(a.name(), func(t *testing.T) {
			t.Parallel()

			t.Run("CreateGetUpdateRoundTrip", func(t *testing.T) {
				t.Parallel()
				r := a.create(t, tokA, ada(), "")
				require.Equal(t, codes.OK, r.code, r.message)
				c := r.customer
				require.NotEmpty(t, c.GetId())
				require.Equal(t, int64(1), c.GetVersion())
				require.Equal(t, []string{"newsletter", "vip"}, c.GetTags(), "tags are stored sorted")

				got := a.get(t, tokA, c.GetId())
				require.Equal(t, codes.OK, got.code, got.message)
				require.True(t, proto.Equal(c, got.customer), "get returns what create returned")

				up := a.update(t, tokA, &customerv1.Customer{Id: c.GetId(), Email: "ada@analytical.engine"}, []string{"email"}, "")
				require.Equal(t, codes.OK, up.code, up.message)
				require.Equal(t, "ada@analytical.engine", up.customer.GetEmail())
				require.Equal(t, "Ada Lovelace", up.customer.GetDisplayName(), "fields outside the mask keep their values")
				require.Equal(t, int64(2), up.customer.GetVersion())

				same := a.update(t, tokA, &customerv1.Customer{Id: c.GetId(), Email: "ada@analytical.engine"}, []string{"email"}, "")
				require.Equal(t, codes.OK, same.code)
				require.Equal(t, int64(2), same.customer.GetVersion(), "a change that changes nothing is not a new version")
			})

			t.Run("AnotherTenantsCustomerIsNotFound", func(t *testing.T) {
				t.Parallel()
				r := a.create(t, tokA, ada(), "")
				require.Equal(t, codes.OK, r.code)
				id := r.customer.GetId()

				require.Equal(t, codes.NotFound, a.get(t, tokB, id).code)
				up := a.update(t, tokB, &customerv1.Customer{Id: id, DisplayName: "Mallory"}, []string{"display_name"}, "")
				require.Equal(t, codes.NotFound, up.code)
				require.Equal(t, "Ada Lovelace", a.get(t, tokA, id).customer.GetDisplayName(), "B's update changed nothing")

				l := a.list(t, tokB, &customerv1.ListCustomersRequest{PageSize: 500})
				require.Equal(t, codes.OK, l.code)
				for _, c := range l.list.GetCustomers() {
					require.NotEqual(t, id, c.GetId(), "B's list shows A's customer")
				}
			})

			t.Run("UnauthenticatedCallsAreRefused", func(t *testing.T) {
				t.Parallel()
				require.Equal(t, codes.Unauthenticated, a.create(t, "", ada(), "").code)
				require.Equal(t, codes.Unauthenticated, a.get(t, "not-a-jwt", uuid.NewString()).code)
				forged := tokA[:len(tokA)-4] + "AAAA"
				require.Equal(t, codes.Unauthenticated, a.list(t, forged, &customerv1.ListCustomersRequest{}).code)
			})

			t.Run("BadInputNamesTheField", func(t *testing.T) {
				t.Parallel()
				with := func(f func(c *customerv1.Customer)) *customerv1.Customer {
					c := ada()
					f(c)
					return c
				}
				manyTags := make([]string, 51)
				for i := range manyTags {
					manyTags[i] = "t" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + string(rune('a'+i/26))
				}
				creates := []struct {
					name      string
					customer  *customerv1.Customer
					requestID string
					field     string
				}{
					{"DisplayNameMissing", with(func(c *customerv1.Customer) { c.DisplayName = "" }), "", "customer.display_name"},
					{"DisplayNameTooLong", with(func(c *customerv1.Customer) { c.DisplayName = strings.Repeat("a", 201) }), "", "customer.display_name"},
					{"Email", with(func(c *customerv1.Customer) { c.Email = "not-an-email" }), "", "customer.email"},
					{"EmailTooLong", with(func(c *customerv1.Customer) { c.Email = strings.Repeat("a", 250) + "@x.io" }), "", "customer.email"},
					{"Phone", with(func(c *customerv1.Customer) { c.Phone = "0171 123" }), "", "customer.phone"},
					{"Locale", with(func(c *customerv1.Customer) { c.Locale = "english!" }), "", "customer.locale"},
					{"TimeZone", with(func(c *customerv1.Customer) { c.TimeZone = "Mars/Olympus_Mons" }), "", "customer.time_zone"},
					{"TimeZoneLocal", with(func(c *customerv1.Customer) { c.TimeZone = "Local" }), "", "customer.time_zone"},
					{"TagPattern", with(func(c *customerv1.Customer) { c.Tags = []string{"Bad Tag"} }), "", "customer.tags[0]"},
					{"TagsRepeated", with(func(c *customerv1.Customer) { c.Tags = []string{"a", "a"} }), "", "customer.tags"},
					{"TooManyTags", with(func(c *customerv1.Customer) { c.Tags = manyTags }), "", "customer.tags"},
					{"RequestID", ada(), "not-a-uuid", "request_id"},
				}
				for _, tc := range creates {
					t.Run("Create"+tc.name, func(t *testing.T) {
						r := a.create(t, tokA, tc.customer, tc.requestID)
						require.Equal(t, codes.InvalidArgument, r.code, r.message)
						require.Contains(t, r.fields, tc.field)
						require.Contains(t, r.message, tc.field)
						if tc.customer.GetEmail() != "" && tc.customer.GetEmail() != "ada@example.com" {
							require.NotContains(t, r.message, tc.customer.GetEmail(), "the message never echoes the value")
						}
					})
				}

				made := a.create(t, tokA, ada(), "")
				require.Equal(t, codes.OK, made.code)
				id := made.customer.GetId()
				updates := []struct {
					name  string
					c     *customerv1.Customer
					paths []string
					field string
				}{
					{"ReadOnlyVersion", &customerv1.Customer{Id: id, Version: 9}, []string{"version"}, "update_mask"},
					{"ReadOnlyID", &customerv1.Customer{Id: id}, []string{"id"}, "update_mask"},
					{"UnknownPath", &customerv1.Customer{Id: id}, []string{"tenant_id"}, "update_mask"},
					{"Wildcard", &customerv1.Customer{Id: id}, []string{"*"}, "update_mask"},
					{"ClearDisplayName", &customerv1.Customer{Id: id}, []string{"display_name"}, "customer.display_name"},
					{"BadTimeZone", &customerv1.Customer{Id: id, TimeZone: "Nowhere/Land"}, []string{"time_zone"}, "customer.time_zone"},
					{"BadID", &customerv1.Customer{Id: "42", Email: "x@example.com"}, []string{"email"}, "customer.id"},
				}
				for _, tc := range updates {
					t.Run("Update"+tc.name, func(t *testing.T) {
						r := a.update(t, tokA, tc.c, tc.paths, "")
						require.Equal(t, codes.InvalidArgument, r.code, r.message)
						require.Contains(t, r.fields, tc.field)
					})
				}
				got := a.get(t, tokA, id)
				require.Equal(t, int64(1), got.customer.GetVersion(), "no refused update changed the customer")

				t.Run("GetID", func(t *testing.T) {
					r := a.get(t, tokA, "42")
					require.Equal(t, codes.InvalidArgument, r.code)
					require.Equal(t, []string{"id"}, r.fields)
				})
				t.Run("ListPageSizeNegative", func(t *testing.T) {
					r := a.list(t, tokA, &customerv1.ListCustomersRequest{PageSize: -1})
					require.Equal(t, codes.InvalidArgument, r.code)
					require.Equal(t, []string{"page_size"}, r.fields)
				})
				t.Run("ListPageTokenGarbage", func(t *testing.T) {
					r := a.list(t, tokA, &customerv1.ListCustomersRequest{PageToken: "garbage"})
					require.Equal(t, codes.InvalidArgument, r.code)
					require.Equal(t, []string{"page_token"}, r.fields)
				})
				t.Run("ListTag", func(t *testing.T) {
					r := a.list(t, tokA, &customerv1.ListCustomersRequest{Tag: "Not A Tag"})
					require.Equal(t, codes.InvalidArgument, r.code)
					require.Equal(t, []string{"tag"}, r.fields)
				})
			})

			t.Run("ListPagesNewestFirstAndKeepsFilters", func(t *testing.T) {
				t.Parallel()
				tenant := uuid.NewString()
				tok := b.token(t, tenant, "pager")
				var want []string
				for i := range 7 {
					c := ada()
					c.Tags = []string{"paged"}
					if i%2 == 1 {
						c.Tags = []string{"other"}
					}
					r := a.create(t, tok, c, "")
					require.Equal(t, codes.OK, r.code)
					if i%2 == 0 {
						want = append([]string{r.customer.GetId()}, want...)
					}
				}
				var got []string
				req := &customerv1.ListCustomersRequest{PageSize: 3, Tag: "paged"}
				for {
					r := a.list(t, tok, req)
					require.Equal(t, codes.OK, r.code, r.message)
					require.LessOrEqual(t, len(r.list.GetCustomers()), 3)
					for _, c := range r.list.GetCustomers() {
						got = append(got, c.GetId())
					}
					if r.list.GetNextPageToken() == "" {
						break
					}
					req.PageToken = r.list.GetNextPageToken()
				}
				require.Equal(t, want, got, "all tagged customers, newest first, each once")

				first := a.list(t, tok, &customerv1.ListCustomersRequest{PageSize: 1, Tag: "paged"})
				changed := a.list(t, tok, &customerv1.ListCustomersRequest{PageSize: 1, Tag: "other", PageToken: first.list.GetNextPageToken()})
				require.Equal(t, codes.InvalidArgument, changed.code)
				require.Equal(t, []string{"page_token"}, changed.fields)

				big := a.list(t, tok, &customerv1.ListCustomersRequest{PageSize: 100000})
				require.Equal(t, codes.OK, big.code, "an oversized page is coerced, not refused")
				require.Len(t, big.list.GetCustomers(), 7)
			})

			// IDEM-01: one key, 50 concurrent calls: one effect, 50
			// identical responses, no failures.
			t.Run("IDEM01ConcurrentRetriesCreateOnce", func(t *testing.T) {
				t.Parallel()
				tenant := uuid.NewString()
				tok := b.token(t, tenant, "retrier")
				key := uuid.NewString()
				results := make([]result, 50)
				var wg sync.WaitGroup
				for i := range results {
					wg.Go(func() { results[i] = a.create(t, tok, ada(), key) })
				}
				wg.Wait()
				for i, r := range results {
					require.Equal(t, codes.OK, r.code, "call %d: %s", i, r.message)
					require.True(t, proto.Equal(results[0].customer, r.customer), "call %d got another response", i)
				}
				require.Equal(t, 1, countCustomers(t, b, tenant))
				require.Equal(t, 1, countOutbox(t, b, tenant), "one event for one effect")
			})

			// IDEM-02: a key reused with another payload, or for another
			// method, is refused naming request_id, with no effect.
			t.Run("IDEM02ReusedKeyIsRefused", func(t *testing.T) {
				t.Parallel()
				tenant := uuid.NewString()
				tok := b.token(t, tenant, "reuser")
				key := uuid.NewString()
				first := a.create(t, tok, ada(), key)
				require.Equal(t, codes.OK, first.code)

				other := ada()
				other.DisplayName = "Charles Babbage"
				r := a.create(t, tok, other, key)
				require.Equal(t, codes.InvalidArgument, r.code)
				require.Equal(t, []string{"request_id"}, r.fields)
				require.Equal(t, idem.ReasonKeyReused, r.reason)

				up := a.update(t, tok, &customerv1.Customer{Id: first.customer.GetId(), Email: "new@example.com"}, []string{"email"}, key)
				require.Equal(t, codes.InvalidArgument, up.code)
				require.Equal(t, []string{"request_id"}, up.fields)
				require.Equal(t, idem.ReasonKeyReused, up.reason)

				require.Equal(t, 1, countCustomers(t, b, tenant))
				require.Equal(t, "ada@example.com", a.get(t, tok, first.customer.GetId()).customer.GetEmail())

				// The key belongs to its principal: another caller of the same
				// tenant using it gets its own, independent effect.
				tok2 := b.token(t, tenant, "someone-else")
				r2 := a.create(t, tok2, other, key)
				require.Equal(t, codes.OK, r2.code)
				require.Equal(t, 2, countCustomers(t, b, tenant))
			})
		})
	}
}

func countCustomers(tb testing.TB, b *testBundle, tenant string) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.customerPool(tb).QueryRow(context.Background(),
		"SELECT count(*) FROM customers WHERE tenant_id = $1", tenant).Scan(&n))
	return n
}

func countOutbox(tb testing.TB, b *testBundle, tenant string) int {
	tb.Helper()
	var n int
	require.NoError(tb, b.customerPool(tb).QueryRow(context.Background(),
		"SELECT count(*) FROM outbox WHERE tenant_id = $1", tenant).Scan(&n))
	return n
}
