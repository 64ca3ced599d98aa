// Package server is the customer service's gRPC transport: it turns requests
// into profile calls inside a transaction (claiming the request id there),
// and domain results and errors into responses and statuses.
package server

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
)

// Page sizes, per the API conventions.
const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// Server implements customerv1.CustomerServiceServer.
type Server struct {
	customerv1.UnimplementedCustomerServiceServer
	pool     *pgxpool.Pool
	profiles *profile.Service
}

// New returns a Server.
func New(pool *pgxpool.Pool, profiles *profile.Service) *Server {
	return &Server{pool: pool, profiles: profiles}
}

// caller is who is calling: the tenant and the principal from the verified
// token. The tenant never comes from the request body.
func caller(ctx context.Context) (tenantID uuid.UUID, subject string, err error) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return uuid.Nil, "", status.Error(codes.Unauthenticated, "authentication required")
	}
	t, err := uuid.Parse(p.TenantID)
	if err != nil {
		return uuid.Nil, "", status.Error(codes.Unauthenticated, "authentication required")
	}
	return t, p.Subject, nil
}

func (s *Server) CreateCustomer(ctx context.Context, req *customerv1.CreateCustomerRequest) (*customerv1.Customer, error) {
	tenant, subject, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	c := fromProto(req.GetCustomer())
	c.TenantID = tenant
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.CustomerService_CreateCustomer_FullMethodName, RequestID: req.GetRequestId()}
	return idem.Do(ctx, s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
		created, err := s.profiles.Create(ctx, tx, c)
		if err != nil {
			return nil, toStatus(err, "customer.")
		}
		return toProto(created), nil
	})
}

func (s *Server) GetCustomer(ctx context.Context, req *customerv1.GetCustomerRequest) (*customerv1.Customer, error) {
	tenant, _, err := caller(ctx)
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
	return toProto(c), nil
}

func (s *Server) ListCustomers(ctx context.Context, req *customerv1.ListCustomersRequest) (*customerv1.ListCustomersResponse, error) {
	tenant, _, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
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
	for _, c := range rows {
		resp.Customers = append(resp.Customers, toProto(c))
	}
	return resp, nil
}

func (s *Server) UpdateCustomer(ctx context.Context, req *customerv1.UpdateCustomerRequest) (*customerv1.Customer, error) {
	tenant, subject, err := caller(ctx)
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
	return idem.Do(ctx, s.pool, key, req, func(ctx context.Context, tx pgx.Tx) (*customerv1.Customer, error) {
		updated, err := s.profiles.Update(ctx, tx, patch, paths)
		if err != nil {
			return nil, toStatus(err, "customer.")
		}
		return toProto(updated), nil
	})
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
		if !slices.Contains(profile.Mutable, p) {
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
	var fe *profile.FieldError
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fieldPrefix + fe.Field, Description: fe.Reason})
	case errors.Is(err, profile.ErrNotFound):
		return grpcx.NotFound("customer")
	}
	return err
}

func fromProto(p *customerv1.Customer) profile.Customer {
	return profile.Customer{
		DisplayName: p.GetDisplayName(), Email: p.GetEmail(), Phone: p.GetPhone(),
		Locale: p.GetLocale(), TimeZone: p.GetTimeZone(), Tags: p.GetTags(),
	}
}

func toProto(c profile.Customer) *customerv1.Customer {
	return &customerv1.Customer{
		Id: c.ID.String(), DisplayName: c.DisplayName, Email: c.Email, Phone: c.Phone,
		Locale: c.Locale, TimeZone: c.TimeZone, Tags: c.Tags, Version: c.Version,
		CreateTime: timestamppb.New(c.CreateTime), UpdateTime: timestamppb.New(c.UpdateTime),
	}
}

// Page tokens carry the last id of the page and a fingerprint of the filter,
// so a token used with other filters is refused instead of paging wrongly.
func encodePageToken(last uuid.UUID, req *customerv1.ListCustomersRequest) string {
	tok := &customerv1.ListCustomersRequest{Tag: req.GetTag(), PageToken: last.String()}
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(tok)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodePageToken(s string, req *customerv1.ListCustomersRequest) (uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return uuid.Nil, errors.New("is not a token from this API")
	}
	tok := &customerv1.ListCustomersRequest{}
	if err := proto.Unmarshal(b, tok); err != nil {
		return uuid.Nil, errors.New("is not a token from this API")
	}
	id, err := uuid.Parse(tok.GetPageToken())
	if err != nil {
		return uuid.Nil, errors.New("is not a token from this API")
	}
	if tok.GetTag() != req.GetTag() {
		return uuid.Nil, errors.New("was issued for other filters; repeat the first request's filters")
	}
	return id, nil
}
