package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	typev1 "github.com/rapporthq/rapport/pkg/gen/rapport/type/v1"
)

func (b *apiBundle) buy(t *testing.T, customerID string, ref string, minor int64) {
	t.Helper()
	usd := &typev1.Money{CurrencyCode: "USD", AmountMinor: minor}
	_, err := b.purchases.RecordPurchase(b.as(), &customerv1.RecordPurchaseRequest{CustomerId: customerID,
		Purchase: &customerv1.Purchase{OrderReference: ref, TotalAmount: usd,
			Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_ONLINE,
			Items:   []*customerv1.PurchaseItem{{Sku: "SKU-1", Name: "Boots", Quantity: 1, UnitPrice: usd, Category: "shoes"}}}})
	require.NoError(t, err)
}

func (b *apiBundle) consent(t *testing.T, customerID string, ch customerv1.ContactChannel, state customerv1.ConsentState) {
	t.Helper()
	_, err := b.consents.SetConsent(b.as(), &customerv1.SetConsentRequest{CustomerId: customerID, Channel: ch,
		Purpose: customerv1.ContactPurpose_CONTACT_PURPOSE_CARE, State: state,
		LegalBasis: customerv1.LegalBasis_LEGAL_BASIS_CONSENT, Source: "web-form"})
	require.NoError(t, err)
}

func (b *apiBundle) consentStates(t *testing.T, customerID string) map[customerv1.ContactChannel]customerv1.ConsentState {
	t.Helper()
	resp, err := b.consents.GetConsents(b.as(), &customerv1.GetConsentsRequest{CustomerId: customerID})
	require.NoError(t, err)
	out := map[customerv1.ContactChannel]customerv1.ConsentState{}
	for _, c := range resp.GetConsents() {
		out[c.GetChannel()] = c.GetState()
	}
	return out
}

func (b *apiBundle) merge(primary string, dryRun bool, sources ...string) (*customerv1.MergeCustomersResponse, error) {
	return b.customers.MergeCustomers(b.as(), &customerv1.MergeCustomersRequest{PrimaryId: primary, SourceIds: sources, DryRun: dryRun})
}

func (b *apiBundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, b.pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// snapshot is every row of every table of the schema, as JSON, sorted: two
// equal snapshots mean nothing changed.
func (b *apiBundle) snapshot(t *testing.T) map[string][]string {
	t.Helper()
	ctx := context.Background()
	rows, err := b.pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = $1 AND table_type = 'BASE TABLE' ORDER BY 1`, spec.Schema)
	require.NoError(t, err)
	var tables []string
	for rows.Next() {
		var name string
		require.NoError(t, rows.Scan(&name))
		tables = append(tables, name)
	}
	require.NoError(t, rows.Err())
	out := map[string][]string{}
	for _, tbl := range tables {
		rows, err := b.pool.Query(ctx, fmt.Sprintf(`SELECT to_jsonb(t)::text FROM %q.%q t`, spec.Schema, tbl))
		require.NoError(t, err)
		for rows.Next() {
			var row string
			require.NoError(t, rows.Scan(&row))
			out[tbl] = append(out[tbl], row)
		}
		require.NoError(t, rows.Err())
		slices.Sort(out[tbl])
	}
	return out
}

type mergeWorld struct {
	primary, newer, older *customerv1.Customer
}

// newMergeWorld: a primary with some fields and no purchases; two sources
// with purchases, consents and the fields the primary lacks; the newer
// source was updated last.
func newMergeWorld(t *testing.T, b *apiBundle) mergeWorld {
	t.Helper()
	w := mergeWorld{}
	w.primary = b.create(t, &customerv1.Customer{DisplayName: "Ada", Email: "ada@example.org", Tags: []string{"vip"},
		ExternalRefs: map[string]string{"shop": "P-1"}, Attributes: map[string]string{"size": "38"}})
	w.older = b.create(t, &customerv1.Customer{DisplayName: "A. Lovelace (old)", Phone: "+442070000001", Locale: "en-GB",
		Tags: []string{"newsletter"}, Birthday: &customerv1.Birthday{Year: 1980, Month: 1, Day: 1},
		ExternalRefs: map[string]string{"shop": "S-OLD", "pos": "OLD"}, Attributes: map[string]string{"size": "40", "colour": "red"}})
	b.clock.Advance(time.Minute)
	w.newer = b.create(t, &customerv1.Customer{DisplayName: "A. Lovelace (new)", Phone: "+442070000002", Email: "ada@work.example.org",
		Tags: []string{"vip", "b2b"}, Birthday: &customerv1.Birthday{Month: 12, Day: 10},
		Address:      &customerv1.PostalAddress{Locality: "London", CountryCode: "GB"},
		ExternalRefs: map[string]string{"pos": "NEW", "crm": "9"}, Attributes: map[string]string{"colour": "blue"}})
	// 3 + 2 purchases of 300.00: the primary becomes "important" (R5 F4 M5).
	for i := range 3 {
		b.buy(t, w.older.GetId(), fmt.Sprintf("old-%d-%s", i, w.older.GetId()), 30_000)
	}
	for i := range 2 {
		b.buy(t, w.newer.GetId(), fmt.Sprintf("new-%d-%s", i, w.newer.GetId()), 30_000)
	}
	email, sms := customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, customerv1.ContactChannel_CONTACT_CHANNEL_SMS
	b.consent(t, w.primary.GetId(), email, customerv1.ConsentState_CONSENT_STATE_WITHDRAWN)
	b.consent(t, w.older.GetId(), email, customerv1.ConsentState_CONSENT_STATE_GRANTED)
	b.consent(t, w.older.GetId(), sms, customerv1.ConsentState_CONSENT_STATE_WITHDRAWN)
	b.clock.Advance(time.Minute)
	b.consent(t, w.newer.GetId(), sms, customerv1.ConsentState_CONSENT_STATE_GRANTED)
	return w
}

func TestMergeCustomers(t *testing.T) {
	t.Parallel()

	t.Run("MovesEverythingAndRecomputesTheSegment", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		w := newMergeWorld(t, b)
		seg, err := b.segments.GetCustomerSegment(b.as(), &customerv1.GetCustomerSegmentRequest{CustomerId: w.older.GetId()})
		require.NoError(t, err)
		require.NotEqual(t, customerv1.Segment_SEGMENT_IMPORTANT, seg.GetSegment(), "the fixture must change the segment")
		b.clock.Advance(time.Minute)

		resp, err := b.merge(w.primary.GetId(), false, w.older.GetId(), w.newer.GetId())
		require.NoError(t, err)
		got := resp.GetCustomer()

		// The primary keeps its own, fills gaps from the newer source first.
		want := proto.Clone(w.primary).(*customerv1.Customer)
		want.Phone, want.Locale = "+442070000002", "en-GB"
		want.Tags = []string{"b2b", "newsletter", "vip"}
		want.Birthday = &customerv1.Birthday{Month: 12, Day: 10}
		want.Address = &customerv1.PostalAddress{Locality: "London", CountryCode: "GB"}
		want.ExternalRefs = map[string]string{"shop": "P-1", "pos": "NEW", "crm": "9"}
		want.Attributes = map[string]string{"size": "38", "colour": "blue"}
		require.Empty(t, cmp.Diff(want, got, protocmp.Transform(),
			protocmp.IgnoreFields(&customerv1.Customer{}, "version", "update_time")))
		require.Greater(t, got.GetVersion(), w.primary.GetVersion())
		require.Empty(t, cmp.Diff(got, b.get(t, w.primary.GetId()), protocmp.Transform()))

		sections := map[string]int64{}
		for _, s := range resp.GetSections() {
			sections[s.GetSection()] = s.GetMoved()
		}
		require.Equal(t, int64(5), sections["purchases"])
		require.Equal(t, int64(2), sections["external_refs"])
		// 3 history events copied, 1 consent (sms) moved.
		require.Equal(t, int64(4), sections["consent"])

		// Sources point at the primary and are read-only.
		for _, src := range []*customerv1.Customer{w.older, w.newer} {
			s := b.get(t, src.GetId())
			require.Equal(t, w.primary.GetId(), s.GetMergedInto())
			require.NotNil(t, s.GetMergeTime())
			require.Equal(t, src.GetDisplayName(), s.GetDisplayName(), "a merged customer keeps its own profile")
			_, err := b.customers.UpdateCustomer(b.as(), &customerv1.UpdateCustomerRequest{
				Customer: &customerv1.Customer{Id: src.GetId(), DisplayName: "x"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"display_name"}}})
			requireReason(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
		}

		// Purchases and items moved; the segment follows all five.
		list, err := b.purchases.ListPurchases(b.as(), &customerv1.ListPurchasesRequest{CustomerId: w.primary.GetId()})
		require.NoError(t, err)
		require.Len(t, list.GetPurchases(), 5)
		require.Len(t, list.GetPurchases()[0].GetItems(), 1)
		seg, err = b.segments.GetCustomerSegment(b.as(), &customerv1.GetCustomerSegmentRequest{CustomerId: w.primary.GetId()})
		require.NoError(t, err)
		require.Equal(t, customerv1.Segment_SEGMENT_IMPORTANT, seg.GetSegment())
		require.Zero(t, b.count(t, `SELECT count(*) FROM customer_segments WHERE customer_id = ANY($1)`,
			[]string{w.older.GetId(), w.newer.GetId()}), "merged customers have no segment")
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE subject = 'rapport.customer.segment.changed' AND aggregate_id = $1`,
			w.primary.GetId()))

		// Consents: the primary's email stays withdrawn; sms comes from the
		// source that decided last; the sources hold none.
		require.Equal(t, map[customerv1.ContactChannel]customerv1.ConsentState{
			customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL: customerv1.ConsentState_CONSENT_STATE_WITHDRAWN,
			customerv1.ContactChannel_CONTACT_CHANNEL_SMS:   customerv1.ConsentState_CONSENT_STATE_GRANTED,
		}, b.consentStates(t, w.primary.GetId()))
		require.Empty(t, b.consentStates(t, w.older.GetId()))
		hist, err := b.consents.ListConsentEvents(b.as(), &customerv1.ListConsentEventsRequest{CustomerId: w.primary.GetId()})
		require.NoError(t, err)
		require.Len(t, hist.GetConsentEvents(), 4, "its own event and the three copied")
		var smsVersion int64
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT version FROM consent_states WHERE customer_id = $1 AND channel = 'sms'`,
			w.primary.GetId()).Scan(&smsVersion))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM consent_events WHERE customer_id = $1 AND version = $2 AND channel = 'sms' AND state = 'granted'`,
			w.primary.GetId(), smsVersion), "the moved state's version is its event's copy")

		// Lists and lookups show only the primary.
		all, err := b.customers.ListCustomers(b.as(), &customerv1.ListCustomersRequest{})
		require.NoError(t, err)
		require.Len(t, all.GetCustomers(), 1)
		require.Equal(t, w.primary.GetId(), all.GetCustomers()[0].GetId())
		for _, req := range []*customerv1.LookupCustomersRequest{
			{Key: &customerv1.LookupCustomersRequest_Phone{Phone: "+442070000001"}},
			{Key: &customerv1.LookupCustomersRequest_Email{Email: "ada@work.example.org"}},
			{Key: &customerv1.LookupCustomersRequest_ExternalRef{ExternalRef: &customerv1.ExternalRef{System: "shop", Ref: "S-OLD"}}},
		} {
			found, err := b.customers.LookupCustomers(b.as(), req)
			require.NoError(t, err)
			require.Empty(t, found.GetCustomers(), "merged customers are not found: %v", req)
		}
		found, err := b.customers.LookupCustomers(b.as(), &customerv1.LookupCustomersRequest{
			Key: &customerv1.LookupCustomersRequest_ExternalRef{ExternalRef: &customerv1.ExternalRef{System: "pos", Ref: "NEW"}}})
		require.NoError(t, err)
		require.Len(t, found.GetCustomers(), 1)
		require.Equal(t, w.primary.GetId(), found.GetCustomers()[0].GetId(), "the primary took the ref")

		// One merged event, without personal data.
		var payload []byte
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT payload FROM outbox WHERE subject = 'rapport.customer.customer.merged'`).Scan(&payload))
		ev := &customerv1.CustomerMerged{}
		require.NoError(t, proto.Unmarshal(payload, ev))
		require.Equal(t, w.primary.GetId(), ev.GetPrimaryCustomerId())
		require.ElementsMatch(t, []string{w.older.GetId(), w.newer.GetId()}, ev.GetSourceCustomerIds())
		require.Equal(t, got.GetVersion(), ev.GetAggregateVersion())
		require.Equal(t, b.tenant.String(), ev.GetTenantId())
		for _, m := range []string{"+4420", "London", "ada@"} {
			require.NotContains(t, string(payload), m)
		}
	})

	t.Run("ChainsAreRefusedBothWays", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		p := b.create(t, &customerv1.Customer{DisplayName: "P"})
		s := b.create(t, &customerv1.Customer{DisplayName: "S"})
		x := b.create(t, &customerv1.Customer{DisplayName: "X"})
		_, err := b.merge(p.GetId(), false, s.GetId())
		require.NoError(t, err)

		_, err = b.merge(s.GetId(), false, x.GetId())
		requireReason(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
		_, err = b.merge(x.GetId(), false, s.GetId())
		requireReason(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
		_, err = b.merge(x.GetId(), true, s.GetId())
		requireReason(t, err, codes.FailedPrecondition, "CUSTOMER_MERGED")
		_, err = b.merge(p.GetId(), false, p.GetId())
		requireViolation(t, err, "source_ids")
		_, err = b.merge(p.GetId(), false, x.GetId(), x.GetId())
		requireViolation(t, err, "source_ids")
		_, err = b.merge(p.GetId(), false)
		requireViolation(t, err, "source_ids")

		// Merging a merge target hands its merged customers on: no chain.
		_, err = b.merge(x.GetId(), false, p.GetId())
		require.NoError(t, err)
		require.Equal(t, x.GetId(), b.get(t, s.GetId()).GetMergedInto())
		require.Equal(t, x.GetId(), b.get(t, p.GetId()).GetMergedInto())
		require.Zero(t, b.count(t, `SELECT count(*) FROM customers c JOIN customers t ON t.tenant_id = c.tenant_id AND t.id = c.merged_into
			WHERE t.merged_into IS NOT NULL`))
	})

	t.Run("OtherTenantsAndUnknownIdsAreNotFound", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		mine := b.create(t, &customerv1.Customer{DisplayName: "Mine"})
		other := &apiBundle{customers: b.customers, tenant: uuid.New(), pool: b.pool}
		theirs := other.create(t, &customerv1.Customer{DisplayName: "Theirs"})
		theirs2 := other.create(t, &customerv1.Customer{DisplayName: "Theirs too"})
		for _, ids := range [][2]string{{mine.GetId(), theirs.GetId()}, {theirs.GetId(), mine.GetId()},
			{theirs.GetId(), theirs2.GetId()}, {mine.GetId(), uuid.NewString()}} {
			for _, dry := range []bool{false, true} {
				_, err := b.merge(ids[0], dry, ids[1])
				require.Equal(t, codes.NotFound, status.Code(err), "%v dry=%v: %v", ids, dry, err)
			}
		}
		require.Equal(t, 0, b.count(t, `SELECT count(*) FROM customers WHERE merged_into IS NOT NULL`))

		// An erased customer (its key destroyed) is gone for merges too.
		erased := b.create(t, &customerv1.Customer{DisplayName: "Erased"})
		_, err := b.pool.Exec(context.Background(), `DELETE FROM customer_keys WHERE customer_id = $1`, erased.GetId())
		require.NoError(t, err)
		_, err = b.merge(mine.GetId(), false, erased.GetId())
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		_, err = b.merge(erased.GetId(), true, mine.GetId())
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})

	t.Run("ADryRunPreviewsAndChangesNothing", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		w := newMergeWorld(t, b)
		before := b.snapshot(t)
		dry, err := b.customers.MergeCustomers(b.as(), &customerv1.MergeCustomersRequest{PrimaryId: w.primary.GetId(),
			SourceIds: []string{w.older.GetId(), w.newer.GetId()}, DryRun: true, RequestId: uuid.NewString()})
		require.NoError(t, err)
		require.True(t, dry.GetDryRun())
		after := b.snapshot(t)
		delete(before, "pii_audit") // the preview's read is audited, by design
		delete(after, "pii_audit")
		require.Empty(t, cmp.Diff(before, after), "a dry run changes no table")

		real, err := b.merge(w.primary.GetId(), false, w.older.GetId(), w.newer.GetId())
		require.NoError(t, err)
		require.False(t, real.GetDryRun())
		require.Empty(t, cmp.Diff(real.GetSections(), dry.GetSections(), protocmp.Transform()), "the preview counted what the merge moved")
		require.Empty(t, cmp.Diff(real.GetCustomer(), dry.GetCustomer(), protocmp.Transform(),
			protocmp.IgnoreFields(&customerv1.Customer{}, "update_time")))
	})

	t.Run("IdempotentByRequestID", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		p := b.create(t, &customerv1.Customer{DisplayName: "P", Email: "p@example.org"})
		s := b.create(t, &customerv1.Customer{DisplayName: "S", Phone: "+15550000001"})
		req := &customerv1.MergeCustomersRequest{PrimaryId: p.GetId(), SourceIds: []string{s.GetId()}, RequestId: uuid.NewString()}
		first, err := b.customers.MergeCustomers(b.as(), req)
		require.NoError(t, err)
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM pii_audit WHERE action = 'merge' AND customer_ids @> $1::uuid[]
			AND idempotency_key = $2`, []string{p.GetId(), s.GetId()}, req.GetRequestId()), "one audit row per merge")
		again, err := b.customers.MergeCustomers(b.as(), req)
		require.NoError(t, err, "a retry gets the first response, not ALREADY_MERGED")
		require.Empty(t, cmp.Diff(first, again, protocmp.Transform()))
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM outbox WHERE subject = 'rapport.customer.customer.merged'`))
		var stored []byte
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT response FROM idempotency_keys WHERE request_id = $1`, req.GetRequestId()).Scan(&stored))
		require.NotContains(t, string(stored), "p@example.org", "the stored response is sealed")
		require.NotContains(t, string(stored), "+15550000001")
	})

	t.Run("ConcurrentOverlappingMergesNeverChain", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		for round := range 8 {
			a := b.create(t, &customerv1.Customer{DisplayName: "A"})
			c := b.create(t, &customerv1.Customer{DisplayName: "C"})
			shared := b.create(t, &customerv1.Customer{DisplayName: "Shared"})
			b.buy(t, shared.GetId(), fmt.Sprintf("r%d", round), 1000)
			// A <- {shared, C} against C <- {shared, A}: whichever locks
			// first wins; the other finds a merged customer.
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i, m := range [][]string{{a.GetId(), shared.GetId(), c.GetId()}, {c.GetId(), shared.GetId(), a.GetId()}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = b.merge(m[0], false, m[1:]...)
				}()
			}
			wg.Wait()
			var ok, refused int
			for _, err := range errs {
				switch status.Code(err) {
				case codes.OK:
					ok++
				case codes.FailedPrecondition:
					refused++
				default:
					require.NoError(t, err)
				}
			}
			require.Equal(t, []int{1, 1}, []int{ok, refused}, "round %d: %v", round, errs)
		}
		require.Zero(t, b.count(t, `SELECT count(*) FROM customers c JOIN customers t ON t.tenant_id = c.tenant_id AND t.id = c.merged_into
			WHERE t.merged_into IS NOT NULL`), "no pointer names a merged customer")
		require.Zero(t, b.count(t, `SELECT count(*) FROM purchases p JOIN customers c ON c.tenant_id = p.tenant_id AND c.id = p.customer_id
			WHERE c.merged_into IS NOT NULL`), "no purchase stays with a merged customer")
		require.Equal(t, 8, b.count(t, `SELECT count(*) FROM outbox WHERE subject = 'rapport.customer.customer.merged'`))
	})

	t.Run("ATooLargeMergedProfileIsRefused", func(t *testing.T) {
		t.Parallel()
		b := newAPI(t)
		refs := func(prefix string) map[string]string {
			m := map[string]string{}
			for i := range 15 {
				m[fmt.Sprintf("%s%d", prefix, i)] = "x"
			}
			return m
		}
		p := b.create(t, &customerv1.Customer{DisplayName: "P", ExternalRefs: refs("a")})
		s := b.create(t, &customerv1.Customer{DisplayName: "S", ExternalRefs: refs("b")})
		_, err := b.merge(p.GetId(), false, s.GetId())
		requireReason(t, err, codes.FailedPrecondition, "MERGED_PROFILE_INVALID")
		require.Empty(t, b.get(t, s.GetId()).GetMergedInto())
	})
}

// TestMergeBesidePurchases: merges racing RecordPurchase on their sources
// never deadlock (the merge locks customers FOR NO KEY UPDATE, which the
// purchase's foreign-key checks do not wait for), and every purchase
// committed before a merge is with the primary afterwards. A purchase that
// comes after the merge is refused as for a merged customer, leaving
// nothing under the source.
func TestMergeBesidePurchases(t *testing.T) {
	t.Parallel()
	b := newAPI(t)
	for round := range 6 {
		p := b.create(t, &customerv1.Customer{DisplayName: "P"})
		s := b.create(t, &customerv1.Customer{DisplayName: "S"})
		b.buy(t, s.GetId(), fmt.Sprintf("before-%d", round), 1000)
		var wg sync.WaitGroup
		var mergeErr, buyErr error
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, mergeErr = b.merge(p.GetId(), false, s.GetId())
		}()
		go func() {
			defer wg.Done()
			usd := &typev1.Money{CurrencyCode: "USD", AmountMinor: 500}
			_, buyErr = b.purchases.RecordPurchase(b.as(), &customerv1.RecordPurchaseRequest{CustomerId: s.GetId(),
				Purchase: &customerv1.Purchase{OrderReference: fmt.Sprintf("during-%d", round), TotalAmount: usd,
					Channel: customerv1.PurchaseChannel_PURCHASE_CHANNEL_STORE,
					Items:   []*customerv1.PurchaseItem{{Sku: "SKU-2", Name: "Socks", Quantity: 1, UnitPrice: usd}}}})
		}()
		wg.Wait()
		require.NoError(t, mergeErr, "round %d", round)
		during := b.count(t, `SELECT count(*) FROM purchases WHERE order_reference = $1 AND customer_id = $2`,
			fmt.Sprintf("during-%d", round), p.GetId())
		if buyErr == nil {
			require.Equal(t, 1, during, "round %d: the purchase committed first and moved with the merge", round)
		} else {
			requireReason(t, buyErr, codes.FailedPrecondition, "CUSTOMER_MERGED")
			require.Zero(t, b.count(t, `SELECT count(*) FROM purchases WHERE order_reference = $1`,
				fmt.Sprintf("during-%d", round)), "round %d: the refused purchase left nothing", round)
		}
		require.Equal(t, 1, b.count(t, `SELECT count(*) FROM purchases WHERE order_reference = $1 AND customer_id = $2`,
			fmt.Sprintf("before-%d", round), p.GetId()))
		require.Zero(t, b.count(t, `SELECT count(*) FROM purchases WHERE customer_id = $1`, s.GetId()),
			"round %d: nothing stays with the merged source", round)
	}
}
