package store

import (
	"context"
	"time"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/services/customer/internal/consent/store/dbgen"
)

// MergeCounts is what MoveToPrimary moved.
type MergeCounts struct {
	Events, States, Touches, Preferences int64
}

// MoveToPrimary moves the sources' consent data to the primary, in db's
// transaction (queries/merge.sql says how each part moves). The primary's
// settings row must exist (LockSettings creates it); the sources' settings
// rows are locked here, in id order.
func (s *Store) MoveToPrimary(ctx context.Context, db DB, tenantID, primary uuid.UUID, sources []uuid.UUID, now time.Time) (MergeCounts, error) {
	var n MergeCounts
	if _, err := s.q.ConsentMergeLock(ctx, db, dbgen.ConsentMergeLockParams{TenantID: tenantID, CustomerIds: sources}); err != nil {
		return n, interpret("lock merged contact settings", err)
	}
	var err error
	if n.Events, err = s.q.ConsentMergeEvents(ctx, db, dbgen.ConsentMergeEventsParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources,
	}); err != nil {
		return n, interpret("copy consent history", err)
	}
	if n.States, err = s.q.ConsentMergeStates(ctx, db, dbgen.ConsentMergeStatesParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources, Now: now,
	}); err != nil {
		return n, interpret("move consents", err)
	}
	if err := s.q.ConsentMergeDropSourceStates(ctx, db, dbgen.ConsentMergeDropSourceStatesParams{
		TenantID: tenantID, SourceIds: sources,
	}); err != nil {
		return n, interpret("drop merged consents", err)
	}
	if err := s.q.ConsentMergeRevokeTokens(ctx, db, dbgen.ConsentMergeRevokeTokensParams{
		TenantID: tenantID, SourceIds: sources, Now: now,
	}); err != nil {
		return n, interpret("revoke merged consent tokens", err)
	}
	if n.Touches, err = s.q.ConsentMergeTouches(ctx, db, dbgen.ConsentMergeTouchesParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources,
	}); err != nil {
		return n, interpret("move contact touches", err)
	}
	if n.Preferences, err = s.q.ConsentMergePreferences(ctx, db, dbgen.ConsentMergePreferencesParams{
		TenantID: tenantID, PrimaryID: primary, SourceIds: sources, Now: now,
	}); err != nil {
		return n, interpret("merge contact preferences", err)
	}
	return n, nil
}
