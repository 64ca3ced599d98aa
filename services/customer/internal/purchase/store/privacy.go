package store

import (
	"context"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/services/customer/internal/purchase/store/dbgen"
)

// ForgetItemNames clears the item names of every purchase of the customer.
func (s *Store) ForgetItemNames(ctx context.Context, db DB, tenantID, customerID uuid.UUID) error {
	if _, err := s.q.PurchaseItemsForgetNames(ctx, db, dbgen.PurchaseItemsForgetNamesParams{
		TenantID: tenantID, CustomerID: customerID}); err != nil {
		return interpret("clear item names", err)
	}
	return nil
}
