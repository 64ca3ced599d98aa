package privacy

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store"
)

var auditActions = map[string]customerv1.AuditAction{
	string(audit.Read):              customerv1.AuditAction_AUDIT_ACTION_READ,
	string(audit.List):              customerv1.AuditAction_AUDIT_ACTION_LIST,
	string(audit.Lookup):            customerv1.AuditAction_AUDIT_ACTION_LOOKUP,
	string(audit.Create):            customerv1.AuditAction_AUDIT_ACTION_CREATE,
	string(audit.Update):            customerv1.AuditAction_AUDIT_ACTION_UPDATE,
	string(audit.Merge):             customerv1.AuditAction_AUDIT_ACTION_MERGE,
	string(audit.Export):            customerv1.AuditAction_AUDIT_ACTION_EXPORT,
	string(audit.Erase):             customerv1.AuditAction_AUDIT_ACTION_ERASE,
	string(audit.ConsentChange):     customerv1.AuditAction_AUDIT_ACTION_CONSENT_CHANGE,
	string(audit.PreferencesChange): customerv1.AuditAction_AUDIT_ACTION_PREFERENCES_CHANGE,
}

// ListAuditEvents is not itself audited: it reads no personal data, only
// who touched which field.
func (s *Server) ListAuditEvents(ctx context.Context, req *customerv1.ListAuditEventsRequest) (*customerv1.ListAuditEventsResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	var customer uuid.UUID
	if v := req.GetCustomerId(); v != "" {
		if customer, err = uuid.Parse(v); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "customer_id", Description: "must be a UUID"})
		}
	}
	size := grpcx.PageSize(req.GetPageSize())
	var before uuid.UUID
	if tok := req.GetPageToken(); tok != "" {
		if before, err = decodeAuditPageToken(tok, req.GetCustomerId()); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "page_token", Description: err.Error()})
		}
	}
	rows, err := s.store.ListAudit(ctx, s.pool, tenant, customer, before, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListAuditEventsResponse{}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = encodeAuditPageToken(rows[len(rows)-1].ID, req.GetCustomerId())
	}
	for _, r := range rows {
		resp.AuditEvents = append(resp.AuditEvents, auditToProto(r))
	}
	return resp, nil
}

func auditToProto(r store.AuditEntry) *customerv1.AuditEvent {
	ids := make([]string, len(r.CustomerIDs))
	for i, id := range r.CustomerIDs {
		ids[i] = id.String()
	}
	e := &customerv1.AuditEvent{
		Id: r.ID.String(), OccurTime: timestamppb.New(r.OccurTime), Actor: r.ActorSubject,
		ActorRoles: r.ActorRoles, Action: auditActions[r.Action], Method: r.Method, CustomerIds: ids,
		Fields: r.Fields, RequestId: r.RequestID,
	}
	if r.IdempotencyKey != uuid.Nil {
		e.IdempotencyKey = r.IdempotencyKey.String()
	}
	return e
}

// Page tokens are grpcx page tokens: the customer filter's fingerprint (a
// token is refused with another filter) and the last id of the page.
func auditPageFilter(customer string) string { return "audit_events:" + customer }

func encodeAuditPageToken(last uuid.UUID, customer string) string {
	return grpcx.EncodePageToken(auditPageFilter(customer), last[:])
}

func decodeAuditPageToken(s, customer string) (uuid.UUID, error) {
	pos, err := grpcx.DecodePageToken(s, auditPageFilter(customer))
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.FromBytes(pos)
	if err != nil {
		return uuid.Nil, errors.New("is not a token from this API")
	}
	return id, nil
}
