// Package lifecycle names what every package holding data about a customer
// must do when that customer is exported, merged into another or erased.
// The privacy and profile packages run these steps for every package that
// implements them, so a new table cannot be forgotten by an export, a merge
// or an erasure: the package that owns it says how.
//
// Every step runs inside the caller's transaction; none commits.
package lifecycle

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/rapporthq/rapport/pkg/grpcx"
)

// Exporter returns everything its package holds about one customer, for
// ExportCustomer (the right of access). The message is rendered as JSON
// under Section in the export document; personal fields are decrypted.
type Exporter interface {
	Section() string
	Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error)
}

// Merger moves the sources' rows to the primary customer when customers are
// merged (MergeCustomers). It resolves its own conflicts (the primary's
// state wins unless the package says otherwise) and reports how many rows
// it moved, for the dry run's preview.
type Merger interface {
	Section() string
	Merge(ctx context.Context, tx pgx.Tx, tenant, primary uuid.UUID, sources []uuid.UUID) (moved int64, err error)
}

// Eraser forgets one customer (EraseCustomer, the right to erasure). The
// customer's data key is destroyed by the caller, which makes every field
// sealed under it unreadable; an Eraser deletes or pseudonymises what is not
// sealed and must go (free text, addresses, schedules), and keeps what the
// business must keep without identifying anyone (amounts, counts). Erasing
// twice must be harmless.
type Eraser interface {
	Section() string
	Erase(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) error
}

// ReasonCustomerMerged is the ErrorInfo reason of every call refused
// because its customer was merged into another: a merged customer is kept
// so references to it resolve, but nothing new happens to it. The
// ErrorInfo's metadata "merged_into" names the customer to use instead
// (never a merged one: merges leave no chains).
const ReasonCustomerMerged = "CUSTOMER_MERGED"

// MergedError is the FAILED_PRECONDITION status of a call on customer id,
// which was merged into into.
func MergedError(id, into uuid.UUID) error {
	st := status.New(codes.FailedPrecondition,
		fmt.Sprintf("customer %s was merged into %s; use that customer", id, into))
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonCustomerMerged, Domain: grpcx.ErrorDomain,
		Metadata: map[string]string{"merged_into": into.String()}}); err == nil {
		st = d
	}
	return st.Err()
}
