package care

import (
	"context"
	"errors"
	"regexp"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
)

// templateKeyFormat is an outreach template key's format (outreach.proto,
// OutreachTemplate.key).
var templateKeyFormat = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,62}$`)

// checkTemplateKeys checks the template keys an update sets: empty, or an
// outreach template key. Whether a template has the key is not checked: it
// may be created later (a key naming none fails visibly when an occasion
// falls due). protovalidate checks the same; this guards direct calls.
func checkTemplateKeys(in *customerv1.CareSettings, paths []string) error {
	for _, p := range paths {
		var v string
		switch p {
		case "birthday_template_key":
			v = in.GetBirthdayTemplateKey()
		case "holiday_template_key":
			v = in.GetHolidayTemplateKey()
		case "anniversary_template_key":
			v = in.GetAnniversaryTemplateKey()
		case "purchase_follow_up_template_key":
			v = in.GetPurchaseFollowUpTemplateKey()
		case "ticket_follow_up_template_key":
			v = in.GetTicketFollowUpTemplateKey()
		default:
			continue
		}
		if v != "" && !templateKeyFormat.MatchString(v) {
			return &fieldError{field: "settings." + p,
				reason: "must be empty or an outreach template key: a lower-case letter, then up to 62 of a-z, 0-9, '.', '_', '-'"}
		}
	}
	return nil
}

// OutreachTemplate returns the key of the outreach template the tenant
// sends occasions of kind with, read in tx; "" when it sends none (also
// for a tenant that never stored settings, and for an unknown kind).
// Outreach calls it for each care.due event it consumes.
func (s *Server) OutreachTemplate(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, kind customerv1.CareOccasionKind) (string, error) {
	st, err := s.settings(ctx, tx, tenant, false)
	if err != nil {
		return "", err
	}
	k := st.TemplateKeys
	switch kind {
	case customerv1.CareOccasionKind_CARE_OCCASION_KIND_BIRTHDAY:
		return k.Birthday, nil
	case customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY:
		return k.Holiday, nil
	case customerv1.CareOccasionKind_CARE_OCCASION_KIND_ANNIVERSARY:
		return k.Anniversary, nil
	case customerv1.CareOccasionKind_CARE_OCCASION_KIND_PURCHASE_FOLLOW_UP:
		return k.PurchaseFollowUp, nil
	case customerv1.CareOccasionKind_CARE_OCCASION_KIND_TICKET_FOLLOW_UP:
		return k.TicketFollowUp, nil
	}
	return "", nil
}

// HolidayName returns the name of the tenant's holiday id, read in tx; ""
// when the tenant has no such holiday (any more: it may have been deleted
// after its occasion fired).
func (s *Server) HolidayName(ctx context.Context, tx pgx.Tx, tenant, id uuid.UUID) (string, error) {
	name, err := s.store.HolidayName(ctx, tx, tenant, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return name, err
}
