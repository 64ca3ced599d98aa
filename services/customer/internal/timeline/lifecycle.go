package timeline

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
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// Lifecycle exports, merges and erases customers' timelines.
type Lifecycle struct {
	sealer *pii.Sealer
	store  *store.Store
}

var (
	_ lifecycle.Exporter = (*Lifecycle)(nil)
	_ lifecycle.Merger   = (*Lifecycle)(nil)
	_ lifecycle.Eraser   = (*Lifecycle)(nil)
)

// NewLifecycle returns the timeline's export, merge and erase steps.
func NewLifecycle(sealer *pii.Sealer) *Lifecycle {
	return &Lifecycle{sealer: sealer, store: store.New()}
}

// Section names the timeline in exports and merge previews.
func (*Lifecycle) Section() string { return "interactions" }

// Export returns the customer's whole timeline, newest first, summaries and
// bodies in clear (a ListInteractionsResponse without a page token).
func (l *Lifecycle) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	rows, err := l.store.All(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	keys, err := l.sealer.CustomerKeys(ctx, tx, tenant, []uuid.UUID{customer})
	if err != nil {
		return nil, fmt.Errorf("export interactions: %w", err)
	}
	k := keys[customer] // nil once erased: nothing sealed is readable then
	out := &customerv1.ListInteractionsResponse{}
	for _, e := range rows {
		var summary, body string
		if k != nil {
			if summary, err = openText(k, summaryColumn, e.SummarySealed); err != nil {
				return nil, fmt.Errorf("export interactions: %w", err)
			}
			if body, err = openText(k, bodyColumn, e.BodySealed); err != nil {
				return nil, fmt.Errorf("export interactions: %w", err)
			}
		}
		out.Interactions = append(out.Interactions, entryToProto(e, summary, body))
	}
	return out, nil
}

// Merge moves the sources' entries to the primary. Their sealed text is
// bound to the source customer (key and associated data), so it is opened
// with the source's key and sealed again with the primary's, all in tx; a
// source already erased has no readable text left, and its entries move
// without it.
func (l *Lifecycle) Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (int64, error) {
	sources = without(sources, primary)
	if len(sources) == 0 {
		return 0, nil
	}
	sealed, err := l.store.SealedOf(ctx, tx, tenant, sources)
	if err != nil {
		return 0, err
	}
	if len(sealed) > 0 {
		keys, err := l.sealer.CustomerKeys(ctx, tx, tenant, append([]uuid.UUID{primary}, sources...))
		if err != nil {
			return 0, fmt.Errorf("merge interactions: %w", err)
		}
		to := keys[primary]
		if to == nil {
			return 0, errors.New("merge interactions: the primary customer has no data key (erased)")
		}
		for i, e := range sealed {
			from := keys[e.CustomerID]
			if sealed[i].Summary, err = reseal(from, to, summaryColumn, e.Summary); err != nil {
				return 0, fmt.Errorf("merge interactions: %w", err)
			}
			if sealed[i].Body, err = reseal(from, to, bodyColumn, e.Body); err != nil {
				return 0, fmt.Errorf("merge interactions: %w", err)
			}
		}
		if err := l.store.Reseal(ctx, tx, tenant, sealed); err != nil {
			return 0, err
		}
	}
	return l.store.Move(ctx, tx, tenant, primary, sources)
}

// Erase drops the sealed text of the customer's manual entries. The rows
// stay (kind, time, agent: the team's activity record), and so do projected
// entries, which never held personal data; with the customer's profile
// shredded none of it points to a person, and the API no longer shows the
// customer. Erasing twice finds nothing left to drop.
func (l *Lifecycle) Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error {
	_, err := l.store.Forget(ctx, tx, tenant, customer)
	return err
}

// reseal moves one sealed value from one customer's key to another's; with
// no source key (erased) the value is unreadable and is dropped.
func reseal(from, to *pii.CustomerKey, col pii.Column, ct []byte) ([]byte, error) {
	if ct == nil || from == nil {
		return nil, nil
	}
	v, err := openText(from, col, ct)
	if err != nil {
		return nil, err
	}
	return sealText(to, col, v)
}

func without(ids []uuid.UUID, drop uuid.UUID) []uuid.UUID {
	out := make([]uuid.UUID, 0, len(ids))
	for _, id := range ids {
		if id != drop {
			out = append(out, id)
		}
	}
	return out
}
