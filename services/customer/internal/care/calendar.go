package care

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/care/store"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

// DefaultSettings are the settings of a tenant that never set any: every
// kind off, so a tenant's customers hear nothing until it decides what they
// should hear; occasions due at 09:00 local time; UTC for customers without
// a zone. Holidays need no switch: entering one is the decision.
func DefaultSettings() store.Settings {
	return store.Settings{DueHour: 9}
}

// settingsPaths are the CareSettings fields UpdateCareSettings may set.
var settingsPaths = []string{
	"birthday_enabled", "anniversary_enabled", "purchase_follow_up_days", "ticket_follow_up_days",
	"default_time_zone", "due_hour", "birthday_template_key", "holiday_template_key", "anniversary_template_key",
	"purchase_follow_up_template_key", "ticket_follow_up_template_key",
}

// maxRangeDays bounds ListCareOccasions' date range.
const maxRangeDays = 366

// careAPI implements customerv1.CareServiceServer.
type careAPI struct {
	customerv1.UnimplementedCareServiceServer
	s *Server
}

func (a *careAPI) GetCareSettings(ctx context.Context, _ *customerv1.GetCareSettingsRequest) (*customerv1.CareSettings, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	st, err := a.s.settings(ctx, a.s.pool, tenant, false)
	if err != nil {
		return nil, err
	}
	return settingsToProto(st), nil
}

func (a *careAPI) UpdateCareSettings(ctx context.Context, req *customerv1.UpdateCareSettingsRequest) (*customerv1.CareSettings, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	paths, err := settingsMask(req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, toStatus(err)
	}
	if err := checkTemplateKeys(req.GetSettings(), paths); err != nil {
		return nil, toStatus(err)
	}
	if slices.Contains(paths, "default_time_zone") {
		if err := a.s.checkZone(ctx, req.GetSettings().GetDefaultTimeZone()); err != nil {
			return nil, toStatus(err)
		}
	}
	now := a.s.now().UTC()
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CareService_UpdateCareSettings_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.CareSettings, error) {
		cur, err := a.s.settings(ctx, tx, tenant, true)
		if err != nil {
			return nil, err
		}
		next := mergeSettings(cur, req.GetSettings(), paths)
		if cur.Version > 0 && sameSettings(cur, next) {
			return settingsToProto(cur), nil
		}
		saved, err := a.s.store.PutSettings(ctx, tx, tenant, next, now)
		if err != nil {
			return nil, err
		}
		// The tenant joins the schedule, or its next round is now.
		if err := a.s.store.BringForward(ctx, tx, tenant, now); err != nil {
			return nil, err
		}
		return settingsToProto(saved), nil
	})
}

// checkZone accepts "" (UTC) or a zone both Go and PostgreSQL know by that
// name ("Local" is the server's zone, not a customer's).
func (s *Server) checkZone(ctx context.Context, zone string) error {
	if zone == "" {
		return nil
	}
	_, known, err := s.timeZones(ctx)
	if err != nil {
		return err
	}
	if _, lerr := time.LoadLocation(zone); lerr != nil || zone == "Local" || !known[zone] {
		return &fieldError{field: "settings.default_time_zone", reason: "must be an IANA time zone name, e.g. Asia/Shanghai"}
	}
	return nil
}

// settings returns the tenant's settings, or the defaults (version 0).
func (s *Server) settings(ctx context.Context, db store.DB, tenantID uuid.UUID, forUpdate bool) (store.Settings, error) {
	st, err := s.store.Settings(ctx, db, tenantID, forUpdate)
	if errors.Is(err, store.ErrNotFound) {
		return DefaultSettings(), nil
	}
	return st, err
}

// settingsMask checks an update mask; empty or "*" means every field.
func settingsMask(paths []string) ([]string, error) {
	if len(paths) == 0 || (len(paths) == 1 && paths[0] == "*") {
		return settingsPaths, nil
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !slices.Contains(settingsPaths, p) {
			return nil, &fieldError{field: "update_mask",
				reason: fmt.Sprintf("path %q cannot be updated; allowed: %s", p, strings.Join(settingsPaths, ", "))}
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// mergeSettings copies the masked fields of in onto cur; protovalidate has
// checked each field's range.
func mergeSettings(cur store.Settings, in *customerv1.CareSettings, paths []string) store.Settings {
	next := cur
	for _, p := range paths {
		switch p {
		case "birthday_enabled":
			next.BirthdayEnabled = in.GetBirthdayEnabled()
		case "anniversary_enabled":
			next.AnniversaryEnabled = in.GetAnniversaryEnabled()
		case "purchase_follow_up_days":
			next.PurchaseFollowUpDays = in.GetPurchaseFollowUpDays()
		case "ticket_follow_up_days":
			next.TicketFollowUpDays = in.GetTicketFollowUpDays()
		case "default_time_zone":
			next.DefaultTimeZone = in.GetDefaultTimeZone()
		case "due_hour":
			next.DueHour = in.GetDueHour()
		case "birthday_template_key":
			next.TemplateKeys.Birthday = in.GetBirthdayTemplateKey()
		case "holiday_template_key":
			next.TemplateKeys.Holiday = in.GetHolidayTemplateKey()
		case "anniversary_template_key":
			next.TemplateKeys.Anniversary = in.GetAnniversaryTemplateKey()
		case "purchase_follow_up_template_key":
			next.TemplateKeys.PurchaseFollowUp = in.GetPurchaseFollowUpTemplateKey()
		case "ticket_follow_up_template_key":
			next.TemplateKeys.TicketFollowUp = in.GetTicketFollowUpTemplateKey()
		}
	}
	return next
}

func sameSettings(a, b store.Settings) bool {
	a.Version, a.UpdateTime, b.Version, b.UpdateTime = 0, time.Time{}, 0, time.Time{}
	return a == b
}

func settingsToProto(st store.Settings) *customerv1.CareSettings {
	out := &customerv1.CareSettings{
		BirthdayEnabled: st.BirthdayEnabled, AnniversaryEnabled: st.AnniversaryEnabled,
		PurchaseFollowUpDays: st.PurchaseFollowUpDays, TicketFollowUpDays: st.TicketFollowUpDays,
		DefaultTimeZone: st.DefaultTimeZone, DueHour: st.DueHour, Version: st.Version,
		BirthdayTemplateKey: st.TemplateKeys.Birthday, HolidayTemplateKey: st.TemplateKeys.Holiday,
		AnniversaryTemplateKey: st.TemplateKeys.Anniversary, PurchaseFollowUpTemplateKey: st.TemplateKeys.PurchaseFollowUp,
		TicketFollowUpTemplateKey: st.TemplateKeys.TicketFollowUp,
	}
	if !st.UpdateTime.IsZero() {
		out.UpdateTime = timestamppb.New(st.UpdateTime)
	}
	return out
}

// ---- holidays

func (a *careAPI) CreateHoliday(ctx context.Context, req *customerv1.CreateHolidayRequest) (*customerv1.Holiday, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	h, err := holidayFromRequest(req.GetHoliday(), now)
	if err != nil {
		return nil, toStatus(err)
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CareService_CreateHoliday_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Holiday, error) {
		saved, err := a.s.store.InsertHoliday(ctx, tx, tenant, h)
		if err != nil {
			return nil, err
		}
		if err := a.s.store.BringForward(ctx, tx, tenant, now); err != nil {
			return nil, err
		}
		return holidayToProto(saved), nil
	})
}

// holidayFromRequest checks what protovalidate cannot: exactly one of a
// date and a recurring day, a real date, a day every year has.
func holidayFromRequest(in *customerv1.Holiday, now time.Time) (store.Holiday, error) {
	h := store.Holiday{Name: strings.TrimSpace(in.GetName()), CreateTime: now}
	if h.Name == "" {
		return store.Holiday{}, &fieldError{field: "holiday.name", reason: "must not be blank"}
	}
	dated := in.GetDate() != ""
	recurring := in.GetRecurringMonth() != 0 || in.GetRecurringDay() != 0
	switch {
	case dated && recurring:
		return store.Holiday{}, &fieldError{field: "holiday.date", reason: "give either date or recurring_month and recurring_day, not both"}
	case dated:
		d, err := time.Parse(time.DateOnly, in.GetDate())
		if err != nil || d.Year() < 2000 || d.Year() > 2200 {
			return store.Holiday{}, &fieldError{field: "holiday.date", reason: "must be a date YYYY-MM-DD between 2000 and 2200"}
		}
		h.Date = d
	case recurring:
		m, d := in.GetRecurringMonth(), in.GetRecurringDay()
		if m == 0 {
			return store.Holiday{}, &fieldError{field: "holiday.recurring_month", reason: "is required with recurring_day"}
		}
		if d == 0 {
			return store.Holiday{}, &fieldError{field: "holiday.recurring_day", reason: "is required with recurring_month"}
		}
		// 2001 is a common year: Feb 29 cannot recur every year.
		if t := time.Date(2001, time.Month(m), int(d), 0, 0, 0, 0, time.UTC); t.Day() != int(d) {
			return store.Holiday{}, &fieldError{field: "holiday.recurring_day", reason: "must be a day every year has (not Feb 29, not the 31st of a shorter month)"}
		}
		h.Month, h.Day = m, d
	default:
		return store.Holiday{}, &fieldError{field: "holiday.date", reason: "give date, or recurring_month and recurring_day"}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.Holiday{}, fmt.Errorf("new holiday id: %w", err)
	}
	h.ID = id
	return h, nil
}

func (a *careAPI) ListHolidays(ctx context.Context, req *customerv1.ListHolidaysRequest) (*customerv1.ListHolidaysResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	if y := req.GetYear(); y < 2000 || y > 2200 {
		return nil, toStatus(&fieldError{field: "year", reason: "must be between 2000 and 2200"})
	}
	hs, err := a.s.store.HolidaysInYear(ctx, a.s.pool, tenant, req.GetYear())
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListHolidaysResponse{}
	for _, h := range hs {
		resp.Holidays = append(resp.Holidays, holidayToProto(h))
	}
	return resp, nil
}

func (a *careAPI) DeleteHoliday(ctx context.Context, req *customerv1.DeleteHolidayRequest) (*customerv1.DeleteHolidayResponse, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CareService_DeleteHoliday_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, a.s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.DeleteHolidayResponse, error) {
		if err := a.s.store.DeleteHoliday(ctx, tx, tenant, id); errors.Is(err, store.ErrNotFound) {
			return nil, toStatus(errHolidayNotFound)
		} else if err != nil {
			return nil, err
		}
		return &customerv1.DeleteHolidayResponse{}, nil
	})
}

func holidayToProto(h store.Holiday) *customerv1.Holiday {
	out := &customerv1.Holiday{Id: h.ID.String(), Name: h.Name, RecurringMonth: h.Month, RecurringDay: h.Day,
		CreateTime: timestamppb.New(h.CreateTime)}
	if !h.Date.IsZero() {
		out.Date = h.Date.Format(time.DateOnly)
	}
	if !h.OccursOn.IsZero() {
		out.OccursOn = h.OccursOn.Format(time.DateOnly)
	}
	return out
}

// ---- occasions

func (a *careAPI) ListCareOccasions(ctx context.Context, req *customerv1.ListCareOccasionsRequest) (*customerv1.ListCareOccasionsResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	kind := ""
	if k := req.GetKind(); k != customerv1.CareOccasionKind_CARE_OCCASION_KIND_UNSPECIFIED {
		if kind = kindName(k); kind == "" {
			return nil, toStatus(&fieldError{field: "kind", reason: "must be an occasion kind"})
		}
	}
	size := grpcx.PageSize(req.GetPageSize())
	var rows []store.Occasion
	var filter string
	if req.GetCustomerId() != "" {
		customerID, err := parseID("customer_id", req.GetCustomerId())
		if err != nil {
			return nil, err
		}
		filter = "occasions:customer:" + customerID.String() + ":" + kind
		before, err := decodePageToken(req.GetPageToken(), filter)
		if err != nil {
			return nil, err
		}
		ok, err := a.s.store.CustomerExists(ctx, a.s.pool, tenant, customerID)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, toStatus(errCustomerNotFound)
		}
		if rows, err = a.s.store.OccasionsOf(ctx, a.s.pool, tenant, customerID, kind, before, size+1); err != nil {
			return nil, err
		}
	} else {
		start, end, err := dateRange(req.GetStartDate(), req.GetEndDate())
		if err != nil {
			return nil, toStatus(err)
		}
		filter = "occasions:range:" + req.GetStartDate() + ":" + req.GetEndDate() + ":" + kind
		after, err := decodePageToken(req.GetPageToken(), filter)
		if err != nil {
			return nil, err
		}
		if rows, err = a.s.store.OccasionsBetween(ctx, a.s.pool, tenant, start, end, kind, after, size+1); err != nil {
			return nil, err
		}
	}
	resp := &customerv1.ListCareOccasionsResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.Date, ID: last.ID})
	}
	// A birthday occasion's date is the customer's birthday (month and
	// day): a read of personal data, audited like the profile's.
	var birthdays []uuid.UUID
	for _, o := range rows {
		resp.Occasions = append(resp.Occasions, occasionToProto(o))
		if o.Kind == store.KindBirthday && !slices.Contains(birthdays, o.CustomerID) {
			birthdays = append(birthdays, o.CustomerID)
		}
	}
	if len(birthdays) > 0 {
		if err := a.s.auditRead(ctx, audit.List, birthdays, []string{"birthday"}); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// dateRange parses a range of at most maxRangeDays days, both ends given.
func dateRange(startS, endS string) (time.Time, time.Time, error) {
	if startS == "" {
		return time.Time{}, time.Time{}, &fieldError{field: "start_date", reason: "is required without customer_id"}
	}
	if endS == "" {
		return time.Time{}, time.Time{}, &fieldError{field: "end_date", reason: "is required without customer_id"}
	}
	start, err := time.Parse(time.DateOnly, startS)
	if err != nil {
		return time.Time{}, time.Time{}, &fieldError{field: "start_date", reason: "must be a date YYYY-MM-DD"}
	}
	end, err := time.Parse(time.DateOnly, endS)
	if err != nil {
		return time.Time{}, time.Time{}, &fieldError{field: "end_date", reason: "must be a date YYYY-MM-DD"}
	}
	if end.Before(start) {
		return time.Time{}, time.Time{}, &fieldError{field: "end_date", reason: "must not be before start_date"}
	}
	if end.Sub(start) > maxRangeDays*24*time.Hour {
		return time.Time{}, time.Time{}, &fieldError{field: "end_date", reason: fmt.Sprintf("must be at most %d days after start_date", maxRangeDays)}
	}
	return start, end, nil
}

func occasionToProto(o store.Occasion) *customerv1.CareOccasion {
	out := &customerv1.CareOccasion{
		Id: o.ID.String(), CustomerId: o.CustomerID.String(), Kind: kindValue(o.Kind), OccasionKey: o.Key,
		OccasionDate: o.Date.Format(time.DateOnly), DueTime: timestamppb.New(o.DueTime), TimeZone: o.TimeZone,
		CreateTime: timestamppb.New(o.CreateTime),
	}
	if o.ReferenceID != uuid.Nil {
		out.ReferenceId = o.ReferenceID.String()
	}
	return out
}

// Kinds are stored by their lower-case names: CARE_OCCASION_KIND_BIRTHDAY
// is "birthday".
const kindPrefix = "CARE_OCCASION_KIND_"

func kindName(k customerv1.CareOccasionKind) string {
	if _, ok := customerv1.CareOccasionKind_name[int32(k)]; !ok || k == customerv1.CareOccasionKind_CARE_OCCASION_KIND_UNSPECIFIED {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), kindPrefix))
}

func kindValue(name string) customerv1.CareOccasionKind {
	return customerv1.CareOccasionKind(customerv1.CareOccasionKind_value[kindPrefix+strings.ToUpper(name)])
}
