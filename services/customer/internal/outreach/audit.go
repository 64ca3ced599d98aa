package outreach

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

// Audit rows (SEC-09, package privacy/audit) of the personal data outreach
// opens and writes. Delivery reads (GetOutreachDelivery,
// ListOutreachDeliveries) return neither address nor content and write
// none.
const (
	// FieldContent is the audit field name of a delivery's rendered
	// content; the address is the profile's field ("email", "phone").
	FieldContent = "outreach_delivery.content"
	// WorkerActor is the audit actor of the worker's sends.
	WorkerActor = "outreach-worker"
	// MethodDeliver is the audit method of the worker's sends.
	MethodDeliver = "outreach.worker/deliver"
	// MethodSend is the audit method of a send made outside a call (an
	// event consumer); inside one it is the call's method.
	MethodSend = "outreach/send"
)

// addressField is the profile field a channel's address comes from.
func addressField(ch consent.Channel) string {
	if ch == consent.ChannelEmail {
		return "email"
	}
	return "phone"
}

// auditSend records, in the delivery's transaction, one create row for a
// new delivery d: the address it opened for its channel (c is the contact
// it was opened from), the content it sealed, and opened, what else the
// send opened (the display name care variables use). A caller's send is
// the caller's row; a consumer's is a row of w's own work.
func auditSend(ctx context.Context, tx pgx.Tx, w who, requestID uuid.UUID, d store.Delivery, c store.Contact, opened ...string) error {
	fields := []string{}
	if _, sealed := sealedAddress(consent.Channel(d.Channel), c); d.Channel != "" && sealed != nil {
		fields = append(fields, addressField(consent.Channel(d.Channel)))
	}
	fields = append(fields, opened...)
	if d.Content != nil {
		fields = append(fields, FieldContent)
	}
	e := audit.Entry{Action: audit.Create, CustomerIDs: []uuid.UUID{d.CustomerID}, Fields: fields}
	if requestID != uuid.Nil {
		e.IdempotencyKey = requestID.String()
	}
	if _, ok := authn.FromContext(ctx); ok {
		return audit.Record(ctx, tx, e)
	}
	e.Method = MethodSend
	return audit.RecordService(ctx, tx, w.tenant, w.subject, e)
}

// auditDeliver records, on the pool and before the message leaves, that
// the worker opened m's address and content: one read row per attempt
// (each attempt opens them again), naming both customers when the
// delivery was sealed for a customer since merged. An attempt that cannot
// be audited is not made; the lease brings it back.
func auditDeliver(ctx context.Context, db store.DB, d store.Delivery, m Message) error {
	return audit.RecordService(ctx, db, d.TenantID, WorkerActor, audit.Entry{
		Action: audit.Read, CustomerIDs: uniq(d.CustomerID, d.SealedCustomerID),
		Fields: []string{addressField(m.Channel), FieldContent}, Method: MethodDeliver,
	})
}
