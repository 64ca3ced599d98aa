package outreach_test

import (
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx/grpcxtest"
)

func TestTemplateCRUD(t *testing.T) {
	t.Parallel()
	b := setup(t)
	created := b.createTemplate(t, emailTemplate("birthday"))
	require.NotEmpty(t, created.GetId())
	require.Equal(t, int64(1), created.GetVersion())
	require.Equal(t, t0, created.GetCreateTime().AsTime())

	got, err := b.client.GetOutreachTemplate(b.ctx(), &customerv1.GetOutreachTemplateRequest{Id: created.GetId()})
	require.NoError(t, err)
	require.True(t, proto.Equal(created, got))

	_, err = b.client.CreateOutreachTemplate(b.ctx(), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: emailTemplate("birthday")})
	require.Equal(t, codes.AlreadyExists, status.Code(err))
	_, err = b.client.CreateOutreachTemplate(grpcxtest.As(uuid.New()), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: emailTemplate("birthday")})
	require.NoError(t, err, "keys are per tenant")

	b.clock.Advance(1000)
	upd, err := b.client.UpdateOutreachTemplate(b.ctx(), &customerv1.UpdateOutreachTemplateRequest{
		OutreachTemplate: &customerv1.OutreachTemplate{Id: created.GetId(), DefaultLocale: "de",
			Channel: customerv1.ContactChannel_CONTACT_CHANNEL_SMS}, // not in the mask: ignored
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"default_locale"}}})
	require.NoError(t, err)
	require.Equal(t, "de", upd.GetDefaultLocale())
	require.Equal(t, customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, upd.GetChannel())
	require.Equal(t, int64(2), upd.GetVersion())
	require.Len(t, upd.GetVariants(), 2)

	for name, tc := range map[string]struct {
		tpl   *customerv1.OutreachTemplate
		paths []string
		field string
	}{
		"Channel":         {&customerv1.OutreachTemplate{Id: created.GetId()}, []string{"channel"}, "update_mask"},
		"Wildcard":        {&customerv1.OutreachTemplate{Id: created.GetId()}, []string{"*"}, "update_mask"},
		"Empty":           {&customerv1.OutreachTemplate{Id: created.GetId()}, nil, "update_mask"},
		"DefaultNotThere": {&customerv1.OutreachTemplate{Id: created.GetId(), DefaultLocale: "fr"}, []string{"default_locale"}, "outreach_template.default_locale"},
		"BadVariants": {&customerv1.OutreachTemplate{Id: created.GetId(), Variants: []*customerv1.OutreachTemplate_Variant{
			{Locale: "de", Subject: "x", TextBody: "{{.a"}}}, []string{"variants"}, "outreach_template.variants[0].text_body"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.client.UpdateOutreachTemplate(b.ctx(), &customerv1.UpdateOutreachTemplateRequest{
				OutreachTemplate: tc.tpl, UpdateMask: &fieldmaskpb.FieldMask{Paths: tc.paths}})
			require.Equal(t, tc.field, fieldOf(t, err))
		})
	}
	other := b.createTemplate(t, smsTemplate("sms"))
	_, err = b.client.UpdateOutreachTemplate(b.ctx(), &customerv1.UpdateOutreachTemplateRequest{
		OutreachTemplate: &customerv1.OutreachTemplate{Id: other.GetId(), Key: "birthday"},
		UpdateMask:       &fieldmaskpb.FieldMask{Paths: []string{"key"}}})
	require.Equal(t, codes.AlreadyExists, status.Code(err))

	_, err = b.client.GetOutreachTemplate(grpcxtest.As(uuid.New()), &customerv1.GetOutreachTemplateRequest{Id: created.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err), "another tenant's template")
	_, err = b.client.DeleteOutreachTemplate(grpcxtest.As(uuid.New()), &customerv1.DeleteOutreachTemplateRequest{Id: created.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))

	_, err = b.client.DeleteOutreachTemplate(b.ctx(), &customerv1.DeleteOutreachTemplateRequest{Id: created.GetId()})
	require.NoError(t, err)
	_, err = b.client.GetOutreachTemplate(b.ctx(), &customerv1.GetOutreachTemplateRequest{Id: created.GetId()})
	require.Equal(t, codes.NotFound, status.Code(err))
}

// TestTemplateValidation: every bad template is INVALID_ARGUMENT naming the
// field (and the variant's locale in the description).
func TestTemplateValidation(t *testing.T) {
	t.Parallel()
	b := setup(t)
	v := func(locale, subject, text, html string) *customerv1.OutreachTemplate_Variant {
		return &customerv1.OutreachTemplate_Variant{Locale: locale, Subject: subject, TextBody: text, HtmlBody: html}
	}
	email := func(def string, vs ...*customerv1.OutreachTemplate_Variant) *customerv1.OutreachTemplate {
		return &customerv1.OutreachTemplate{Key: "k", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: def, Variants: vs}
	}
	for name, tc := range map[string]struct {
		tpl   *customerv1.OutreachTemplate
		field string
		desc  string
	}{
		"BadText":        {email("en", v("en", "s", "ok", ""), v("de", "s", "Hallo {{.name", "")), "outreach_template.variants[1].text_body", "variant de"},
		"BadSubject":     {email("en", v("en", "{{if}}", "ok", "")), "outreach_template.variants[0].subject", "variant en"},
		"BadHTML":        {email("en", v("en", "s", "ok", "<p>{{end}}</p>")), "outreach_template.variants[0].html_body", "variant en"},
		"NoSubject":      {email("en", v("en", "", "ok", "")), "outreach_template.variants[0].subject", "required"},
		"TwiceLocale":    {email("en", v("en", "s", "a", ""), v("EN", "s", "b", "")), "outreach_template.variants[1].locale", "twice"},
		"NoDefault":      {email("fr", v("en", "s", "a", "")), "outreach_template.default_locale", ""},
		"NoVariants":     {email("en"), "outreach_template.variants", ""},
		"BadKey":         {&customerv1.OutreachTemplate{Key: "Bad Key", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_EMAIL, DefaultLocale: "en", Variants: []*customerv1.OutreachTemplate_Variant{v("en", "s", "a", "")}}, "outreach_template.key", ""},
		"PushChannel":    {&customerv1.OutreachTemplate{Key: "k", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_PUSH, DefaultLocale: "en", Variants: []*customerv1.OutreachTemplate_Variant{v("en", "", "a", "")}}, "outreach_template.channel", ""},
		"SMSSubject":     {&customerv1.OutreachTemplate{Key: "k", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_SMS, DefaultLocale: "en", Variants: []*customerv1.OutreachTemplate_Variant{v("en", "s", "a", "")}}, "outreach_template.variants[0].subject", "email only"},
		"SMSHTML":        {&customerv1.OutreachTemplate{Key: "k", Channel: customerv1.ContactChannel_CONTACT_CHANNEL_SMS, DefaultLocale: "en", Variants: []*customerv1.OutreachTemplate_Variant{v("en", "", "a", "<p>")}}, "outreach_template.variants[0].html_body", "email only"},
		"SubjectNewline": {email("en", v("en", "a\nb", "ok", "")), "outreach_template.variants[0].subject", "one line"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := b.client.CreateOutreachTemplate(b.ctx(), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: tc.tpl})
			require.Equal(t, tc.field, fieldOf(t, err))
			if tc.desc != "" {
				var desc string
				for _, d := range status.Convert(err).Details() {
					if br, ok := d.(*errdetails.BadRequest); ok {
						desc = br.GetFieldViolations()[0].GetDescription()
					}
				}
				require.Contains(t, desc, tc.desc)
			}
		})
	}
	list, err := b.client.ListOutreachTemplates(b.ctx(), &customerv1.ListOutreachTemplatesRequest{})
	require.NoError(t, err)
	require.Empty(t, list.GetOutreachTemplates(), "nothing bad was stored")
}

func TestListTemplatesPages(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, k := range []string{"c", "a", "e", "b", "d"} {
		b.createTemplate(t, smsTemplate(k))
	}
	b2 := uuid.New()
	_, err := b.client.CreateOutreachTemplate(grpcxtest.As(b2), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: smsTemplate("aa")})
	require.NoError(t, err)
	var keys []string
	tok := ""
	for {
		page, err := b.client.ListOutreachTemplates(b.ctx(), &customerv1.ListOutreachTemplatesRequest{PageSize: 2, PageToken: tok})
		require.NoError(t, err)
		for _, tpl := range page.GetOutreachTemplates() {
			keys = append(keys, tpl.GetKey())
		}
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	require.Equal(t, []string{"a", "b", "c", "d", "e"}, keys)
	_, err = b.client.ListOutreachTemplates(b.ctx(), &customerv1.ListOutreachTemplatesRequest{PageToken: "garbage"})
	require.Equal(t, "page_token", fieldOf(t, err))
}

// TestDeliveryLog: the log lists newest first, filters by status across
// pages, and is NOT_FOUND for another tenant's customer.
func TestDeliveryLog(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.createTemplate(t, smsTemplate("repair-ready"))
	cust := b.newCustomer(t, b.tenant, person{phone: "+4915112345678"})
	var want []string
	for i := range 5 {
		p := service
		if i%2 == 1 {
			p = marketing // no consent: refused
		}
		want = append(want, b.send(t, smsSend(cust, p)).GetId())
	}
	list := func(statuses []customerv1.OutreachStatus, size int32) []string {
		var ids []string
		tok := ""
		for {
			page, err := b.client.ListOutreachDeliveries(b.ctx(), &customerv1.ListOutreachDeliveriesRequest{
				CustomerId: cust.String(), Statuses: statuses, PageSize: size, PageToken: tok})
			require.NoError(t, err)
			for _, d := range page.GetOutreachDeliveries() {
				ids = append(ids, d.GetId())
			}
			if tok = page.GetNextPageToken(); tok == "" {
				return ids
			}
		}
	}
	require.Equal(t, []string{want[4], want[3], want[2], want[1], want[0]}, list(nil, 2))
	require.Equal(t, []string{want[3], want[1]}, list([]customerv1.OutreachStatus{customerv1.OutreachStatus_OUTREACH_STATUS_REFUSED}, 1))

	page, err := b.client.ListOutreachDeliveries(b.ctx(), &customerv1.ListOutreachDeliveriesRequest{CustomerId: cust.String(), PageSize: 1})
	require.NoError(t, err)
	_, err = b.client.ListOutreachDeliveries(b.ctx(), &customerv1.ListOutreachDeliveriesRequest{CustomerId: cust.String(), PageSize: 1,
		PageToken: page.GetNextPageToken(), Statuses: []customerv1.OutreachStatus{customerv1.OutreachStatus_OUTREACH_STATUS_SENT}})
	require.Equal(t, "page_token", fieldOf(t, err), "a token is bound to its filter")

	_, err = b.client.ListOutreachDeliveries(grpcxtest.As(uuid.New()), &customerv1.ListOutreachDeliveriesRequest{CustomerId: cust.String()})
	require.Equal(t, codes.NotFound, status.Code(err))
	_, err = b.client.GetOutreachDelivery(grpcxtest.As(uuid.New()), &customerv1.GetOutreachDeliveryRequest{CustomerId: cust.String(), Id: want[0]})
	require.Equal(t, codes.NotFound, status.Code(err))
	other := b.newCustomer(t, b.tenant, person{})
	_, err = b.client.GetOutreachDelivery(b.ctx(), &customerv1.GetOutreachDeliveryRequest{CustomerId: other.String(), Id: want[0]})
	require.Equal(t, codes.NotFound, status.Code(err), "the delivery is another customer's")
}

// TestRoles: an analyst may not send; an agent may not manage templates.
func TestRoles(t *testing.T) {
	t.Parallel()
	b := setup(t)
	_, err := b.client.CreateOutreachTemplate(grpcxtest.As(b.tenant, "agent"), &customerv1.CreateOutreachTemplateRequest{OutreachTemplate: smsTemplate("x")})
	require.Equal(t, codes.PermissionDenied, status.Code(err))
	_, err = b.client.SendOutreach(grpcxtest.As(b.tenant, "analyst"), smsSend(uuid.New(), service))
	require.Equal(t, codes.PermissionDenied, status.Code(err))
}
