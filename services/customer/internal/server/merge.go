package server

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
)

// ErrorInfo reasons of refused merges and changes.
const (
	// ReasonAlreadyMerged: the customer was merged into another (see its
	// merged_into, also in the ErrorInfo's metadata); it can be neither
	// changed nor merged again. Every package refuses changes to a merged
	// customer with this reason.
	ReasonAlreadyMerged = lifecycle.ReasonCustomerMerged
	// ReasonMergedProfileInvalid: the merged profile would break a profile
	// rule, e.g. more than 20 external refs.
	ReasonMergedProfileInvalid = "MERGED_PROFILE_INVALID"
)

// maxDuplicates bounds FindDuplicateCustomers.
const maxDuplicates = 100

func (s *Server) FindDuplicateCustomers(ctx context.Context, req *customerv1.FindDuplicateCustomersRequest) (*customerv1.FindDuplicateCustomersResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetCustomerId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer_id", Description: "must be a UUID"})
	}
	found, err := s.profiles.FindDuplicates(ctx, s.pool, tenant, id, maxDuplicates)
	if err != nil {
		return nil, toStatus(err, "")
	}
	// One read of the customer and every duplicate returned (SEC-09).
	read := []uuid.UUID{id}
	for _, d := range found {
		read = append(read, d.Customer.ID)
	}
	if err := audit.Record(ctx, s.pool, audit.Entry{Action: audit.Read, CustomerIDs: read, Fields: audit.ProfileFields}); err != nil {
		return nil, err
	}
	resp := &customerv1.FindDuplicateCustomersResponse{}
	for _, d := range found {
		dc := &customerv1.DuplicateCustomer{Customer: toProto(d.Customer)}
		for _, m := range d.Matches {
			dc.Matches = append(dc.Matches, &customerv1.DuplicateMatch{Key: duplicateKey(m.Key), System: m.System})
		}
		resp.Duplicates = append(resp.Duplicates, dc)
	}
	return resp, nil
}

func duplicateKey(k profile.DuplicateKey) customerv1.DuplicateKey {
	switch k {
	case profile.DuplicateEmail:
		return customerv1.DuplicateKey_DUPLICATE_KEY_EMAIL
	case profile.DuplicatePhone:
		return customerv1.DuplicateKey_DUPLICATE_KEY_PHONE
	case profile.DuplicateExternalRef:
		return customerv1.DuplicateKey_DUPLICATE_KEY_EXTERNAL_REF
	}
	return customerv1.DuplicateKey_DUPLICATE_KEY_UNSPECIFIED
}

// MergeCustomers merges in one transaction (profile.Service.Merge says how
// and in which order locks are taken). A dry run runs the very same merge in
// a transaction that is rolled back, so its checks and counts are the real
// ones and nothing stays; it claims no request id. A real run is idempotent
// by request_id like every mutation, its stored response sealed with the
// primary's key.
func (s *Server) MergeCustomers(ctx context.Context, req *customerv1.MergeCustomersRequest) (*customerv1.MergeCustomersResponse, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	primary, err := uuid.Parse(req.GetPrimaryId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "primary_id", Description: "must be a UUID"})
	}
	sources := make([]uuid.UUID, len(req.GetSourceIds()))
	for i, v := range req.GetSourceIds() {
		if sources[i], err = uuid.Parse(v); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: fmt.Sprintf("source_ids[%d]", i), Description: "must be a UUID"})
		}
	}
	merge := func(ctx context.Context, tx pgx.Tx) (*customerv1.MergeCustomersResponse, error) {
		res, err := s.profiles.Merge(ctx, tx, tenant, primary, sources)
		if err != nil {
			return nil, toStatus(err, "")
		}
		resp := &customerv1.MergeCustomersResponse{Customer: toProto(res.Customer), DryRun: req.GetDryRun()}
		for _, sec := range res.Sections {
			resp.Sections = append(resp.Sections, &customerv1.MergeSection{Section: sec.Name, Moved: sec.Moved})
		}
		return resp, nil
	}
	involved := append([]uuid.UUID{primary}, sources...)
	if req.GetDryRun() {
		resp, err := s.dryRun(ctx, merge)
		if err != nil {
			return nil, err
		}
		// The preview read every profile of the merge (SEC-09).
		if err := audit.Record(ctx, s.pool, audit.Entry{Action: audit.Read, CustomerIDs: involved, Fields: audit.ProfileFields}); err != nil {
			return nil, err
		}
		return resp, nil
	}

	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CustomerService_MergeCustomers_FullMethodName, RequestID: req.GetRequestId()}
	resp, _, err := sealedIdempotent(ctx, s, tenant, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.MergeCustomersResponse, uuid.UUID, error) {
		resp, err := merge(ctx, tx)
		if err != nil {
			return nil, uuid.Nil, err
		}
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.Merge, CustomerIDs: involved,
			Fields: audit.ProfileFields, IdempotencyKey: req.GetRequestId()}); err != nil {
			return nil, uuid.Nil, err
		}
		return resp, primary, nil
	})
	return resp, err
}

// dryRun runs merge in a transaction it always rolls back.
func (s *Server) dryRun(ctx context.Context, merge func(context.Context, pgx.Tx) (*customerv1.MergeCustomersResponse, error)) (*customerv1.MergeCustomersResponse, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("begin dry run: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }() // a dry run never commits
	return merge(ctx, tx)
}
