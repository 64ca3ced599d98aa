package profile

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
)

// SubjectMerged is the subject of customer.merged events.
const SubjectMerged = "rapport.customer.customer.merged"

// Section names of what the profile itself merges.
const (
	SectionProfile      = "profile"       // primary fields filled from the sources
	SectionExternalRefs = "external_refs" // systems the primary took from the sources
)

// MergeResult is the merged primary and how much each part moved.
type MergeResult struct {
	Customer Customer
	Sections []Section
}

// Section counts the rows one part of the service moved to the primary.
type Section struct {
	Name  string
	Moved int64
}

// MergeRefusedError is a merge whose result would break a profile rule,
// e.g. more external refs than a profile may hold.
type MergeRefusedError struct{ Field, Reason string }

func (e *MergeRefusedError) Error() string { return "merged profile: " + e.Field + ": " + e.Reason }

// Merge merges the sources into the primary in tx.
//
//   - Every customer of the merge is locked in id order first, so two merges
//     sharing a customer run one after the other, never deadlock, and the
//     second sees the first's result.
//   - Unknown ids, other tenants' ids and erased customers are ErrNotFound;
//     a customer already merged (primary or source) is a *MergedError, so
//     pointers never chain. A source that others were merged into before
//     hands them on: they point at the primary afterwards.
//   - The primary keeps every field it has; an empty one takes the first
//     non-empty value among the sources, the most recently updated source
//     first (its data is the likeliest to be current). Tags are united;
//     external refs and attributes are united key by key with the same
//     precedence (the primary's value, then the newest source's).
//   - The sources get merged_into = primary, merge_time = now; every
//     lifecycle.Merger then moves its rows; one customer.merged event is
//     written.
//
// Nothing commits here: a dry run is the same call in a transaction the
// caller rolls back.
func (s *Service) Merge(ctx context.Context, tx pgx.Tx, tenantID, primaryID uuid.UUID, sourceIDs []uuid.UUID) (MergeResult, error) {
	if slices.Contains(sourceIDs, primaryID) {
		return MergeResult{}, &FieldError{Field: "source_ids", Reason: "must not contain primary_id"}
	}
	ids := append([]uuid.UUID{primaryID}, sourceIDs...)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	ids = slices.Compact(ids)
	locked, err := s.repo.LockForMerge(ctx, tx, tenantID, ids)
	if err != nil {
		return MergeResult{}, err
	}
	if len(locked) != len(ids) {
		return MergeResult{}, ErrNotFound
	}
	var (
		primary Customer
		sources []Customer
	)
	for _, c := range locked {
		if c.Erased {
			return MergeResult{}, ErrNotFound
		}
		if c.MergedInto != uuid.Nil {
			return MergeResult{}, &MergedError{ID: c.ID, Into: c.MergedInto}
		}
		if c.ID == primaryID {
			primary = c
		} else {
			sources = append(sources, c)
		}
	}
	slices.SortStableFunc(sources, func(a, b Customer) int {
		if c := b.UpdateTime.Compare(a.UpdateTime); c != 0 {
			return c
		}
		return bytes.Compare(b.ID[:], a.ID[:])
	})

	merged := mergeProfiles(primary, sources)
	merged.normalise()
	now := s.now().UTC()
	if err := merged.validate(now); err != nil {
		if fe, ok := err.(*FieldError); ok { //nolint:errorlint // validate returns it unwrapped
			return MergeResult{}, &MergeRefusedError{Field: fe.Field, Reason: fe.Reason}
		}
		return MergeResult{}, err
	}
	changed := changedFields(primary, merged)
	merged.UpdateTime = now
	// Always written: the version moves with the merge even when no field
	// changed, so the event's aggregate_version orders it.
	updated, err := s.repo.Update(ctx, tx, merged)
	if err != nil {
		return MergeResult{}, err
	}
	if err := s.repo.MarkMerged(ctx, tx, tenantID, primaryID, sourceIDs, now); err != nil {
		return MergeResult{}, err
	}
	result := MergeResult{Customer: updated, Sections: []Section{
		{Name: SectionProfile, Moved: int64(len(changed))},
		{Name: SectionExternalRefs, Moved: int64(len(updated.ExternalRefs) - len(primary.ExternalRefs))},
	}}
	for _, m := range s.mergers {
		moved, err := m.Merge(ctx, tx, tenantID, primaryID, sourceIDs)
		if err != nil {
			return MergeResult{}, fmt.Errorf("merge %s: %w", m.Section(), err)
		}
		result.Sections = append(result.Sections, Section{Name: m.Section(), Moved: moved})
	}

	ev := &customerv1.CustomerMerged{
		TenantId: tenantID.String(), PrimaryCustomerId: primaryID.String(),
		OccurredAt: timestamppb.New(now), AggregateVersion: updated.Version, ChangedFields: changed,
	}
	for _, id := range sourceIDs {
		ev.SourceCustomerIds = append(ev.SourceCustomerIds, id.String())
	}
	updated.UpdateTime = now
	if err := s.publish(ctx, tx, updated, SubjectMerged, ev); err != nil {
		return MergeResult{}, err
	}
	return result, nil
}

// mergeProfiles is the primary with its gaps filled from the sources, which
// come in precedence order.
func mergeProfiles(primary Customer, sources []Customer) Customer {
	out := primary
	fill := func(dst *string, get func(Customer) string) {
		for _, src := range sources {
			if *dst != "" {
				return
			}
			*dst = get(src)
		}
	}
	fill(&out.Email, func(c Customer) string { return c.Email })
	fill(&out.Phone, func(c Customer) string { return c.Phone })
	fill(&out.Locale, func(c Customer) string { return c.Locale })
	fill(&out.TimeZone, func(c Customer) string { return c.TimeZone })
	for _, src := range sources {
		if out.Birthday == nil && src.Birthday != nil {
			b := *src.Birthday
			out.Birthday = &b
		}
		if out.Address.empty() && !src.Address.empty() {
			a := *src.Address
			a.Lines = slices.Clone(a.Lines)
			out.Address = &a
		}
	}
	out.Tags = slices.Clone(primary.Tags)
	out.ExternalRefs = maps.Clone(primary.ExternalRefs)
	out.Attributes = maps.Clone(primary.Attributes)
	for _, src := range sources {
		out.Tags = append(out.Tags, src.Tags...)
		out.ExternalRefs = unite(out.ExternalRefs, src.ExternalRefs)
		out.Attributes = unite(out.Attributes, src.Attributes)
	}
	return out
}

// unite adds to dst the keys of src it lacks.
func unite(dst, src map[string]string) map[string]string {
	for k, v := range src {
		if _, ok := dst[k]; ok {
			continue
		}
		if dst == nil {
			dst = map[string]string{}
		}
		dst[k] = v
	}
	return dst
}

// FindDuplicates returns the tenant's other live customers sharing the
// customer's email, phone or an external ref, newest first, at most limit.
func (s *Service) FindDuplicates(ctx context.Context, db DB, tenantID, id uuid.UUID, limit int) ([]Duplicate, error) {
	c, err := s.Get(ctx, db, tenantID, id)
	if err != nil {
		return nil, err
	}
	if c.MergedInto != uuid.Nil {
		return nil, &MergedError{ID: c.ID, Into: c.MergedInto}
	}
	return s.repo.Duplicates(ctx, db, c, limit)
}
