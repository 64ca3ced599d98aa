// Package audit writes the audit log of personal data (table pii_audit):
// one row per call that read, changed, exported or erased a customer's
// personal data, naming who, when, which customers and which fields, never
// a value.
//
// Where a row is written decides what it proves:
//   - a change writes its row in the change's own transaction, so there is
//     no change without its row and no row for a change that rolled back;
//   - a read writes its row after reading and before answering, and a read
//     whose row cannot be written fails: no one reads unaudited.
//
// A call that reads many customers (a list page, a lookup) is one row
// naming them all: "exactly one row per read" counts calls, and the GIN
// index on customer_ids still finds every row about one customer.
//
// It must not take a value as an argument: Entry has field names only.
package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store"
)

// Action is what a call did; the values are the stored names.
type Action string

// Actions.
const (
	Read              Action = "read"
	List              Action = "list"
	Lookup            Action = "lookup"
	Create            Action = "create"
	Update            Action = "update"
	Merge             Action = "merge"
	Export            Action = "export"
	Erase             Action = "erase"
	ConsentChange     Action = "consent_change"
	PreferencesChange Action = "preferences_change"
)

// ProfileFields are the personal fields of a profile, by their API names:
// what a read of a whole profile reads.
var ProfileFields = []string{"display_name", "email", "phone", "birthday", "address", "attributes", "external_refs"}

// Entry is what a call did to whom.
type Entry struct {
	Action      Action
	CustomerIDs []uuid.UUID
	// Fields are the names of the personal fields involved, never values.
	Fields []string
	// IdempotencyKey is the request's request_id; "" when it had none.
	IdempotencyKey string
	// Method overrides the call's gRPC method (for work outside a call).
	Method string
}

// serviceRoles are the roles of rows the service writes for its own work.
var serviceRoles = []string{"service"}

// Record writes e as the calling principal's row, in db: the change's
// transaction for a change, the pool for a read. Without an authenticated
// principal nothing can be attributed, and it fails.
func Record(ctx context.Context, db store.DB, e Entry) error {
	p, ok := authn.FromContext(ctx)
	if !ok || p.Subject == "" {
		return errors.New("audit: no authenticated principal")
	}
	tenant, err := uuid.Parse(p.TenantID)
	if err != nil {
		return errors.New("audit: principal without a tenant")
	}
	method := e.Method
	if method == "" {
		method, _ = grpc.Method(ctx)
	}
	return insert(ctx, db, tenant, p.Subject, p.Roles, method, e)
}

// RecordService writes e as a row of the service's own work outside any
// call (a worker, an event consumer) for tenant: actor names the component
// (e.g. "outreach-worker"), e.Method the work, and the roles are
// "service". Calls use Record: their rows name the caller.
func RecordService(ctx context.Context, db store.DB, tenant uuid.UUID, actor string, e Entry) error {
	if actor == "" {
		return errors.New("audit: no actor")
	}
	return insert(ctx, db, tenant, actor, serviceRoles, e.Method, e)
}

func insert(ctx context.Context, db store.DB, tenant uuid.UUID, actor string, roles []string, method string, e Entry) error {
	if method == "" {
		return errors.New("audit: no method")
	}
	id, err := uuid.NewV7()
	if err != nil {
		return fmt.Errorf("audit: new id: %w", err)
	}
	var key uuid.UUID
	if e.IdempotencyKey != "" {
		key, _ = uuid.Parse(e.IdempotencyKey) // validated as a UUID by the request schema
	}
	return store.New().InsertAudit(ctx, db, store.AuditEntry{
		TenantID: tenant, ID: id, ActorSubject: actor, ActorRoles: roles, Action: string(e.Action),
		Method: method, CustomerIDs: e.CustomerIDs, Fields: e.Fields, RequestID: grpcx.RequestID(ctx),
		IdempotencyKey: key,
	})
}
