package outreach

import (
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
)

// Enum values are stored by their lower-case names without the prefix:
// CONTACT_CHANNEL_EMAIL is "email".
const (
	channelPrefix = "CONTACT_CHANNEL_"
	purposePrefix = "CONTACT_PURPOSE_"
	statusPrefix  = "OUTREACH_STATUS_"
	refusalPrefix = "CONTACT_REFUSAL_REASON_"
)

func enumName(prefix, full string) string {
	return strings.ToLower(strings.TrimPrefix(full, prefix))
}

func channelName(c customerv1.ContactChannel) consent.Channel {
	if c == customerv1.ContactChannel_CONTACT_CHANNEL_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.ContactChannel_name[int32(c)]; !ok {
		return ""
	}
	return consent.Channel(enumName(channelPrefix, c.String()))
}

func channelValue(name string) customerv1.ContactChannel {
	return customerv1.ContactChannel(customerv1.ContactChannel_value[channelPrefix+strings.ToUpper(name)])
}

func purposeName(p customerv1.ContactPurpose) consent.Purpose {
	if p == customerv1.ContactPurpose_CONTACT_PURPOSE_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.ContactPurpose_name[int32(p)]; !ok {
		return ""
	}
	return consent.Purpose(enumName(purposePrefix, p.String()))
}

func purposeValue(name string) customerv1.ContactPurpose {
	return customerv1.ContactPurpose(customerv1.ContactPurpose_value[purposePrefix+strings.ToUpper(name)])
}

func statusName(s customerv1.OutreachStatus) string {
	if s == customerv1.OutreachStatus_OUTREACH_STATUS_UNSPECIFIED {
		return ""
	}
	if _, ok := customerv1.OutreachStatus_name[int32(s)]; !ok {
		return ""
	}
	return enumName(statusPrefix, s.String())
}

func statusValue(name string) customerv1.OutreachStatus {
	return customerv1.OutreachStatus(customerv1.OutreachStatus_value[statusPrefix+strings.ToUpper(name)])
}

func refusalValue(r string) customerv1.ContactRefusalReason {
	return customerv1.ContactRefusalReason(customerv1.ContactRefusalReason_value[refusalPrefix+r])
}

func templateFromProto(in *customerv1.OutreachTemplate) store.Template {
	t := store.Template{Key: in.GetKey(), Channel: string(channelName(in.GetChannel())), DefaultLocale: in.GetDefaultLocale()}
	for _, v := range in.GetVariants() {
		t.Variants = append(t.Variants, store.Variant{
			Locale: v.GetLocale(), Subject: v.GetSubject(), TextBody: v.GetTextBody(), HTMLBody: v.GetHtmlBody(),
		})
	}
	return t
}

func templateToProto(t store.Template) *customerv1.OutreachTemplate {
	out := &customerv1.OutreachTemplate{
		Id: t.ID.String(), Key: t.Key, Channel: channelValue(t.Channel), DefaultLocale: t.DefaultLocale,
		Version: t.Version, CreateTime: timestamppb.New(t.CreateTime), UpdateTime: timestamppb.New(t.UpdateTime),
	}
	for _, v := range t.Variants {
		out.Variants = append(out.Variants, &customerv1.OutreachTemplate_Variant{
			Locale: v.Locale, Subject: v.Subject, TextBody: v.TextBody, HtmlBody: v.HTMLBody,
		})
	}
	return out
}

func deliveryToProto(d store.Delivery) *customerv1.OutreachDelivery {
	return &customerv1.OutreachDelivery{
		Id: d.ID.String(), CustomerId: d.CustomerID.String(), TemplateId: idString(d.TemplateID),
		TemplateKey: d.TemplateKey, Channel: channelValue(d.Channel), Purpose: purposeValue(d.Purpose),
		Locale: d.Locale, Status: statusValue(d.Status), Attempts: int32(d.Attempts), //nolint:gosec // small
		LastErrorCode: d.LastErrorCode, FailureReason: d.FailureReason, RefusalReason: refusalValue(d.RefusalReason),
		NextAllowedTime: ts(d.NextAllowedTime), NextAttemptTime: ts(d.NextAttemptTime),
		ProviderMessageId: d.ProviderMessageID, CreateTime: timestamppb.New(d.CreateTime),
		UpdateTime: timestamppb.New(d.UpdateTime), SendTime: ts(d.SendTime),
	}
}

// ts is nil for the zero time.
func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
