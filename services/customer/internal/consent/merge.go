package consent

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// SectionConsent names the consent package's part of a merge.
const SectionConsent = "consent"

// Merger moves consent data when customers are merged (lifecycle.Merger).
type Merger struct{ svc *service }

// Merger returns the consent package's lifecycle.Merger.
func (s *Server) Merger() *Merger { return &Merger{svc: s.svc} }

var _ lifecycle.Merger = (*Merger)(nil)

// Section implements lifecycle.Merger.
func (m *Merger) Section() string { return SectionConsent }

// Merge moves the sources' consent data to the primary:
//   - consents: the primary's wins for every channel × purpose it has; it
//     takes the others from the source that decided last, and the sources
//     are left with none (nothing may be sent under a merged id);
//   - history: copied into the primary's (consent_events is append-only),
//     numbered on from the primary's version in recorded order;
//   - preferences: the primary keeps its quiet hours and preferred channels,
//     filling what it lacks from the source that changed them last;
//   - governor touches: re-pointed, so they count against the primary's caps;
//   - the sources' open confirmation links are revoked.
//
// The primary's contact settings row is its per-customer lock (see
// store.LockSettings): taken first, so a consent change of the primary in
// flight finishes before or waits; the sources' rows are locked next. It
// reports the events, consents, touches and preference rows moved.
func (m *Merger) Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	now := m.svc.now().UTC()
	if _, err := m.svc.store.LockSettings(ctx, tx, tenant, primary, now); err != nil {
		return 0, err
	}
	n, err := m.svc.store.MoveToPrimary(ctx, tx, tenant, primary, sources, now)
	if err != nil {
		return 0, err
	}
	return n.Events + n.States + n.Touches + n.Preferences, nil
}
