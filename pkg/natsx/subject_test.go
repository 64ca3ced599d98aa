package natsx_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rapporthq/rapport/pkg/natsx"
)

func TestSubject(t *testing.T) {
	t.Parallel()

	for _, tc := range []struct {
		name                    string
		service, aggregate, evt string
		want                    string // "" means an error is expected
	}{
		{name: "BuildsTicketResolved", service: "ticket", aggregate: "ticket", evt: "resolved", want: "rapport.ticket.ticket.resolved"},
		{name: "BuildsPointsEarned", service: "loyalty", aggregate: "points", evt: "earned", want: "rapport.loyalty.points.earned"},
		{name: "AcceptsDigitsAndUnderscores", service: "survey2", aggregate: "nps_score", evt: "sent_v2", want: "rapport.survey2.nps_score.sent_v2"},
		{name: "RejectsEmptyService", service: "", aggregate: "ticket", evt: "resolved"},
		{name: "RejectsEmptyAggregate", service: "ticket", aggregate: "", evt: "resolved"},
		{name: "RejectsEmptyEvent", service: "ticket", aggregate: "ticket", evt: ""},
		{name: "RejectsUpperCase", service: "Ticket", aggregate: "ticket", evt: "resolved"},
		{name: "RejectsADot", service: "ticket", aggregate: "ticket.sla", evt: "resolved"},
		{name: "RejectsAStarWildcard", service: "ticket", aggregate: "*", evt: "resolved"},
		{name: "RejectsATailWildcard", service: "ticket", aggregate: "ticket", evt: ">"},
		{name: "RejectsASpace", service: "ticket", aggregate: "ticket", evt: "re solved"},
		{name: "RejectsATab", service: "ticket", aggregate: "ticket", evt: "resolved\t"},
		{name: "RejectsAHyphen", service: "ticket", aggregate: "care-plan", evt: "created"},
		{name: "RejectsNonASCII", service: "ticket", aggregate: "ticket", evt: "résolu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := natsx.Subject(tc.service, tc.aggregate, tc.evt)
			if tc.want == "" {
				require.Error(t, err)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestStreamName(t *testing.T) {
	t.Parallel()

	require.Equal(t, "RAPPORT_TICKET", natsx.StreamName("ticket"))
	require.Equal(t, "RAPPORT_LOYALTY", natsx.StreamName("loyalty"))
}

func TestHeaders(t *testing.T) {
	t.Parallel()

	// The names are the CloudEvents NATS binding's and NATS's own; a typo
	// would silently break deduplication or interoperability.
	require.Equal(t, "Nats-Msg-Id", natsx.HeaderMsgID)
	require.Equal(t, []string{"ce-specversion", "ce-id", "ce-type", "ce-source", "ce-time", "ce-subject", "content-type", "rapport-tenant"},
		[]string{natsx.HeaderSpecVersion, natsx.HeaderID, natsx.HeaderType, natsx.HeaderSource, natsx.HeaderTime, natsx.HeaderSubject, natsx.HeaderContentType, natsx.HeaderTenant})
}

func TestValidSubject(t *testing.T) {
	t.Parallel()

	require.True(t, natsx.ValidSubject("rapport.ticket.ticket.resolved"))
	require.True(t, natsx.ValidSubject("rapport.loyalty_v2.points.earned_2"))
	for _, s := range []string{
		"", "rapport", "rapport.ticket.ticket", "rapport.ticket.ticket.resolved.again",
		"other.ticket.ticket.resolved", "rapport..ticket.resolved", "rapport.ticket.ticket.",
		"rapport.Ticket.ticket.resolved", "rapport.ticket.care-plan.created", "rapport.ticket.*.resolved",
		"rapport.ticket.ticket.>", "rapport.ticket.ticket.resolved\n", "rapport.ticket.ticket.résolu",
	} {
		require.False(t, natsx.ValidSubject(s), "%q", s)
	}
}
