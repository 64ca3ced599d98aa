package consent

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/services/customer/internal/consent/store"
)

// Governor is the contact governor for code inside the customer service
// that contacts customers itself (outreach): the rules of ReserveContact,
// run in the caller's transaction, so the recorded touch and the caller's
// own record of the contact commit together or not at all.
type Governor struct{ svc *service }

// NewGovernor returns a Governor; now is the clock (nil means time.Now).
func NewGovernor(now func() time.Time) *Governor {
	if now == nil {
		now = time.Now
	}
	return &Governor{svc: &service{store: store.New(), now: now}}
}

// Reserve decides whether t's customer may be contacted on t's channel for
// t's purpose now and, if so, records the touch, under the customer's lock,
// in tx: exactly ReserveContact. subject is the acting principal. A
// customer not in the tenant is a refusal with ReasonCustomerUnknown; a
// reference already recorded for the same contact is answered as the
// allowed reservation it was.
func (g *Governor) Reserve(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, subject string, t Touch) (Decision, *Touch, error) {
	return g.svc.reserve(ctx, tx, actor{tenant: tenant, subject: subject}, t)
}
