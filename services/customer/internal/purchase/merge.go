package purchase

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
)

// SectionPurchases names the purchase package's part of a merge.
const SectionPurchases = "purchases"

// Merger moves purchases when customers are merged (lifecycle.Merger).
type Merger struct{ s *Server }

// Merger returns the purchase package's lifecycle.Merger.
func (s *Server) Merger() *Merger { return &Merger{s: s} }

var _ lifecycle.Merger = (*Merger)(nil)

// Section implements lifecycle.Merger.
func (m *Merger) Section() string { return SectionPurchases }

// Merge re-points the sources' purchases (with their items) at the primary,
// drops the sources' segments and recomputes the primary's segment from all
// its purchases now, writing segment.changed if it changed. It takes every
// customer's purchase lock first (in id order), so a RecordPurchase of a
// source in flight either commits before the move, and moves, or waits. It
// reports the purchases moved; their items ride along unchanged.
func (m *Merger) Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	ids := append([]uuid.UUID{primary}, sources...)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range ids {
		if _, _, err := m.s.store.LockCustomer(ctx, tx, customerLockKey(tenant, id), tenant, id); err != nil {
			return 0, err
		}
	}
	moved, _, err := m.s.store.MoveToPrimary(ctx, tx, tenant, primary, sources)
	if err != nil {
		return 0, err
	}
	if moved == 0 {
		return 0, nil // nothing the primary's segment could learn from
	}
	now := m.s.now().UTC()
	if err := m.s.store.AddToSchedule(ctx, tx, tenant, now); err != nil {
		return 0, err
	}
	changes, err := m.s.recompute(ctx, tx, tenant, primary, now)
	if err != nil {
		return 0, err
	}
	if events := segmentEvents(tenant, changes, now); len(events) > 0 {
		if err := outbox.Write(ctx, tx, events...); err != nil {
			return 0, fmt.Errorf("write segment events: %w", err)
		}
	}
	return moved, nil
}
