package store

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/services/customer/internal/purchase/store/dbgen"
)

// MoveToPrimary re-points the sources' purchases (their items follow) at
// the primary and drops the sources' stored segments, in tx. It returns how
// many purchases and items moved.
func (s *Store) MoveToPrimary(ctx context.Context, tx pgx.Tx, tenantID, primary uuid.UUID, sources []uuid.UUID) (purchases, items int64, err error) {
	row, err := s.q.PurchaseMergeMove(ctx, tx, dbgen.PurchaseMergeMoveParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources,
	})
	if err != nil {
		return 0, 0, interpret("move purchases", err)
	}
	if err := s.q.PurchaseMergeDropSegments(ctx, tx, dbgen.PurchaseMergeDropSegmentsParams{
		TenantID: tenantID, SourceIds: sources,
	}); err != nil {
		return 0, 0, interpret("drop merged segments", err)
	}
	return row.Purchases, row.Items, nil
}
