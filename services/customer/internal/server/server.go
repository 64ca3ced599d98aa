// Package server is the customer service's gRPC transport: it turns requests
// into profile calls inside a transaction (claiming the request id there),
// and domain results and errors into responses and statuses.
//
// Idempotency records hold personal data in two places, and neither is
// stored in clear: the request's fingerprint is a keyed PRF of the request
// under the tenant's key (a plain hash would let a table reader confirm a
// guessed email), and the stored response is sealed with the customer's own
// key (so erasing the customer shreds it too).
package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
)

const (
	// maxLookupResults bounds LookupCustomers; more customers sharing one
	// email or phone is not a lookup any more.
	maxLookupResults = 100
)

// Server implements customerv1.CustomerServiceServer.
type Server struct {
	customerv1.UnimplementedCustomerServiceServer
	pool     *pgxpool.Pool
	profiles *profile.Service
	sealer   *pii.Sealer
}

// New returns a Server; sealer protects the personal data in idempotency
// records.
func New(pool *pgxpool.Pool, profiles *profile.Service, sealer *pii.Sealer) *Server {
	return &Server{pool: pool, profiles: profiles, sealer: sealer}
}

func (s *Server) CreateCustomer(ctx context.Context, req *customerv1.CreateCustomerRequest) (*customerv1.Customer, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	c := fromProto(req.GetCustomer())
	c.TenantID = tenant
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CustomerService_CreateCustomer_FullMethodName, RequestID: req.GetRequestId()}
	return s.idempotent(ctx, tenant, key, req, func(ctx context.Context, tx pgx.Tx) (profile.Customer, error) {
		created, err := s.profiles.Create(ctx, tx, c)
		if err != nil {
			return profile.Customer{}, toStatus(err, "customer.")
		}
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.Create, CustomerIDs: []uuid.UUID{created.ID},
			Fields: personalFields(req.GetCustomer()), IdempotencyKey: req.GetRequestId()}); err != nil {
			return profile.Customer{}, err
		}
		return created, nil
	})
}

func (s *Server) GetCustomer(ctx context.Context, req *customerv1.GetCustomerRequest) (*customerv1.Customer, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "id", Description: "must be a UUID"})
	}
	c, err := s.profiles.Get(ctx, s.pool, tenant, id)
	if err != nil {
		return nil, toStatus(err, "")
	}
	if err := s.auditRead(ctx, audit.Read, []uuid.UUID{id}); err != nil {
		return nil, err
	}
	return toProto(c), nil
}

func (s *Server) ListCustomers(ctx context.Context, req *customerv1.ListCustomersRequest) (*customerv1.ListCustomersResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	q := profile.ListQuery{TenantID: tenant, Tag: req.GetTag(), Limit: size + 1}
	if tok := req.GetPageToken(); tok != "" {
		before, err := decodePageToken(tok, req)
		if err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "page_token", Description: err.Error()})
		}
		q.BeforeID = before
	}
	rows, err := s.profiles.List(ctx, s.pool, q)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &customerv1.ListCustomersResponse{}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = encodePageToken(rows[len(rows)-1].ID, req)
	}
	ids := []uuid.UUID{}
	for _, c := range rows {
		if c.Erased {
			continue // forgotten; the page may come out shorter
		}
		resp.Customers = append(resp.Customers, toProto(c))
		ids = append(ids, c.ID)
	}
	if err := s.auditRead(ctx, audit.List, ids); err != nil {
		return nil, err
	}
	return resp, nil
}

func (s *Server) UpdateCustomer(ctx context.Context, req *customerv1.UpdateCustomerRequest) (*customerv1.Customer, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuid.Parse(req.GetCustomer().GetId())
	if err != nil {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer.id", Description: "must be a UUID"})
	}
	paths, err := maskPaths(req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	patch := fromProto(req.GetCustomer())
	patch.TenantID, patch.ID = tenant, id
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CustomerService_UpdateCustomer_FullMethodName, RequestID: req.GetRequestId()}
	return s.idempotent(ctx, tenant, key, req, func(ctx context.Context, tx pgx.Tx) (profile.Customer, error) {
		updated, err := s.profiles.Update(ctx, tx, patch, paths)
		if err != nil {
			return profile.Customer{}, toStatus(err, "customer.")
		}
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.Update, CustomerIDs: []uuid.UUID{id},
			Fields: paths, IdempotencyKey: req.GetRequestId()}); err != nil {
			return profile.Customer{}, err
		}
		return updated, nil
	})
}

func (s *Server) LookupCustomers(ctx context.Context, req *customerv1.LookupCustomersRequest) (*customerv1.LookupCustomersResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	q := profile.LookupQuery{TenantID: tenant, Email: req.GetEmail(), Phone: req.GetPhone(), Limit: maxLookupResults}
	if ref := req.GetExternalRef(); ref != nil {
		q.External = &profile.ExternalRef{System: ref.GetSystem(), Ref: ref.GetRef()}
	}
	found, err := s.profiles.Lookup(ctx, s.pool, q)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &customerv1.LookupCustomersResponse{}
	ids := []uuid.UUID{}
	for _, c := range found {
		resp.Customers = append(resp.Customers, toProto(c))
		ids = append(ids, c.ID)
	}
	if err := s.auditRead(ctx, audit.Lookup, ids); err != nil {
		return nil, err
	}
	return resp, nil
}

// idempotent runs fn once per request id (sealedIdempotent) and returns the
// profile it made, or on a retry the first response, audited as a read.
func (s *Server) idempotent(ctx context.Context, tenant uuid.UUID, key idem.Key, req proto.Message,
	fn func(ctx context.Context, tx pgx.Tx) (profile.Customer, error),
) (*customerv1.Customer, error) {
	c, retry, err := sealedIdempotent(ctx, s, tenant, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, uuid.UUID, error) {
		c, err := fn(ctx, tx)
		if err != nil {
			return nil, uuid.Nil, err
		}
		return toProto(c), c.ID, nil
	})
	if err != nil || !retry {
		return c, err
	}
	// A retry reads the stored profile: audited as a read.
	if id, err := uuid.Parse(c.GetId()); err == nil {
		if err := s.auditRead(ctx, audit.Read, []uuid.UUID{id}); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// sealedIdempotent runs fn once per request id (idem.Do) and returns its
// response, or on a retry (retry true) the first response. What idem stores
// is sealed: a keyed fingerprint of req instead of req, and the response
// sealed with the key of the customer fn names. Without a request id
// nothing is stored.
func sealedIdempotent[R proto.Message](ctx context.Context, s *Server, tenant uuid.UUID, key idem.Key, req proto.Message,
	fn func(ctx context.Context, tx pgx.Tx) (resp R, customerID uuid.UUID, err error),
) (resp R, retry bool, err error) {
	var zero R
	// The tenant's keys, created here on first use: outside the transaction
	// below, so creating them never waits for a second pool connection
	// while this request holds one.
	keys, err := s.sealer.Tenant(ctx, s.pool, tenant)
	if err != nil {
		return zero, false, err
	}
	var (
		fingerprint proto.Message = &wrapperspb.BytesValue{}
		fresh       R
		isFresh     bool
	)
	if key.RequestID != "" {
		fp, err := keys.RequestFingerprint("idempotent-request", req)
		if err != nil {
			return zero, false, err
		}
		fingerprint = wrapperspb.Bytes(fp)
	}
	stored, err := idem.Do(ctx, s.pool, key, fingerprint, func(ctx context.Context, tx pgx.Tx) (*wrapperspb.BytesValue, error) {
		resp, customerID, err := fn(ctx, tx)
		if err != nil {
			return nil, err
		}
		fresh, isFresh = resp, true
		if key.RequestID == "" {
			return &wrapperspb.BytesValue{}, nil // nothing is stored
		}
		return s.sealResponse(ctx, tx, tenant, customerID, resp)
	})
	if err != nil {
		return zero, false, err
	}
	if isFresh {
		return fresh, false, nil
	}
	out := zero.ProtoReflect().New().Interface().(R) //nolint:forcetypeassert // New of R's type is an R
	if err := s.openResponse(ctx, tenant, stored, out); err != nil {
		return zero, false, err
	}
	return out, true, nil
}

// sealResponse seals a response for storage: the customer's id, then the
// response sealed with that customer's key.
func (s *Server) sealResponse(ctx context.Context, tx pgx.Tx, tenant, customerID uuid.UUID, c proto.Message) (*wrapperspb.BytesValue, error) {
	b, err := proto.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("seal response: %w", err)
	}
	ct, err := s.sealer.Seal(ctx, tx, tenant, customerID, pii.StoredResponse, b)
	if err != nil {
		return nil, fmt.Errorf("seal response: %w", err)
	}
	return wrapperspb.Bytes(append(customerID[:], ct...)), nil
}

// openResponse opens a stored response into out. Once the customer is
// erased it is gone with the rest of their data, and the retry is told not
// found.
func (s *Server) openResponse(ctx context.Context, tenant uuid.UUID, stored *wrapperspb.BytesValue, out proto.Message) error {
	v := stored.GetValue()
	if len(v) < len(uuid.UUID{}) {
		return errors.New("stored response is not sealed")
	}
	customerID, _ := uuid.FromBytes(v[:len(uuid.UUID{})])
	b, err := s.sealer.Open(ctx, s.pool, tenant, customerID, pii.StoredResponse, v[len(uuid.UUID{}):])
	if errors.Is(err, pii.ErrKeyDestroyed) {
		return grpcx.NotFound("customer")
	}
	if err != nil {
		return fmt.Errorf("open stored response: %w", err)
	}
	if err := proto.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode stored response: %w", err)
	}
	return nil
}

// maskPaths checks an update mask against the fields clients may change.
// Output-only fields, unknown paths and the "*" wildcard are refused by name,
// so a mask can never reach the tenant, the id or the version.
func maskPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "update_mask",
			Description: "must name at least one field: " + strings.Join(profile.Mutable, ", ")})
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if !slices.Contains(profile.Mutable, p) && !slices.Contains(profile.SubPaths, p) {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "update_mask",
				Description: fmt.Sprintf("path %q cannot be updated; allowed: %s", p, strings.Join(profile.Mutable, ", "))})
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// toStatus maps profile errors; fieldPrefix turns a profile field into the
// request's field path (the profile sits under "customer." in requests).
func toStatus(err error, fieldPrefix string) error {
	var (
		fe  *profile.FieldError
		me  *profile.MergedError
		mre *profile.MergeRefusedError
	)
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fieldPrefix + fe.Field, Description: fe.Reason})
	case errors.Is(err, profile.ErrNotFound):
		return grpcx.NotFound("customer")
	case errors.As(err, &me):
		return lifecycle.MergedError(me.ID, me.Into)
	case errors.As(err, &mre):
		return grpcx.FailedPrecondition(ReasonMergedProfileInvalid,
			fmt.Sprintf("the merged profile would break a rule: %s: %s", mre.Field, mre.Reason))
	}
	return err
}

func fromProto(p *customerv1.Customer) profile.Customer {
	c := profile.Customer{
		DisplayName: p.GetDisplayName(), Email: p.GetEmail(), Phone: p.GetPhone(),
		Locale: p.GetLocale(), TimeZone: p.GetTimeZone(), Tags: p.GetTags(),
		ExternalRefs: p.GetExternalRefs(), Attributes: p.GetAttributes(),
	}
	if b := p.GetBirthday(); b != nil {
		c.Birthday = &profile.Birthday{Year: int(b.GetYear()), Month: int(b.GetMonth()), Day: int(b.GetDay())}
	}
	if a := p.GetAddress(); a != nil {
		c.Address = &profile.Address{Lines: a.GetLines(), Locality: a.GetLocality(), Region: a.GetRegion(),
			PostalCode: a.GetPostalCode(), CountryCode: a.GetCountryCode()}
	}
	return c
}

func toProto(c profile.Customer) *customerv1.Customer {
	out := &customerv1.Customer{
		Id: c.ID.String(), DisplayName: c.DisplayName, Email: c.Email, Phone: c.Phone,
		Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Version: c.Version,
		CreateTime: timestamppb.New(c.CreateTime), UpdateTime: timestamppb.New(c.UpdateTime),
		ExternalRefs: c.ExternalRefs, Attributes: c.Attributes,
	}
	if b := c.Birthday; b != nil {
		out.Birthday = &customerv1.Birthday{Year: int32(b.Year), Month: int32(b.Month), Day: int32(b.Day)} //nolint:gosec // validated ranges
	}
	if a := c.Address; a != nil {
		out.Address = &customerv1.PostalAddress{Lines: a.Lines, Locality: a.Locality, Region: a.Region,
			PostalCode: a.PostalCode, CountryCode: a.CountryCode}
	}
	if c.MergedInto != uuid.Nil {
		out.MergedInto, out.MergeTime = c.MergedInto.String(), timestamppb.New(c.MergeTime)
	}
	return out
}

// Page tokens are grpcx page tokens: the tag filter's fingerprint (a token
// is refused with other filters) and the last id of the page.
func customersPageFilter(req *customerv1.ListCustomersRequest) string {
	return "customers:" + req.GetTag()
}

func encodePageToken(last uuid.UUID, req *customerv1.ListCustomersRequest) string {
	return grpcx.EncodePageToken(customersPageFilter(req), last[:])
}

func decodePageToken(s string, req *customerv1.ListCustomersRequest) (uuid.UUID, error) {
	pos, err := grpcx.DecodePageToken(s, customersPageFilter(req))
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.FromBytes(pos)
	if err != nil {
		return uuid.Nil, errors.New("is not a token from this API")
	}
	return id, nil
}
