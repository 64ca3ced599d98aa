package care

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Round runs one tenant's round in tx without claiming it, as a replica
// would after its claim: tests race two of them on one tenant to prove the
// occasions' unique key alone keeps each occasion to one row and one event.
func (s *Server) Round(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, now time.Time) (int, error) {
	occ, err := s.round(ctx, tx, tenant, now)
	return len(occ), err
}
