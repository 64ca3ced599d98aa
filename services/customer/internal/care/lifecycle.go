package care

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// Lifecycle exports, merges and erases what the care package holds about a
// customer: occasions, resolved tickets awaiting follow-up, care plans and
// their tasks.
type Lifecycle struct{ s *Server }

// Lifecycle returns the package's lifecycle steps.
func (s *Server) Lifecycle() *Lifecycle { return &Lifecycle{s: s} }

var (
	_ lifecycle.Exporter = (*Lifecycle)(nil)
	_ lifecycle.Merger   = (*Lifecycle)(nil)
	_ lifecycle.Eraser   = (*Lifecycle)(nil)
)

// Section names the package's part of an export or merge.
func (l *Lifecycle) Section() string { return "care" }

// Export returns the customer's occasions and plans, texts decrypted.
func (l *Lifecycle) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	occ, err := l.s.store.OccasionsOfCustomer(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	plans, err := l.s.store.PlansOf(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	out := &customerv1.CareExport{}
	for _, o := range occ {
		out.Occasions = append(out.Occasions, occasionToProto(o))
	}
	if len(plans) == 0 {
		return out, nil
	}
	k, err := l.s.sealer.CustomerKey(ctx, tx, tenant, customer)
	if err != nil && !errors.Is(err, pii.ErrKeyDestroyed) {
		return nil, err
	}
	for _, p := range plans {
		out.CarePlans = append(out.CarePlans, planToProto(p, k))
	}
	return out, nil
}

// Merge moves the sources' occasions, resolved tickets and plans to the
// primary. Where the primary and a source both have an occasion (the same
// birthday of a year), the primary's stays and the source's is dropped: it
// fired once already. Plan and task texts are resealed with the primary's
// key, since a ciphertext is bound to its customer.
func (l *Lifecycle) Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	moved, err := l.s.store.MergeOccasions(ctx, tx, tenant, primary, sources)
	if err != nil {
		return 0, err
	}
	n, err := l.s.store.MergeResolutions(ctx, tx, tenant, primary, sources)
	if err != nil {
		return 0, err
	}
	moved += n
	// Before reading the tasks: a completion in flight must not have its
	// note overwritten by the value read here.
	if err := l.s.store.LockTasksOf(ctx, tx, tenant, sources); err != nil {
		return 0, err
	}
	var target *pii.CustomerKey
	for _, src := range sources {
		plans, err := l.s.store.PlansOf(ctx, tx, tenant, src)
		if err != nil {
			return 0, err
		}
		if len(plans) == 0 {
			continue
		}
		if target == nil {
			if target, err = l.s.sealer.CustomerKey(ctx, tx, tenant, primary); err != nil {
				return 0, fmt.Errorf("merge care plans: primary key: %w", err)
			}
		}
		from, err := l.s.sealer.CustomerKey(ctx, tx, tenant, src)
		if err != nil && !errors.Is(err, pii.ErrKeyDestroyed) {
			return 0, err
		}
		for i := range plans {
			p := &plans[i]
			if p.TitleSealed, err = reseal(from, target, colPlanTitle, p.TitleSealed); err != nil {
				return 0, err
			}
			for j := range p.Tasks {
				t := &p.Tasks[j]
				if t.TitleSealed, err = reseal(from, target, colTaskTitle, t.TitleSealed); err != nil {
					return 0, err
				}
				if t.OutcomeNoteSealed, err = reseal(from, target, colOutcomeNote, t.OutcomeNoteSealed); err != nil {
					return 0, err
				}
			}
			moved += 1 + int64(len(p.Tasks))
		}
		if err := l.s.store.MovePlans(ctx, tx, tenant, primary, plans); err != nil {
			return 0, err
		}
	}
	return moved, nil
}

// reseal opens a value sealed for one customer and seals it for another.
// nil stays nil; a value whose key is gone (the source was erased) becomes
// a sealed empty text, since the sealed columns may not be empty.
func reseal(from, to *pii.CustomerKey, col pii.Column, sealed []byte) ([]byte, error) {
	if sealed == nil {
		return nil, nil
	}
	var plain []byte
	if from != nil {
		b, err := from.Open(col, sealed)
		if err != nil {
			return nil, fmt.Errorf("reseal %s: %w", col, err)
		}
		plain = b
	}
	return to.Seal(col, plain)
}

// Erase deletes the customer's occasions, resolved tickets and plans with
// their tasks. The plans' texts are already unreadable once the key is
// destroyed; the occasions would still say when the birthday is.
func (l *Lifecycle) Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error {
	return l.s.store.EraseCustomer(ctx, tx, tenant, customer)
}
