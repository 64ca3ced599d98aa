package outreach

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// sendRequest is SendOutreach's request in domain terms.
type sendRequest struct {
	customerID  uuid.UUID
	templateID  uuid.UUID // or
	templateKey string
	purpose     consent.Purpose
	variables   map[string]string
	locale      string // "": the customer's
	requestID   uuid.UUID
	// care, when set, is the care occasion this sends for (the care.due
	// consumer): the variables come from it and the profile (see
	// careVariables), and a missing template or a failed render is a
	// FAILED delivery in the log (no_template, render_failed) rather than
	// an error for a caller there is none of.
	care *careOccasion
	// created, when set, receives the delivery send stored (not one a
	// request id found), for the caller to count once it commits.
	created *store.Delivery
}

func (s *Server) SendOutreach(ctx context.Context, req *customerv1.SendOutreachRequest) (*customerv1.OutreachDelivery, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	r := sendRequest{purpose: purposeName(req.GetPurpose()), variables: req.GetVariables(), locale: req.GetLocale()}
	if r.customerID, err = parseID("customer_id", req.GetCustomerId()); err != nil {
		return nil, toStatus(err)
	}
	switch {
	case req.GetTemplateId() != "":
		if r.templateID, err = parseID("template_id", req.GetTemplateId()); err != nil {
			return nil, toStatus(err)
		}
	case req.GetTemplateKey() != "":
		r.templateKey = req.GetTemplateKey()
	default:
		return nil, toStatus(&FieldError{Field: "template_id", Reason: "template_id or template_key is required"})
	}
	if r.purpose == "" {
		return nil, toStatus(&FieldError{Field: "purpose", Reason: "must be a known purpose"})
	}
	if id := req.GetRequestId(); id != "" {
		if r.requestID, err = parseID("request_id", id); err != nil {
			return nil, toStatus(err)
		}
	}
	var created store.Delivery
	r.created = &created
	resp, err := idem.Do(ctx, s.pool, w.key(customerv1.OutreachService_SendOutreach_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.OutreachDelivery, error) {
			created = store.Delivery{}
			d, err := s.send(ctx, tx, w, r)
			if err != nil {
				return nil, toStatus(err)
			}
			return deliveryToProto(d), nil
		})
	if err == nil && created.ID != uuid.Nil {
		s.metrics.outcome(created) // committed: FAILED, REFUSED or DEFERRED at once
	}
	return resp, err
}

// send makes the delivery of r, in tx:
//
//  1. A request id that already made a delivery returns it (for ever, not
//     only while idempotency_keys keeps the response).
//  2. The template and the customer are read; the message is rendered now
//     (a missing variable is the caller's error, reported at once). For a
//     care occasion (r.care) there is no caller to tell: a missing
//     template or a failed render is a FAILED delivery (no_template,
//     render_failed) and its OutreachFailed, and the variables are the
//     care set (care.go), the display name opened here.
//  3. Without an address for the channel, or a driver, it fails at once:
//     nothing could be sent, so no touch is reserved.
//  4. The governor decides and, if allowed, records the touch in tx
//     (reference: the delivery id). Refused for now (s.deferrable): a
//     DEFERRED delivery due for a re-check at the next allowed time, its
//     content sealed, no touch and no event. Refused otherwise: a REFUSED
//     delivery and OutreachFailed. Allowed: a QUEUED delivery due now, its
//     content sealed with the customer's key.
func (s *Server) send(ctx context.Context, tx pgx.Tx, w who, r sendRequest) (store.Delivery, error) {
	now := s.clock()
	if r.requestID != uuid.Nil {
		prior, err := s.store.DeliveryByRequestID(ctx, tx, w.tenant, r.requestID)
		switch {
		case err == nil && r.care != nil:
			// The occasion was handled, whatever the settings say now.
			return prior, nil
		case err == nil:
			if prior.CustomerID != r.customerID || string(r.purpose) != prior.Purpose ||
				(r.templateID != uuid.Nil && r.templateID != prior.TemplateID) ||
				(r.templateKey != "" && r.templateKey != prior.TemplateKey) {
				return store.Delivery{}, errRequestIDReused
			}
			return prior, nil
		case !errors.Is(err, store.ErrNotFound):
			return store.Delivery{}, err
		}
	}

	var (
		t   store.Template
		err error
	)
	if r.templateID != uuid.Nil {
		t, err = s.store.Template(ctx, tx, w.tenant, r.templateID, false)
	} else {
		t, err = s.store.TemplateByKey(ctx, tx, w.tenant, r.templateKey)
	}
	noTemplate := errors.Is(err, store.ErrNotFound) && r.care != nil
	if errors.Is(err, store.ErrNotFound) && !noTemplate {
		return store.Delivery{}, errTemplateNotFound
	}
	if err != nil && !noTemplate {
		return store.Delivery{}, err
	}
	contact, err := s.store.CustomerContact(ctx, tx, w.tenant, r.customerID)
	if errors.Is(err, store.ErrNotFound) {
		return store.Delivery{}, errCustomerNotFound
	}
	if err != nil {
		return store.Delivery{}, err
	}
	if contact.MergedInto != uuid.Nil {
		return store.Delivery{}, &customerMergedError{id: r.customerID, into: contact.MergedInto}
	}
	key, err := s.sealer.CustomerKey(ctx, tx, w.tenant, r.customerID)
	if errors.Is(err, pii.ErrKeyDestroyed) {
		return store.Delivery{}, errCustomerNotFound // erased: forgotten
	}
	if err != nil {
		return store.Delivery{}, err
	}

	id, err := uuid.NewV7()
	if err != nil {
		return store.Delivery{}, fmt.Errorf("new delivery id: %w", err)
	}
	d := store.Delivery{
		TenantID: w.tenant, ID: id, CustomerID: r.customerID, SealedCustomerID: r.customerID,
		TemplateKey: r.templateKey, Purpose: string(r.purpose), RequestID: r.requestID, CreateTime: now,
	}
	if noTemplate {
		d.Status, d.FailureReason = store.StatusFailed, ReasonNoTemplate
		return s.insertDelivery(ctx, tx, r, d, now)
	}
	d.TemplateID, d.TemplateKey, d.Channel = t.ID, t.Key, t.Channel

	locale := r.locale
	if locale == "" {
		locale = contact.Locale
	}
	v := pickVariant(t, locale)
	d.Locale = v.Locale
	p, err := parse(v)
	if err != nil {
		return store.Delivery{}, fmt.Errorf("parse stored template %s: %w", t.ID, err)
	}
	vars := r.variables
	var opened []string // what care variables opened besides the address
	if r.care != nil {
		if vars, err = r.care.variables(key, contact); err != nil {
			return store.Delivery{}, err
		}
		if len(contact.DisplayNameSealed) > 0 {
			opened = append(opened, "display_name")
		}
	}
	content, err := p.render(vars)
	if err != nil {
		var pe *partError
		switch {
		case errors.As(err, &pe) && r.care != nil:
			d.Status, d.FailureReason = store.StatusFailed, ReasonRenderFailed
			if len(opened) > 0 { // opened for the variables; no address, no content
				if err := auditSend(ctx, tx, w, r.requestID, d, store.Contact{}, opened...); err != nil {
					return store.Delivery{}, err
				}
			}
			return s.insertDelivery(ctx, tx, r, d, now)
		case errors.As(err, &pe):
			return store.Delivery{}, &FieldError{Field: "variables",
				Reason: fmt.Sprintf("do not render template %s (variant %s, %s): %v", t.Key, v.Locale, pe.part, pe.err)}
		}
		return store.Delivery{}, err
	}

	ch := consent.Channel(t.Channel)
	address, err := openAddress(key, ch, contact)
	if err != nil {
		return store.Delivery{}, err
	}
	switch {
	case address == "":
		d.Status, d.FailureReason = store.StatusFailed, ReasonNoAddress
	case s.drivers[ch] == nil:
		d.Status, d.FailureReason = store.StatusFailed, ReasonNoDriver
	default:
		dec, _, err := s.governor.Reserve(ctx, tx, w.tenant, w.subject, consent.Touch{
			CustomerID: r.customerID, Channel: ch, Purpose: r.purpose, SourceService: SourceService, Reference: id.String(),
		})
		if err != nil {
			return store.Delivery{}, fmt.Errorf("reserve contact: %w", err)
		}
		switch {
		case dec.Reason == consent.ReasonCustomerUnknown:
			return store.Delivery{}, errCustomerNotFound
		case !dec.Allowed && s.deferrable(dec, now):
			d.Status, d.NextAttemptTime = store.StatusDeferred, dec.NextAllowed
			d.RefusalReason, d.NextAllowedTime = string(dec.Reason), dec.NextAllowed
		case !dec.Allowed:
			d.Status, d.FailureReason = store.StatusRefused, refusedPrefix+string(dec.Reason)
			d.RefusalReason, d.NextAllowedTime = string(dec.Reason), dec.NextAllowed
		default:
			d.Status, d.NextAttemptTime = store.StatusQueued, now
		}
	}
	if d.Status != store.StatusRefused {
		plain, err := json.Marshal(content)
		if err != nil {
			return store.Delivery{}, fmt.Errorf("encode content: %w", err)
		}
		if d.Content, err = key.Seal(ContentColumn, plain); err != nil {
			return store.Delivery{}, err
		}
	}
	if err := auditSend(ctx, tx, w, r.requestID, d, contact, opened...); err != nil {
		return store.Delivery{}, err
	}
	return s.insertDelivery(ctx, tx, r, d, now)
}

// deferrable reports whether a refusal only means "not now": quiet hours,
// or a frequency cap, when the governor names the time contact becomes
// allowed and it is no later than MaxDeferral after created (the delivery's
// creation, so re-checks cannot stretch the wait). Every other reason needs
// the customer to act, or can never pass.
func (s *Server) deferrable(dec consent.Decision, created time.Time) bool {
	switch dec.Reason {
	case consent.ReasonQuietHours, consent.ReasonFrequencyCap:
		return !dec.NextAllowed.IsZero() && !dec.NextAllowed.After(created.Add(s.cfg.MaxDeferral))
	}
	return false
}

// insertDelivery stores d, the new delivery of r, and, when it ended at
// once (FAILED or REFUSED), its OutreachFailed event, in tx; it hands the
// stored delivery to r.created, for the caller to count once it commits.
func (s *Server) insertDelivery(ctx context.Context, tx pgx.Tx, r sendRequest, d store.Delivery, now time.Time) (store.Delivery, error) {
	stored, err := s.store.InsertDelivery(ctx, tx, d)
	if errors.Is(err, store.ErrConflict) {
		return store.Delivery{}, errRequestIDRace
	}
	if err != nil {
		return store.Delivery{}, err
	}
	if stored.Status == store.StatusFailed || stored.Status == store.StatusRefused {
		if err := outbox.Write(ctx, tx, failedEvent(stored, now)); err != nil {
			return store.Delivery{}, fmt.Errorf("write outreach event: %w", err)
		}
	}
	if r.created != nil {
		*r.created = stored
	}
	return stored, nil
}

// sealedAddress is c's address for ch as sealed, and the column it is
// sealed as: the email for email, the phone number for SMS and messaging
// apps; nil when there is none.
func sealedAddress(ch consent.Channel, c store.Contact) (pii.Column, []byte) {
	if ch == consent.ChannelEmail {
		return pii.Email, c.EmailSealed
	}
	return pii.Phone, c.PhoneSealed
}

// openAddress opens the customer's address for ch (sealedAddress); ""
// when there is none.
func openAddress(key *pii.CustomerKey, ch consent.Channel, c store.Contact) (string, error) {
	col, sealed := sealedAddress(ch, c)
	if sealed == nil {
		return "", nil
	}
	pt, err := key.Open(col, sealed)
	if err != nil {
		return "", err
	}
	return string(pt), nil
}

func sentEvent(d store.Delivery) outbox.Event {
	return outbox.Event{
		TenantID: d.TenantID.String(), Subject: SubjectSent, AggregateType: AggregateType,
		AggregateID: d.ID.String(), AggregateVersion: d.Version, OccurredAt: d.SendTime,
		Payload: &customerv1.OutreachSent{
			TenantId: d.TenantID.String(), DeliveryId: d.ID.String(), CustomerId: d.CustomerID.String(),
			AggregateVersion: d.Version, OccurredAt: timestamppb.New(d.SendTime), Channel: channelValue(d.Channel),
			Purpose: purposeValue(d.Purpose), TemplateId: idString(d.TemplateID),
			Attempts: int32(d.Attempts), TemplateKey: d.TemplateKey, //nolint:gosec // small
		},
	}
}

func failedEvent(d store.Delivery, at time.Time) outbox.Event {
	return outbox.Event{
		TenantID: d.TenantID.String(), Subject: SubjectFailed, AggregateType: AggregateType,
		AggregateID: d.ID.String(), AggregateVersion: d.Version, OccurredAt: at,
		Payload: &customerv1.OutreachFailed{
			TenantId: d.TenantID.String(), DeliveryId: d.ID.String(), CustomerId: d.CustomerID.String(),
			AggregateVersion: d.Version, OccurredAt: timestamppb.New(at), Channel: channelValue(d.Channel),
			Purpose: purposeValue(d.Purpose), TemplateId: idString(d.TemplateID),
			Attempts: int32(d.Attempts), Reason: d.FailureReason, TemplateKey: d.TemplateKey, //nolint:gosec // small
		},
	}
}

// idString is id's text, or "" for uuid.Nil (a no_template delivery's
// template).
func idString(id uuid.UUID) string {
	if id == uuid.Nil {
		return ""
	}
	return id.String()
}
