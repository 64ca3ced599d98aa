package consent

import (
	"context"
	"errors"
	"math"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/consent/store"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// ExportSection is the consent section's name in ExportCustomer.
const ExportSection = "consent"

// ErrCustomerErased: the customer was erased; nothing about them may change.
var ErrCustomerErased = errors.New("customer erased")

// ErrContactSuppressed: the customer's address for the channel belongs to
// an erased customer and may not be granted marketing.
var ErrContactSuppressed = errors.New("contact address suppressed")

// Suppressor tells whether a customer's current address for a channel is
// on the suppression list (privacy.Suppressions.Contact).
type Suppressor interface {
	Contact(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID, channel string) (bool, error)
}

// SetSuppressor makes SetConsent refuse to grant marketing to a suppressed
// address. Call it before serving.
func (s *Server) SetSuppressor(p Suppressor) { s.svc.suppressor = p }

// Privacy is the consent part of ExportCustomer and EraseCustomer.
type Privacy struct{ svc *service }

var (
	_ lifecycle.Exporter = (*Privacy)(nil)
	_ lifecycle.Eraser   = (*Privacy)(nil)
)

// Privacy returns the consent package's export and erasure steps.
func (s *Server) Privacy() *Privacy { return &Privacy{svc: s.svc} }

// Section is the export section's name.
func (p *Privacy) Section() string { return ExportSection }

// Export returns the customer's current consents, their whole history,
// contact preferences and every recorded contact, in tx's snapshot.
func (p *Privacy) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	out := &customerv1.ConsentExport{}
	cs, _, err := p.svc.consents(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		out.Consents = append(out.Consents, consentToProto(c))
	}
	events, err := p.svc.events(ctx, tx, tenant, customer, 0, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	for _, e := range events {
		out.ConsentEvents = append(out.ConsentEvents, eventToProto(e))
	}
	prefs, err := p.svc.preferences(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	out.ContactPreferences = preferencesToProto(prefs)
	touches, err := p.svc.store.TouchesOf(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	for _, t := range touches {
		out.ContactTouches = append(out.ContactTouches, touchToProto(touchFromStore(t)))
	}
	return out, nil
}

// Erase forgets how the customer likes to be reached (quiet hours,
// preferred channels) and voids their open confirmation tokens, under the
// customer's lock. It keeps the consent history, the evidence of what was
// agreed, and the recorded contacts, which frequency caps and analytics
// count: both hold the customer's id and no personal data. Once the
// customer is erased the governor refuses every contact (ERASED) and no
// consent can change.
func (p *Privacy) Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error {
	if _, err := p.svc.lock(ctx, tx, tenant, customer, p.svc.clock()); err != nil {
		return err
	}
	return p.svc.store.ForgetPreferences(ctx, tx, tenant, customer)
}

// writable refuses changes about an erased customer, or one merged into
// another.
func writable(set store.Settings) error {
	if set.Erased {
		return ErrCustomerErased
	}
	if set.MergedInto.Valid {
		return &customerMergedError{id: set.CustomerID, into: set.MergedInto.UUID}
	}
	return nil
}

// customerMergedError: the customer was merged into another, whose consent
// is the one that counts now.
type customerMergedError struct{ id, into uuid.UUID }

func (e *customerMergedError) Error() string { return "customer merged into another" }

// suppressed reports whether a grant of marketing on ch would reach a
// suppressed address.
func (s *service) suppressed(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, c Change) (bool, error) {
	if s.suppressor == nil || c.Purpose != PurposeMarketing || c.State != StateGranted {
		return false, nil
	}
	return s.suppressor.Contact(ctx, tx, tenant, c.CustomerID, string(c.Channel))
}
