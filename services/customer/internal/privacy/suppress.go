package privacy

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
)

// fingerprintPurpose separates suppression fingerprints from every other
// use of the tenant's PRF key.
const fingerprintPurpose = "contact-suppression"

// Suppressions answers whether a contact address belongs to an erased
// customer and must not be contacted for marketing. The list holds keyed
// fingerprints of normalised addresses (see contact_suppressions), so
// checking an address means fingerprinting it the same way.
//
// Outreach checks the address it is about to send to (Email, Phone);
// consent checks a customer's current address before recording a marketing
// grant (Contact).
type Suppressions struct {
	sealer   *pii.Sealer
	profiles profile.Repository
	store    *store.Store
}

// NewSuppressions returns a checker; profiles (store.New(sealer)) is only
// needed by Contact.
func NewSuppressions(sealer *pii.Sealer, profiles profile.Repository) *Suppressions {
	return &Suppressions{sealer: sealer, profiles: profiles, store: store.New()}
}

// Email reports whether email is suppressed in tenant (compared normalised:
// case and surrounding space do not matter).
func (s *Suppressions) Email(ctx context.Context, db store.DB, tenant uuid.UUID, email string) (bool, error) {
	return s.address(ctx, db, tenant, pii.Email, email)
}

// Phone reports whether phone is suppressed in tenant (compared by its
// E.164 digits).
func (s *Suppressions) Phone(ctx context.Context, db store.DB, tenant uuid.UUID, phone string) (bool, error) {
	return s.address(ctx, db, tenant, pii.Phone, phone)
}

// Contact reports whether the customer's current address for channel is
// suppressed: the email for "email", the phone for "sms", "phone" and
// "messaging"; other channels (push, post) are never suppressed. A customer
// not found is not suppressed (the caller reports it).
func (s *Suppressions) Contact(ctx context.Context, db pgx.Tx, tenant, customer uuid.UUID, channel string) (bool, error) {
	var col pii.Column
	switch channel {
	case "email":
		col = pii.Email
	case "sms", "phone", "messaging":
		col = pii.Phone
	default:
		return false, nil
	}
	c, err := s.profiles.Get(ctx, db, tenant, customer, false)
	if errors.Is(err, profile.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read contact address: %w", err)
	}
	v := c.Email
	if col == pii.Phone {
		v = c.Phone
	}
	return s.address(ctx, db, tenant, col, v)
}

func (s *Suppressions) address(ctx context.Context, db store.DB, tenant uuid.UUID, col pii.Column, v string) (bool, error) {
	if v == "" {
		return false, nil
	}
	kind, fp, err := fingerprint(ctx, s.sealer, db, tenant, col, v)
	if errors.Is(err, pii.ErrNoTenantKeys) {
		return false, nil // the tenant never stored anyone, so never erased anyone
	}
	if err != nil {
		return false, err
	}
	return s.store.Suppressed(ctx, db, tenant, kind, fp)
}

// fingerprint is the suppression list's key of an address: its kind and the
// tenant's keyed PRF of its normalised form.
func fingerprint(ctx context.Context, sealer *pii.Sealer, db store.DB, tenant uuid.UUID, col pii.Column, v string) (string, []byte, error) {
	t, err := sealer.LoadTenant(ctx, db, tenant)
	if err != nil {
		return "", nil, fmt.Errorf("suppression fingerprint: %w", err)
	}
	kind := "email"
	if col == pii.Phone {
		kind = "phone"
	}
	fp, err := t.Fingerprint(fingerprintPurpose+":"+kind, []byte(pii.Normalise(col, v)))
	if err != nil {
		return "", nil, fmt.Errorf("suppression fingerprint: %w", err)
	}
	return kind, fp, nil
}
