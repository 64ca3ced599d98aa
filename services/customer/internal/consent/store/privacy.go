package store

import (
	"context"

	"github.com/google/uuid"

	"github.com/rapporthq/rapport/services/customer/internal/consent/store/dbgen"
)

// TouchesOf returns every recorded touch of the customer, oldest first.
func (s *Store) TouchesOf(ctx context.Context, db DB, tenantID, customerID uuid.UUID) ([]Touch, error) {
	rows, err := s.q.ContactTouchListByCustomer(ctx, db, dbgen.ContactTouchListByCustomerParams{
		TenantID: tenantID, CustomerID: customerID})
	if err != nil {
		return nil, interpret("list contact touches", err)
	}
	out := make([]Touch, len(rows))
	for i, r := range rows {
		out[i] = touchFromRow(r)
	}
	return out, nil
}

// ForgetPreferences clears the customer's quiet hours and preferred
// channels and voids their open confirmation tokens. Under the customer's
// lock.
func (s *Store) ForgetPreferences(ctx context.Context, db DB, tenantID, customerID uuid.UUID) error {
	if err := s.q.ContactSettingsErase(ctx, db, dbgen.ContactSettingsEraseParams{
		TenantID: tenantID, CustomerID: customerID}); err != nil {
		return interpret("clear contact preferences", err)
	}
	if _, err := s.q.ConsentTokenRevokeAllOpen(ctx, db, dbgen.ConsentTokenRevokeAllOpenParams{
		TenantID: tenantID, CustomerID: customerID}); err != nil {
		return interpret("revoke consent tokens", err)
	}
	return nil
}
