package timeline_test

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

const (
	note  = customerv1.InteractionKind_INTERACTION_KIND_NOTE
	call  = customerv1.InteractionKind_INTERACTION_KIND_CALL
	visit = customerv1.InteractionKind_INTERACTION_KIND_VISIT
	email = customerv1.InteractionKind_INTERACTION_KIND_EMAIL
	chat  = customerv1.InteractionKind_INTERACTION_KIND_CHAT

	inbound  = customerv1.InteractionDirection_INTERACTION_DIRECTION_INBOUND
	outbound = customerv1.InteractionDirection_INTERACTION_DIRECTION_OUTBOUND
)

func create(customerID uuid.UUID, in *customerv1.Interaction) *customerv1.CreateInteractionRequest {
	return &customerv1.CreateInteractionRequest{CustomerId: customerID.String(), Interaction: in}
}

func TestCreateInteraction(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)

	t.Run("DefaultsToNowAndTheCaller", func(t *testing.T) {
		got, err := b.client.CreateInteraction(agent(b.tenant), create(c, &customerv1.Interaction{
			Kind: call, Direction: inbound, Summary: "Asked about the refund", Body: "Ada called from her mobile; she wants the refund to her card."}))
		require.NoError(t, err)
		want := &customerv1.Interaction{CustomerId: c.String(), Kind: call, Direction: inbound,
			OccurTime: timestamppb.New(start), AgentId: "agent-7", Summary: "Asked about the refund",
			Body: "Ada called from her mobile; she wants the refund to her card.", CreateTime: timestamppb.New(start)}
		require.Empty(t, cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&customerv1.Interaction{}, "id")))
		again, err := b.client.GetInteraction(agent(b.tenant), &customerv1.GetInteractionRequest{CustomerId: c.String(), Id: got.GetId()})
		require.NoError(t, err)
		require.Empty(t, cmp.Diff(got, again, protocmp.Transform()))
	})

	t.Run("StoresTheTextSealed", func(t *testing.T) {
		const marker = "MARKER-7f3a-sealed-text"
		got, err := b.client.CreateInteraction(agent(b.tenant), create(c, &customerv1.Interaction{
			Kind: note, Summary: marker, Body: marker + " body"}))
		require.NoError(t, err)
		var summary, body []byte
		require.NoError(t, b.pool.QueryRow(context.Background(),
			"SELECT summary_sealed, body_sealed FROM interactions WHERE id = $1", got.GetId()).Scan(&summary, &body))
		require.NotEmpty(t, summary)
		require.NotEmpty(t, body)
		require.False(t, bytes.Contains(summary, []byte(marker)))
		require.False(t, bytes.Contains(body, []byte(marker)))
		var leaked int
		require.NoError(t, b.pool.QueryRow(context.Background(), `SELECT count(*) FROM idempotency_keys
			WHERE position($1::bytea IN response) > 0 OR position($1::bytea IN request_hash) > 0`, []byte(marker)).Scan(&leaked))
		require.Zero(t, leaked)
	})

	t.Run("TakesAnAgentAndAPastTime", func(t *testing.T) {
		at := start.Add(-72 * time.Hour)
		got, err := b.client.CreateInteraction(agent(b.tenant), create(c, &customerv1.Interaction{
			Kind: visit, OccurTime: timestamppb.New(at), AgentId: "shop-berlin-2", Summary: "Tried on the boots"}))
		require.NoError(t, err)
		require.Equal(t, "shop-berlin-2", got.GetAgentId())
		require.True(t, got.GetOccurTime().AsTime().Equal(at))
		require.Equal(t, customerv1.InteractionDirection_INTERACTION_DIRECTION_UNSPECIFIED, got.GetDirection())
	})

	t.Run("AcceptsSmallClockSkew", func(t *testing.T) {
		_, err := b.client.CreateInteraction(agent(b.tenant), create(c, &customerv1.Interaction{
			Kind: chat, Direction: outbound, OccurTime: timestamppb.New(start.Add(4 * time.Minute)), Summary: "Sent the tracking link"}))
		require.NoError(t, err)
	})

	t.Run("UnknownCustomerIsNotFound", func(t *testing.T) {
		_, err := b.client.CreateInteraction(agent(b.tenant), create(uuid.New(), &customerv1.Interaction{Kind: note, Summary: "x"}))
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})

	t.Run("ErasedCustomerIsNotFound", func(t *testing.T) {
		gone := b.newCustomer(t, b.tenant)
		b.erase(t, b.tenant, gone)
		_, err := b.client.CreateInteraction(agent(b.tenant), create(gone, &customerv1.Interaction{Kind: note, Summary: "x"}))
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		_, err = b.client.ListInteractions(agent(b.tenant), &customerv1.ListInteractionsRequest{CustomerId: gone.String()})
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})

	t.Run("AnotherTenantsCustomerIsNotFound", func(t *testing.T) {
		other := uuid.New()
		b.newCustomer(t, other) // the other tenant has keys too
		_, err := b.client.CreateInteraction(agent(other), create(c, &customerv1.Interaction{Kind: note, Summary: "x"}))
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
		// A tenant that never had a customer (no keys) gets the same answer.
		_, err = b.client.CreateInteraction(agent(uuid.New()), create(c, &customerv1.Interaction{Kind: note, Summary: "x"}))
		require.Equal(t, codes.NotFound, status.Code(err), "%v", err)
	})
}

func TestCreateInteractionIsIdempotent(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)
	req := create(c, &customerv1.Interaction{Kind: call, Direction: outbound, Summary: "Follow-up", Body: "Left a voicemail"})
	req.RequestId = uuid.NewString()

	t.Run("ConcurrentRetriesStoreOneEntry", func(t *testing.T) {
		const n = 20
		got := make([]*customerv1.Interaction, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { got[i], errs[i] = b.client.CreateInteraction(agent(b.tenant), req) })
		}
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			require.Empty(t, cmp.Diff(got[0], got[i], protocmp.Transform()), "every retry gets the first response")
		}
		require.Equal(t, "Left a voicemail", got[n-1].GetBody(), "a replay reads the text back")
		require.Equal(t, 1, b.count(t, b.tenant, c))
	})

	t.Run("LaterRetryGetsTheFirstEntry", func(t *testing.T) {
		b.clock.Advance(time.Hour)
		first, err := b.client.CreateInteraction(agent(b.tenant), req)
		require.NoError(t, err)
		require.True(t, first.GetOccurTime().AsTime().Equal(start), "the replay is the first entry, not a new one at the new time")
		require.Equal(t, 1, b.count(t, b.tenant, c))
	})

	t.Run("KeyReusedWithAnotherPayloadNamesRequestID", func(t *testing.T) {
		other := create(c, &customerv1.Interaction{Kind: call, Direction: outbound, Summary: "Follow-up", Body: "Spoke to her"})
		other.RequestId = req.GetRequestId()
		_, err := b.client.CreateInteraction(agent(b.tenant), other)
		require.Equal(t, []string{"request_id"}, badFields(t, err))
		require.Equal(t, 1, b.count(t, b.tenant, c))
	})

	t.Run("NoRequestIDMeansNewEntries", func(t *testing.T) {
		plain := create(c, &customerv1.Interaction{Kind: note, Summary: "twice"})
		for range 2 {
			_, err := b.client.CreateInteraction(agent(b.tenant), plain)
			require.NoError(t, err)
		}
		require.Equal(t, 3, b.count(t, b.tenant, c))
	})
}

func TestBadInputNamesTheField(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)
	ok := func() *customerv1.Interaction { return &customerv1.Interaction{Kind: note, Summary: "fine"} }
	cases := map[string]struct {
		req  *customerv1.CreateInteractionRequest
		want string
	}{
		"CustomerID":            {&customerv1.CreateInteractionRequest{CustomerId: "nope", Interaction: ok()}, "customer_id"},
		"MissingInteraction":    {&customerv1.CreateInteractionRequest{CustomerId: c.String()}, "interaction"},
		"RequestID":             {&customerv1.CreateInteractionRequest{CustomerId: c.String(), Interaction: ok(), RequestId: "x"}, "request_id"},
		"UnspecifiedKind":       {create(c, &customerv1.Interaction{Summary: "x"}), "interaction.kind"},
		"ProjectedKind":         {create(c, &customerv1.Interaction{Kind: customerv1.InteractionKind_INTERACTION_KIND_PURCHASE, Summary: "x"}), "interaction.kind"},
		"UnknownKind":           {create(c, &customerv1.Interaction{Kind: 99, Summary: "x"}), "interaction.kind"},
		"DirectionOnANote":      {create(c, &customerv1.Interaction{Kind: note, Direction: inbound, Summary: "x"}), "interaction.direction"},
		"DirectionOnAVisit":     {create(c, &customerv1.Interaction{Kind: visit, Direction: outbound}), "interaction.direction"},
		"UnknownDirection":      {create(c, &customerv1.Interaction{Kind: call, Direction: 7}), "interaction.direction"},
		"EmptyNote":             {create(c, &customerv1.Interaction{Kind: note, Summary: "  "}), "interaction.summary"},
		"LongSummary":           {create(c, &customerv1.Interaction{Kind: note, Summary: strings.Repeat("a", 201)}), "interaction.summary"},
		"LongBody":              {create(c, &customerv1.Interaction{Kind: note, Body: strings.Repeat("a", 10001)}), "interaction.body"},
		"FutureTime":            {create(c, &customerv1.Interaction{Kind: note, Summary: "x", OccurTime: timestamppb.New(start.Add(6 * time.Minute))}), "interaction.occur_time"},
		"ZeroTime":              {create(c, &customerv1.Interaction{Kind: note, Summary: "x", OccurTime: &timestamppb.Timestamp{}}), "interaction.occur_time"},
		"AgentWithSpace":        {create(c, &customerv1.Interaction{Kind: note, Summary: "x", AgentId: "an agent"}), "interaction.agent_id"},
		"AgentTooLong":          {create(c, &customerv1.Interaction{Kind: note, Summary: "x", AgentId: strings.Repeat("a", 201)}), "interaction.agent_id"},
		"OutOfRangeTime":        {create(c, &customerv1.Interaction{Kind: note, Summary: "x", OccurTime: &timestamppb.Timestamp{Seconds: 1 << 62}}), "interaction.occur_time"},
		"CallWithoutTextIsFine": {create(c, &customerv1.Interaction{Kind: call}), ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := b.client.CreateInteraction(agent(b.tenant), tc.req)
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Contains(t, badFields(t, err), tc.want)
		})
	}

	lists := map[string]struct {
		req  *customerv1.ListInteractionsRequest
		want string
	}{
		"CustomerID":      {&customerv1.ListInteractionsRequest{CustomerId: "x"}, "customer_id"},
		"NegativePage":    {&customerv1.ListInteractionsRequest{CustomerId: c.String(), PageSize: -1}, "page_size"},
		"GarbageToken":    {&customerv1.ListInteractionsRequest{CustomerId: c.String(), PageToken: "%%%"}, "page_token"},
		"UnspecifiedKind": {&customerv1.ListInteractionsRequest{CustomerId: c.String(), Kinds: []customerv1.InteractionKind{call, 0}}, "kinds[1]"},
		"UnknownKind":     {&customerv1.ListInteractionsRequest{CustomerId: c.String(), Kinds: []customerv1.InteractionKind{99}}, "kinds[0]"},
	}
	for name, tc := range lists {
		t.Run("List"+name, func(t *testing.T) {
			_, err := b.client.ListInteractions(agent(b.tenant), tc.req)
			require.Contains(t, badFields(t, err), tc.want)
		})
	}
	t.Run("GetID", func(t *testing.T) {
		_, err := b.client.GetInteraction(agent(b.tenant), &customerv1.GetInteractionRequest{CustomerId: c.String(), Id: "1"})
		require.Contains(t, badFields(t, err), "id")
	})
	require.Equal(t, 1, b.count(t, b.tenant, c), "only the valid request stored anything")
}

func TestListInteractions(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := b.newCustomer(t, b.tenant)
	ctx := agent(b.tenant)
	at := func(h int) *timestamppb.Timestamp { return timestamppb.New(start.Add(-time.Duration(h) * time.Hour)) }
	// Entries out of time order, with ties at hour 5 (ordered by id then).
	kinds := []customerv1.InteractionKind{note, call, visit, call, email, chat, call, note}
	hours := []int{5, 1, 5, 30, 2, 5, 12, 0}
	var made []*customerv1.Interaction
	for i, k := range kinds {
		got, err := b.client.CreateInteraction(ctx, create(c, &customerv1.Interaction{Kind: k, OccurTime: at(hours[i]), Summary: "entry"}))
		require.NoError(t, err)
		made = append(made, got)
	}
	// Another customer's entries never show.
	other := b.newCustomer(t, b.tenant)
	_, err := b.client.CreateInteraction(ctx, create(other, &customerv1.Interaction{Kind: call, Summary: "not hers"}))
	require.NoError(t, err)

	newestFirst := func(only ...customerv1.InteractionKind) []string {
		var want []*customerv1.Interaction
		for _, m := range made {
			if len(only) == 0 || contains(only, m.GetKind()) {
				want = append(want, m)
			}
		}
		// occur_time desc, id desc
		for i := range want {
			for j := i + 1; j < len(want); j++ {
				a, bb := want[i], want[j]
				ta, tb := a.GetOccurTime().AsTime(), bb.GetOccurTime().AsTime()
				if tb.After(ta) || (tb.Equal(ta) && bb.GetId() > a.GetId()) {
					want[i], want[j] = bb, a
				}
			}
		}
		ids := make([]string, len(want))
		for i, w := range want {
			ids[i] = w.GetId()
		}
		return ids
	}
	walk := func(t *testing.T, size int32, only ...customerv1.InteractionKind) (ids []string, pages int) {
		t.Helper()
		req := &customerv1.ListInteractionsRequest{CustomerId: c.String(), PageSize: size, Kinds: only}
		for {
			resp, err := b.client.ListInteractions(ctx, req)
			require.NoError(t, err)
			pages++
			for _, it := range resp.GetInteractions() {
				ids = append(ids, it.GetId())
				require.Equal(t, "entry", it.GetSummary())
			}
			if resp.GetNextPageToken() == "" {
				return ids, pages
			}
			req.PageToken = resp.GetNextPageToken()
		}
	}

	t.Run("NewestFirstAcrossPages", func(t *testing.T) {
		ids, pages := walk(t, 3)
		require.Equal(t, newestFirst(), ids)
		require.Equal(t, 3, pages)
	})
	t.Run("OnePage", func(t *testing.T) {
		ids, pages := walk(t, 0)
		require.Equal(t, newestFirst(), ids)
		require.Equal(t, 1, pages)
	})
	t.Run("FilterByKind", func(t *testing.T) {
		ids, _ := walk(t, 2, call)
		require.Equal(t, newestFirst(call), ids)
		require.Len(t, ids, 3)
		ids, _ = walk(t, 1, note, chat, note)
		require.Equal(t, newestFirst(note, chat), ids)
	})
	t.Run("PagingIsStableWhileEntriesArrive", func(t *testing.T) {
		req := &customerv1.ListInteractionsRequest{CustomerId: c.String(), PageSize: 4}
		first, err := b.client.ListInteractions(ctx, req)
		require.NoError(t, err)
		// A new entry, newer than everything, lands before the cursor: the
		// next page neither repeats nor skips anything.
		_, err = b.client.CreateInteraction(ctx, create(c, &customerv1.Interaction{Kind: note, Summary: "late"}))
		require.NoError(t, err)
		req.PageToken = first.GetNextPageToken()
		second, err := b.client.ListInteractions(ctx, req)
		require.NoError(t, err)
		var ids []string
		for _, it := range append(first.GetInteractions(), second.GetInteractions()...) {
			ids = append(ids, it.GetId())
		}
		require.Equal(t, newestFirst(), ids)
	})
	t.Run("TokenOfOtherFiltersIsRefused", func(t *testing.T) {
		resp, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.String(), PageSize: 1, Kinds: []customerv1.InteractionKind{call}})
		require.NoError(t, err)
		_, err = b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: c.String(), PageSize: 1, PageToken: resp.GetNextPageToken()})
		require.Equal(t, []string{"page_token"}, badFields(t, err))
		_, err = b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: other.String(), PageSize: 1,
			Kinds: []customerv1.InteractionKind{call}, PageToken: resp.GetNextPageToken()})
		require.Equal(t, []string{"page_token"}, badFields(t, err))
	})
}

func contains(ks []customerv1.InteractionKind, k customerv1.InteractionKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

func TestTenantsAndRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	y := b.newCustomer(t, b.tenant)
	entry, err := b.client.CreateInteraction(agent(b.tenant), create(y, &customerv1.Interaction{Kind: note, Summary: "Y's"}))
	require.NoError(t, err)
	x := uuid.New()
	xCustomer := b.newCustomer(t, x)

	t.Run("AnotherTenantSeesNothing", func(t *testing.T) {
		_, err := b.client.GetInteraction(agent(x), &customerv1.GetInteractionRequest{CustomerId: y.String(), Id: entry.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.client.ListInteractions(agent(x), &customerv1.ListInteractionsRequest{CustomerId: y.String()})
		require.Equal(t, codes.NotFound, status.Code(err))
		// Y's entry under X's own customer id is not found either.
		_, err = b.client.GetInteraction(agent(x), &customerv1.GetInteractionRequest{CustomerId: xCustomer.String(), Id: entry.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
		_, err = b.client.CreateInteraction(agent(x), create(y, &customerv1.Interaction{Kind: note, Summary: "X's"}))
		require.Equal(t, codes.NotFound, status.Code(err))
		require.Equal(t, 1, b.count(t, b.tenant, y))
	})
	t.Run("AnEntryOfAnotherCustomerIsNotFound", func(t *testing.T) {
		sibling := b.newCustomer(t, b.tenant)
		_, err := b.client.GetInteraction(agent(b.tenant), &customerv1.GetInteractionRequest{CustomerId: sibling.String(), Id: entry.GetId()})
		require.Equal(t, codes.NotFound, status.Code(err))
	})
	t.Run("Roles", func(t *testing.T) {
		for _, role := range []string{"admin", "supervisor", "agent", "service"} {
			ctx := grpcxtest.As(b.tenant, role)
			_, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: y.String()})
			require.NoError(t, err, role)
			_, err = b.client.CreateInteraction(ctx, create(y, &customerv1.Interaction{Kind: note, Summary: role}))
			require.NoError(t, err, role)
		}
		for _, role := range []string{"marketer", "analyst"} {
			ctx := grpcxtest.As(b.tenant, role)
			_, err := b.client.ListInteractions(ctx, &customerv1.ListInteractionsRequest{CustomerId: y.String()})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.client.GetInteraction(ctx, &customerv1.GetInteractionRequest{CustomerId: y.String(), Id: entry.GetId()})
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
			_, err = b.client.CreateInteraction(ctx, create(y, &customerv1.Interaction{Kind: note, Summary: role}))
			require.Equal(t, codes.PermissionDenied, status.Code(err), role)
		}
	})
}
