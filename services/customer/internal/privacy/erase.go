package privacy

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/pkg/outbox"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

func (s *Server) EraseCustomer(ctx context.Context, req *customerv1.EraseCustomerRequest) (*customerv1.EraseCustomerResponse, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetCustomerId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer_id", Description: "must be a UUID"})
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.PrivacyService_EraseCustomer_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.EraseCustomerResponse, error) {
		eraseTime, err := s.erase(ctx, tx, tenant, id, req.GetRequestId())
		if err != nil {
			return nil, toStatus(err)
		}
		return &customerv1.EraseCustomerResponse{CustomerId: id.String(), EraseTime: timestamppb.New(eraseTime)}, nil
	})
}

// erase forgets one customer in tx and returns the time of the (first)
// erasure. See the package doc for what it writes.
func (s *Server) erase(ctx context.Context, tx pgx.Tx, tenant, id uuid.UUID, requestID string) (time.Time, error) {
	st, err := s.store.LockForErase(ctx, tx, tenant, id)
	if err != nil {
		return time.Time{}, err
	}
	if !st.EraseTime.IsZero() {
		// Erased already: the same answer, nothing changed, one audit row
		// for the attempt.
		err := audit.Record(ctx, tx, audit.Entry{Action: audit.Erase, CustomerIDs: []uuid.UUID{id},
			Fields: []string{}, IdempotencyKey: requestID})
		return st.EraseTime, err
	}
	if st.MergedInto != uuid.Nil {
		// A merged customer is the same person as the one it was merged
		// into, which holds its data now: erasing the old id alone would
		// leave that person's data in place while answering as if they
		// were forgotten. Refused, naming the customer to erase (which
		// takes this one with it).
		return time.Time{}, lifecycle.MergedError(id, st.MergedInto)
	}
	now := s.clock()
	// A customer merged into this one is the same person, and its row
	// still holds its own sealed fields: it goes too.
	merged, err := s.store.MergedInto(ctx, tx, tenant, id)
	if err != nil {
		return time.Time{}, err
	}
	ids := append([]uuid.UUID{id}, merged...)
	for _, cid := range ids {
		if err := s.forget(ctx, tx, tenant, cid, now); err != nil {
			return time.Time{}, err
		}
	}
	err = audit.Record(ctx, tx, audit.Entry{Action: audit.Erase, CustomerIDs: ids,
		Fields: audit.ProfileFields, IdempotencyKey: requestID})
	return now, err
}

// forget erases one customer row: suppresses its contact addresses, runs
// every Eraser, shreds the profile and writes its customer.erased event.
func (s *Server) forget(ctx context.Context, tx pgx.Tx, tenant, id uuid.UUID, now time.Time) error {
	// Suppress the contact addresses while they can still be read.
	c, err := s.profiles.Get(ctx, tx, tenant, id, false)
	if err != nil {
		return fmt.Errorf("read profile to erase: %w", err)
	}
	for _, a := range []struct {
		col   pii.Column
		value string
	}{{pii.Email, c.Email}, {pii.Phone, c.Phone}} {
		if a.value == "" {
			continue
		}
		kind, fp, err := fingerprint(ctx, s.sealer, tx, tenant, a.col, a.value)
		if err != nil {
			return err
		}
		if err := s.store.Suppress(ctx, tx, tenant, kind, fp, now); err != nil {
			return err
		}
	}
	for _, e := range s.erasers {
		if err := e.Erase(ctx, tx, tenant, id); err != nil {
			return fmt.Errorf("erase %s: %w", e.Section(), err)
		}
	}
	erased, err := s.store.EraseProfile(ctx, tx, tenant, id, now)
	if err != nil {
		return err
	}
	err = outbox.Write(ctx, tx, outbox.Event{
		TenantID: tenant.String(), Subject: SubjectErased, AggregateType: aggregateType,
		AggregateID: id.String(), AggregateVersion: erased.Version, OccurredAt: erased.EraseTime,
		Payload: &customerv1.CustomerErased{TenantId: tenant.String(), CustomerId: id.String(),
			AggregateVersion: erased.Version, OccurredAt: timestamppb.New(erased.EraseTime)},
	})
	if err != nil {
		return fmt.Errorf("write %s event: %w", SubjectErased, err)
	}
	return nil
}
