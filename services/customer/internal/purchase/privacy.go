package purchase

import (
	"context"
	"errors"
	"math"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/purchase/store"
)

// ExportSection is the purchases section's name in ExportCustomer.
const ExportSection = "purchases"

// Privacy is the purchase part of ExportCustomer and EraseCustomer.
type Privacy struct{ s *Server }

var (
	_ lifecycle.Exporter = (*Privacy)(nil)
	_ lifecycle.Eraser   = (*Privacy)(nil)
)

// Privacy returns the purchase package's export and erasure steps.
func (s *Server) Privacy() *Privacy { return &Privacy{s: s} }

// Section is the export section's name.
func (p *Privacy) Section() string { return ExportSection }

// Export returns every purchase of the customer with its items, newest
// first, and the customer's current segment, in tx's snapshot.
func (p *Privacy) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	rows, err := p.s.store.Purchases(ctx, tx, tenant, customer, store.Cursor{}, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	out := &customerv1.PurchaseExport{Segment: &customerv1.CustomerSegment{CustomerId: customer.String()}}
	for _, r := range rows {
		out.Purchases = append(out.Purchases, purchaseToProto(r))
	}
	m, err := p.s.store.Membership(ctx, tx, tenant, customer)
	switch {
	case err == nil:
		out.Segment = membershipToProto(m, p.s.now().UTC())
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	return out, nil
}

// Erase clears the item names of the customer's purchases (free text that
// may carry a personalisation). Purchases, amounts, SKUs and the segment
// stay under the customer's id: the business must still count its revenue,
// and once the profile is shredded the id leads to no one (pseudonymised).
// The order references stay too: they are the business key that keeps a
// replayed order from counting twice.
func (p *Privacy) Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error {
	return p.s.store.ForgetItemNames(ctx, tx, tenant, customer)
}
