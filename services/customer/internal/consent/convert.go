package consent

import (
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/consent/store"
)

// Conversions between the domain, the store's records and protobuf. The
// enum tables are the single place where a domain name meets its proto
// number.

var (
	channels = map[Channel]customerv1.ContactChannel{
		ChannelEmail:     customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL,
		ChannelSMS:       customerv1.ContactChannel_CONTACT_CHANNEL_SMS,
		ChannelPhone:     customerv1.ContactChannel_CONTACT_CHANNEL_PHONE,
		ChannelPush:      customerv1.ContactChannel_CONTACT_CHANNEL_PUSH,
		ChannelMessaging: customerv1.ContactChannel_CONTACT_CHANNEL_MESSAGING,
		ChannelPost:      customerv1.ContactChannel_CONTACT_CHANNEL_POST,
	}
	purposes = map[Purpose]customerv1.ContactPurpose{
		PurposeService:   customerv1.ContactPurpose_CONTACT_PURPOSE_SERVICE,
		PurposeCare:      customerv1.ContactPurpose_CONTACT_PURPOSE_CARE,
		PurposeMarketing: customerv1.ContactPurpose_CONTACT_PURPOSE_MARKETING,
		PurposeSurvey:    customerv1.ContactPurpose_CONTACT_PURPOSE_SURVEY,
	}
	states = map[State]customerv1.ConsentState{
		StateGranted:   customerv1.ConsentState_CONSENT_STATE_GRANTED,
		StateWithdrawn: customerv1.ConsentState_CONSENT_STATE_WITHDRAWN,
		StatePending:   customerv1.ConsentState_CONSENT_STATE_PENDING,
	}
	bases = map[LegalBasis]customerv1.LegalBasis{
		BasisConsent:            customerv1.LegalBasis_LEGAL_BASIS_CONSENT,
		BasisContract:           customerv1.LegalBasis_LEGAL_BASIS_CONTRACT,
		BasisLegitimateInterest: customerv1.LegalBasis_LEGAL_BASIS_LEGITIMATE_INTEREST,
		BasisLegalObligation:    customerv1.LegalBasis_LEGAL_BASIS_LEGAL_OBLIGATION,
	}
	reasons = map[Reason]customerv1.ContactRefusalReason{
		ReasonNoConsent:           customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_NO_CONSENT,
		ReasonWithdrawn:           customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_WITHDRAWN,
		ReasonPendingConfirmation: customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_PENDING_CONFIRMATION,
		ReasonQuietHours:          customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_QUIET_HOURS,
		ReasonFrequencyCap:        customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_FREQUENCY_CAP,
		ReasonCustomerUnknown:     customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_CUSTOMER_UNKNOWN,
		ReasonErased:              customerv1.ContactRefusalReason_CONTACT_REFUSAL_REASON_ERASED,
	}
)

// reverse inverts an enum table.
func reverse[K comparable, V comparable](m map[K]V) map[V]K {
	out := make(map[V]K, len(m))
	for k, v := range m {
		out[v] = k
	}
	return out
}

var (
	channelOf = reverse(channels)
	purposeOf = reverse(purposes)
	stateOf   = reverse(states)
	basisOf   = reverse(bases)
)

func consentToProto(c Consent) *customerv1.Consent {
	return &customerv1.Consent{
		CustomerId: c.CustomerID.String(), Channel: channels[c.Channel], Purpose: purposes[c.Purpose],
		State: states[c.State], LegalBasis: bases[c.LegalBasis], Source: c.Source,
		CaptureTime: timestamppb.New(c.CaptureTime), Version: c.Version, UpdateTime: timestamppb.New(c.UpdateTime),
	}
}

func eventToProto(e Event) *customerv1.ConsentEvent {
	return &customerv1.ConsentEvent{
		Id: e.ID.String(), CustomerId: e.CustomerID.String(), Version: e.Version,
		Channel: channels[e.Channel], Purpose: purposes[e.Purpose], State: states[e.State],
		PreviousState: states[e.PreviousState], LegalBasis: bases[e.LegalBasis], Source: e.Source,
		CaptureTime: timestamppb.New(e.CaptureTime), RecordTime: timestamppb.New(e.RecordTime), Actor: e.Actor,
	}
}

func preferencesToProto(p Preferences) *customerv1.ContactPreferences {
	out := &customerv1.ContactPreferences{CustomerId: p.CustomerID.String(), TimeZone: p.TimeZone}
	if q := p.QuietHours; q != nil {
		out.QuietHours = &customerv1.QuietHours{StartTime: FormatClock(q.Start), EndTime: FormatClock(q.End)}
	}
	for _, c := range p.PreferredChannels {
		out.PreferredChannels = append(out.PreferredChannels, channels[c])
	}
	if !p.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(p.UpdateTime)
	}
	return out
}

func capToProto(c Cap) *customerv1.FrequencyCap {
	return &customerv1.FrequencyCap{MaxContacts: int32(c.Max), Period: durationpb.New(c.Period)} //nolint:gosec // ≤ 1000
}

func capFromProto(c *customerv1.FrequencyCap) Cap {
	out := Cap{Max: int(c.GetMaxContacts())}
	if d := c.GetPeriod(); d != nil {
		out.Period = d.AsDuration()
	}
	return out
}

func policyToProto(p Policy) *customerv1.ContactPolicy {
	out := &customerv1.ContactPolicy{
		DefaultTimeZone: p.DefaultTimeZone, CareCap: capToProto(p.Care), MarketingCap: capToProto(p.Marketing),
		SurveyCap: capToProto(p.Survey), GlobalCap: capToProto(p.Global), Version: p.Version,
	}
	if !p.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(p.UpdateTime)
	}
	return out
}

func decisionToProto(d Decision) *customerv1.ContactDecision {
	out := &customerv1.ContactDecision{
		Allowed: d.Allowed, Reason: reasons[d.Reason], DecideTime: timestamppb.New(d.DecideTime), TimeZone: d.TimeZone,
	}
	if !d.NextAllowed.IsZero() {
		out.NextAllowedTime = timestamppb.New(d.NextAllowed)
	}
	if h := d.Cap; h != nil {
		out.FrequencyCap = &customerv1.FrequencyCapHit{
			Global: h.Global, Purpose: purposes[h.Purpose], MaxContacts: int32(h.Cap.Max), //nolint:gosec // ≤ 1000
			Period: durationpb.New(h.Cap.Period), Contacts: int32(h.Contacts), //nolint:gosec // a count of rows
		}
	}
	return out
}

func touchToProto(t Touch) *customerv1.ContactTouch {
	return &customerv1.ContactTouch{
		Id: t.ID.String(), CustomerId: t.CustomerID.String(), Channel: channels[t.Channel],
		Purpose: purposes[t.Purpose], SourceService: t.SourceService, Reference: t.Reference,
		TouchTime: timestamppb.New(t.Time),
	}
}

// From the store's records.

func consentFromStore(c store.Consent) Consent {
	return Consent{
		CustomerID: c.CustomerID, Channel: Channel(c.Channel), Purpose: Purpose(c.Purpose), State: State(c.State),
		LegalBasis: LegalBasis(c.LegalBasis), Source: c.Source, CaptureTime: c.CaptureTime,
		Version: c.Version, UpdateTime: c.UpdateTime,
	}
}

func eventFromStore(e store.Event) Event {
	return Event{
		ID: e.ID, CustomerID: e.CustomerID, Version: e.Version, Channel: Channel(e.Channel),
		Purpose: Purpose(e.Purpose), State: State(e.State), PreviousState: State(e.PreviousState),
		LegalBasis: LegalBasis(e.LegalBasis), Source: e.Source, CaptureTime: e.CaptureTime,
		RecordTime: e.RecordTime, Actor: e.Actor, RequestID: e.RequestID,
	}
}

func eventToStore(e Event) store.Event {
	return store.Event{
		ID: e.ID, CustomerID: e.CustomerID, Version: e.Version, Channel: string(e.Channel),
		Purpose: string(e.Purpose), State: string(e.State), PreviousState: string(e.PreviousState),
		LegalBasis: string(e.LegalBasis), Source: e.Source, CaptureTime: e.CaptureTime,
		RecordTime: e.RecordTime, Actor: e.Actor, RequestID: e.RequestID,
	}
}

func tokenFromStore(t store.Token) Token {
	return Token{
		CustomerID: t.CustomerID, Channel: Channel(t.Channel), Purpose: Purpose(t.Purpose), Version: t.Version,
		CreateTime: t.CreateTime, ExpireTime: t.ExpireTime, UseTime: t.UseTime, RevokeTime: t.RevokeTime,
	}
}

func touchFromStore(t store.Touch) Touch {
	return Touch{
		ID: t.ID, CustomerID: t.CustomerID, Channel: Channel(t.Channel), Purpose: Purpose(t.Purpose),
		SourceService: t.SourceService, Reference: t.Reference, Time: t.Time, Actor: t.Actor,
	}
}

func touchToStore(t Touch) store.Touch {
	return store.Touch{
		ID: t.ID, CustomerID: t.CustomerID, Channel: string(t.Channel), Purpose: string(t.Purpose),
		SourceService: t.SourceService, Reference: t.Reference, Time: t.Time, Actor: t.Actor,
	}
}

func policyFromStore(p store.Policy) Policy {
	return Policy{
		DefaultTimeZone: p.DefaultTimeZone,
		Care:            Cap{Max: p.CareMax, Period: p.CarePeriod},
		Marketing:       Cap{Max: p.MarketingMax, Period: p.MarketingPeriod},
		Survey:          Cap{Max: p.SurveyMax, Period: p.SurveyPeriod},
		Global:          Cap{Max: p.GlobalMax, Period: p.GlobalPeriod},
		Version:         p.Version, UpdateTime: p.UpdateTime,
	}
}

func policyToStore(p Policy) store.Policy {
	return store.Policy{
		DefaultTimeZone: p.DefaultTimeZone,
		CareMax:         p.Care.Max, CarePeriod: p.Care.Period,
		MarketingMax: p.Marketing.Max, MarketingPeriod: p.Marketing.Period,
		SurveyMax: p.Survey.Max, SurveyPeriod: p.Survey.Period,
		GlobalMax: p.Global.Max, GlobalPeriod: p.Global.Period,
		Version: p.Version, UpdateTime: p.UpdateTime,
	}
}

func preferencesFromStore(s store.Settings, policy Policy) Preferences {
	_, zone := Location(s.TimeZone, policy.DefaultTimeZone)
	p := Preferences{CustomerID: s.CustomerID, TimeZone: zone, UpdateTime: s.PreferencesUpdateTime}
	if s.HasQuietHours {
		p.QuietHours = &QuietHours{Start: s.QuietStart, End: s.QuietEnd}
	}
	p.PreferredChannels = make([]Channel, 0, len(s.PreferredChannels))
	for _, c := range s.PreferredChannels {
		p.PreferredChannels = append(p.PreferredChannels, Channel(c))
	}
	return p
}
