package apikey

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/apikey/internal/dbgen"
	"github.com/rapporthq/rapport/pkg/authn"
	accessv1 "github.com/rapporthq/rapport/pkg/gen/rapport/access/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
)

// ListAuthFailures pages through the refusals attributed to the caller's
// tenant, newest first (see access.proto and the AuthFailuresList query for
// which refusals those are and why).
//
// Page tokens are grpcx keyset tokens over (occur_time, id), bound to the
// filters; they are not bound to the tenant, which they need not be: every
// page is read with the caller's tenant, so another tenant's token only
// gives a position in the caller's own list.
func (s *Server) ListAuthFailures(ctx context.Context, req *accessv1.ListAuthFailuresRequest) (*accessv1.ListAuthFailuresResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	f := authFailureFilter{}
	if ts := req.GetSinceTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "since_time", Description: "is not a valid time"})
		}
		f.since = ts.AsTime().UTC().Truncate(time.Microsecond)
	}
	switch req.GetCode() {
	case accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNSPECIFIED:
	case accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNAUTHENTICATED:
		f.code = codeUnauthenticated
	case accessv1.AuthFailureCode_AUTH_FAILURE_CODE_PERMISSION_DENIED:
		f.code = codePermissionDenied
	default:
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "code", Description: "must be a defined code"})
	}
	size := grpcx.PageSize(req.GetPageSize())
	filter := f.fingerprint()
	var after grpcx.Keyset
	if tok := req.GetPageToken(); tok != "" {
		if after, err = grpcx.DecodeKeysetToken(tok, filter); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "page_token", Description: err.Error()})
		}
	}
	rows, err := s.store.listAuthFailures(ctx, s.pool, tenant, f, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &accessv1.ListAuthFailuresResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = grpcx.EncodeKeysetToken(filter, grpcx.Keyset{Time: last.OccurTime, ID: last.ID})
	}
	for _, r := range rows {
		resp.AuthFailures = append(resp.AuthFailures, authFailureToProto(r))
	}
	return resp, nil
}

// The code and credential spellings of auth_failures (its CHECKs).
const (
	codeUnauthenticated  = "unauthenticated"
	codePermissionDenied = "permission_denied"
)

// authFailureFilter is ListAuthFailures' filters; zero values filter nothing.
type authFailureFilter struct {
	since time.Time
	code  string
}

// fingerprint names the list and its filters, for page tokens.
func (f authFailureFilter) fingerprint() string {
	since := "-"
	if !f.since.IsZero() {
		since = fmt.Sprint(f.since.UnixMicro())
	}
	return "auth_failures|since=" + since + "|code=" + f.code
}

// listAuthFailures returns up to limit refusals attributed to tenantID,
// newest first, after the position (zero: from the newest).
func (s store) listAuthFailures(ctx context.Context, db dbgen.DBTX, tenantID uuid.UUID, f authFailureFilter,
	after grpcx.Keyset, limit int,
) ([]authFailureRecord, error) {
	p := dbgen.AuthFailuresListParams{TenantID: tenantID, RowLimit: int32(limit)} //nolint:gosec // bounded by PageSize
	if !f.since.IsZero() {
		p.Since = &f.since
	}
	if f.code != "" {
		p.Code = pgtype.Text{String: f.code, Valid: true}
	}
	if after.ID != uuid.Nil {
		at := after.Time
		p.AfterTime = &at
		p.AfterID = uuid.NullUUID{UUID: after.ID, Valid: true}
	}
	rows, err := s.q.AuthFailuresList(ctx, db, p)
	if err != nil {
		return nil, interpret("list auth failures", err)
	}
	out := make([]authFailureRecord, len(rows))
	for i, r := range rows {
		out[i] = authFailureRecord{ID: r.ID, OccurTime: r.OccurTime.UTC(), Method: r.Method, Code: r.Code,
			RequestID: r.RequestID, Credential: r.Credential, Subject: r.Subject.String}
		if r.ApiKeyID.Valid {
			out[i].APIKeyID = r.ApiKeyID.UUID
		}
	}
	return out, nil
}

// authFailureRecord is one refusal as ListAuthFailures sees it; zero
// APIKeyID and empty Subject are absent.
type authFailureRecord struct {
	ID         uuid.UUID
	OccurTime  time.Time
	Method     string
	Code       string
	RequestID  string
	Credential string
	APIKeyID   uuid.UUID
	Subject    string
}

func authFailureToProto(r authFailureRecord) *accessv1.AuthFailure {
	out := &accessv1.AuthFailure{
		Id: r.ID.String(), OccurTime: timestamppb.New(r.OccurTime), Method: r.Method,
		RequestId: r.RequestID, Subject: r.Subject,
	}
	switch r.Code {
	case codeUnauthenticated:
		out.Code = accessv1.AuthFailureCode_AUTH_FAILURE_CODE_UNAUTHENTICATED
	case codePermissionDenied:
		out.Code = accessv1.AuthFailureCode_AUTH_FAILURE_CODE_PERMISSION_DENIED
	}
	switch r.Credential {
	case "none":
		out.Credential = accessv1.CredentialKind_CREDENTIAL_KIND_NONE
	case "jwt":
		out.Credential = accessv1.CredentialKind_CREDENTIAL_KIND_JWT
	case "api_key":
		out.Credential = accessv1.CredentialKind_CREDENTIAL_KIND_API_KEY
	}
	if r.APIKeyID != uuid.Nil {
		out.ApiKeyId = r.APIKeyID.String()
	}
	return out
}
