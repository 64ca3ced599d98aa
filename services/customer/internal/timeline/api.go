package timeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/encoding/protojson"
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
	"github.com/rapporthq/rapport/services/customer/internal/timeline/store"
)

// The personal fields of an interaction, as audit rows name them.
const (
	fieldSummary = "interaction.summary"
	fieldBody    = "interaction.body"
)

// api implements customerv1.TimelineServiceServer.
type api struct {
	customerv1.UnimplementedTimelineServiceServer
	s *Server
}

func (a *api) CreateInteraction(ctx context.Context, req *customerv1.CreateInteractionRequest) (*customerv1.Interaction, error) {
	tenant, subject, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	now := a.s.now().UTC()
	in, err := manualEntry(req.GetInteraction(), subject, now)
	if err != nil {
		return nil, toStatus(err)
	}
	in.TenantID, in.CustomerID = tenant, customerID
	summary, body := req.GetInteraction().GetSummary(), req.GetInteraction().GetBody()

	// A tenant without keys has no customers; reading never creates keys.
	keys, err := a.s.sealer.LoadTenant(ctx, a.s.pool, tenant)
	if errors.Is(err, pii.ErrNoTenantKeys) {
		return nil, toStatus(errCustomerNotFound)
	}
	if err != nil {
		return nil, err
	}
	// idem stores a keyed fingerprint of the request, not the request (the
	// summary and body are personal data), and the new entry's id, not the
	// entry: a retry reads the entry back.
	fingerprint, err := requestFingerprint(keys, req)
	if err != nil {
		return nil, err
	}
	key := idem.Key{TenantID: tenant.String(), Principal: subject,
		Method: customerv1.TimelineService_CreateInteraction_FullMethodName, RequestID: req.GetRequestId()}
	var fresh *customerv1.Interaction
	stored, err := idem.Do(ctx, a.s.pool, key, fingerprint, func(ctx context.Context, tx pgx.Tx) (*wrapperspb.StringValue, error) {
		e, err := a.s.create(ctx, tx, in, summary, body)
		if err != nil {
			return nil, toStatus(err)
		}
		fresh = entryToProto(e, summary, body)
		if err := audit.Record(ctx, tx, audit.Entry{Action: audit.Create, CustomerIDs: []uuid.UUID{customerID},
			Fields: textFields(fresh), IdempotencyKey: req.GetRequestId()}); err != nil {
			return nil, err
		}
		return wrapperspb.String(e.ID.String()), nil
	})
	if err != nil {
		return nil, err
	}
	if fresh != nil {
		return fresh, nil
	}
	id, err := uuid.Parse(stored.GetValue())
	if err != nil {
		return nil, fmt.Errorf("stored interaction id: %w", err)
	}
	// A retry reads the entry back: audited as a read.
	return a.s.getAudited(ctx, tenant, customerID, id)
}

func (a *api) GetInteraction(ctx context.Context, req *customerv1.GetInteractionRequest) (*customerv1.Interaction, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, err
	}
	return a.s.getAudited(ctx, tenant, customerID, id)
}

func (a *api) ListInteractions(ctx context.Context, req *customerv1.ListInteractionsRequest) (*customerv1.ListInteractionsResponse, error) {
	tenant, _, err := authn.Caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	kinds := make([]string, 0, len(req.GetKinds()))
	for i, k := range req.GetKinds() {
		name := kindName(k)
		if name == "" {
			return nil, toStatus(&fieldError{field: fmt.Sprintf("kinds[%d]", i), reason: "must be a known kind"})
		}
		kinds = append(kinds, name)
	}
	// The filter is a set: its order and repeats change nothing, and the
	// page token's fingerprint must not see them either.
	slices.Sort(kinds)
	kinds = slices.Compact(kinds)
	size := grpcx.PageSize(req.GetPageSize())
	filter := "interactions:" + customerID.String() + ":" + strings.Join(kinds, ",")
	after, err := decodePageToken(req.GetPageToken(), filter)
	if err != nil {
		return nil, err
	}
	// A customer of another tenant, or an erased one, is not found, not an
	// empty timeline.
	live, err := a.s.store.CustomerLive(ctx, a.s.pool, tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, toStatus(errCustomerNotFound)
	}
	rows, err := a.s.store.List(ctx, a.s.pool, tenant, customerID, kinds, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListInteractionsResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1]
		resp.NextPageToken = encodePageToken(filter, store.Cursor{Time: last.OccurTime, ID: last.ID})
	}
	resp.Interactions, err = a.s.open(ctx, a.s.pool, tenant, customerID, rows)
	if err != nil {
		return nil, err
	}
	if err := a.s.auditRead(ctx, audit.List, customerID, resp.Interactions...); err != nil {
		return nil, err
	}
	return resp, nil
}

// getAudited is get with the read audited.
func (s *Server) getAudited(ctx context.Context, tenant, customerID, id uuid.UUID) (*customerv1.Interaction, error) {
	in, err := s.get(ctx, tenant, customerID, id)
	if err != nil {
		return nil, err
	}
	if err := s.auditRead(ctx, audit.Read, customerID, in); err != nil {
		return nil, err
	}
	return in, nil
}

// auditRead records, on the pool and before they are returned, that the
// text of a customer's entries was read. Entries without text (most
// projected ones) return nothing personal and write no row. A read that
// cannot be audited fails.
func (s *Server) auditRead(ctx context.Context, action audit.Action, customerID uuid.UUID, ins ...*customerv1.Interaction) error {
	fields := textFields(ins...)
	if len(fields) == 0 {
		return nil
	}
	return audit.Record(ctx, s.pool, audit.Entry{Action: action, CustomerIDs: []uuid.UUID{customerID}, Fields: fields})
}

// textFields names the personal fields set in any of ins, never a value.
func textFields(ins ...*customerv1.Interaction) []string {
	var summary, body bool
	for _, in := range ins {
		summary = summary || in.GetSummary() != ""
		body = body || in.GetBody() != ""
	}
	out := []string{}
	if summary {
		out = append(out, fieldSummary)
	}
	if body {
		out = append(out, fieldBody)
	}
	return out
}

// create stores a manual entry, its text sealed for the customer, in tx.
// A customer merged into another gets no new entry: the call is refused
// with lifecycle.MergedError, which names the customer to write to. Its
// history stays readable under its old id (GetInteraction and
// ListInteractions serve what was not moved).
func (s *Server) create(ctx context.Context, tx pgx.Tx, e store.Entry, summary, body string) (store.Entry, error) {
	live, mergedInto, err := s.store.CustomerForWrite(ctx, tx, e.TenantID, e.CustomerID)
	if err != nil {
		return store.Entry{}, err
	}
	if !live {
		return store.Entry{}, errCustomerNotFound
	}
	if mergedInto != uuid.Nil {
		return store.Entry{}, lifecycle.MergedError(e.CustomerID, mergedInto)
	}
	k, err := s.sealer.CustomerKey(ctx, tx, e.TenantID, e.CustomerID)
	if errors.Is(err, pii.ErrKeyDestroyed) {
		return store.Entry{}, errCustomerNotFound // erased since the check above
	}
	if err != nil {
		return store.Entry{}, err
	}
	if e.SummarySealed, err = sealText(k, summaryColumn, summary); err != nil {
		return store.Entry{}, err
	}
	if e.BodySealed, err = sealText(k, bodyColumn, body); err != nil {
		return store.Entry{}, err
	}
	return s.store.Insert(ctx, tx, e)
}

// get reads one entry with its text opened.
func (s *Server) get(ctx context.Context, tenant, customerID, id uuid.UUID) (*customerv1.Interaction, error) {
	live, err := s.store.CustomerLive(ctx, s.pool, tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, toStatus(errCustomerNotFound)
	}
	e, err := s.store.Get(ctx, s.pool, tenant, customerID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(errInteractionNotFound)
	}
	if err != nil {
		return nil, err
	}
	out, err := s.open(ctx, s.pool, tenant, customerID, []store.Entry{e})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// open turns a customer's entries into messages, opening their sealed text
// with one key read.
func (s *Server) open(ctx context.Context, db store.DB, tenant, customerID uuid.UUID, rows []store.Entry) ([]*customerv1.Interaction, error) {
	var k *pii.CustomerKey
	out := make([]*customerv1.Interaction, len(rows))
	for i, e := range rows {
		var summary, body string
		if e.SummarySealed != nil || e.BodySealed != nil {
			if k == nil {
				var err error
				if k, err = s.sealer.CustomerKey(ctx, db, tenant, customerID); err != nil {
					if errors.Is(err, pii.ErrKeyDestroyed) {
						return nil, toStatus(errCustomerNotFound)
					}
					return nil, err
				}
			}
			var err error
			if summary, err = openText(k, summaryColumn, e.SummarySealed); err != nil {
				return nil, err
			}
			if body, err = openText(k, bodyColumn, e.BodySealed); err != nil {
				return nil, err
			}
		}
		out[i] = entryToProto(e, summary, body)
	}
	return out, nil
}

// sealText seals v for col; empty text is stored as NULL.
func sealText(k *pii.CustomerKey, col pii.Column, v string) ([]byte, error) {
	if v == "" {
		return nil, nil
	}
	ct, err := k.Seal(col, []byte(v))
	if err != nil {
		return nil, fmt.Errorf("seal %s: %w", col, err)
	}
	return ct, nil
}

func openText(k *pii.CustomerKey, col pii.Column, ct []byte) (string, error) {
	if ct == nil {
		return "", nil
	}
	b, err := k.Open(col, ct)
	if err != nil {
		return "", fmt.Errorf("open %s: %w", col, err)
	}
	return string(b), nil
}

// manualEntry checks what protovalidate cannot and builds the entry (text
// not yet sealed).
func manualEntry(in *customerv1.Interaction, subject string, now time.Time) (store.Entry, error) {
	kind := kindName(in.GetKind())
	if !manualKinds[kind] {
		return store.Entry{}, &fieldError{field: "interaction.kind", reason: "must be NOTE, CALL, VISIT, EMAIL or CHAT"}
	}
	dir := directionName(in.GetDirection())
	if in.GetDirection() != customerv1.InteractionDirection_INTERACTION_DIRECTION_UNSPECIFIED && dir == "" {
		return store.Entry{}, &fieldError{field: "interaction.direction", reason: "must be a known direction"}
	}
	if dir != "" && kind != kindCall && kind != kindEmail && kind != kindChat {
		return store.Entry{}, &fieldError{field: "interaction.direction", reason: "applies to calls, emails and chats only"}
	}
	if kind == kindNote && strings.TrimSpace(in.GetSummary()) == "" && strings.TrimSpace(in.GetBody()) == "" {
		return store.Entry{}, &fieldError{field: "interaction.summary", reason: "a note needs a summary or a body"}
	}
	for _, f := range []struct{ name, v string }{{"interaction.summary", in.GetSummary()}, {"interaction.body", in.GetBody()}} {
		if !utf8.ValidString(f.v) {
			return store.Entry{}, &fieldError{field: f.name, reason: "must be valid UTF-8"}
		}
	}
	e := store.Entry{Kind: kind, Direction: dir, OccurTime: now, CreateTime: now, AgentID: in.GetAgentId()}
	if t := in.GetOccurTime(); t != nil {
		if err := t.CheckValid(); err != nil {
			return store.Entry{}, &fieldError{field: "interaction.occur_time", reason: "must be a valid time"}
		}
		e.OccurTime = t.AsTime().UTC().Truncate(time.Microsecond)
		if e.OccurTime.After(now.Add(maxClockSkew)) {
			return store.Entry{}, &fieldError{field: "interaction.occur_time", reason: "must not be in the future"}
		}
	}
	if e.AgentID == "" {
		e.AgentID = subject
		if len(e.AgentID) > maxAgentIDLen {
			return store.Entry{}, &fieldError{field: "interaction.agent_id",
				reason: fmt.Sprintf("the caller's id is longer than %d characters; set agent_id", maxAgentIDLen)}
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return store.Entry{}, fmt.Errorf("new interaction id: %w", err)
	}
	e.ID = id
	return e, nil
}

// requestFingerprint stands in for req in the idempotency record: the
// tenant's keyed PRF of the request without its request_id. Equal requests
// still match and different ones still differ, which is all idem compares,
// and a stolen idempotency table tells nothing about the text.
func requestFingerprint(t *pii.TenantKeys, req *customerv1.CreateInteractionRequest) (*wrapperspb.BytesValue, error) {
	m := proto.Clone(req).(*customerv1.CreateInteractionRequest)
	m.RequestId = ""
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("request fingerprint: %w", err)
	}
	fp, err := t.Fingerprint("timeline-create-interaction", b)
	if err != nil {
		return nil, fmt.Errorf("request fingerprint: %w", err)
	}
	return wrapperspb.Bytes(fp), nil
}

// entryToProto renders an entry; summary and body are its opened text.
func entryToProto(e store.Entry, summary, body string) *customerv1.Interaction {
	out := &customerv1.Interaction{
		Id: e.ID.String(), CustomerId: e.CustomerID.String(), Kind: kindValue(e.Kind),
		OccurTime: timestamppb.New(e.OccurTime), AgentId: e.AgentID, Direction: directionValue(e.Direction),
		Summary: summary, Body: body, CreateTime: timestamppb.New(e.CreateTime),
	}
	if e.SourceEventID != "" {
		out.Source = &customerv1.InteractionSource{EventId: e.SourceEventID, Subject: e.SourceSubject}
	}
	setDetails(out, e.Kind, e.Details)
	return out
}

// setDetails fills the details oneof from the stored JSON. A value that no
// longer parses (a field renamed since) leaves details empty rather than
// failing the whole page: the entry's kind, time and source still show.
func setDetails(out *customerv1.Interaction, kind string, raw []byte) {
	var msg proto.Message
	switch kind {
	case kindTicketOpened, kindTicketResolved:
		d := &customerv1.TicketInteraction{}
		out.Details, msg = &customerv1.Interaction_Ticket{Ticket: d}, d
	case kindPurchase:
		d := &customerv1.PurchaseInteraction{}
		out.Details, msg = &customerv1.Interaction_Purchase{Purchase: d}, d
	case kindPointsEarned, kindPointsSpent:
		d := &customerv1.PointsInteraction{}
		out.Details, msg = &customerv1.Interaction_Points{Points: d}, d
	case kindCouponIssued, kindCouponRedeemed:
		d := &customerv1.CouponInteraction{}
		out.Details, msg = &customerv1.Interaction_Coupon{Coupon: d}, d
	case kindSurveyAnswered:
		d := &customerv1.SurveyInteraction{}
		out.Details, msg = &customerv1.Interaction_Survey{Survey: d}, d
	case kindOutreachSent:
		d := &customerv1.OutreachInteraction{}
		out.Details, msg = &customerv1.Interaction_Outreach{Outreach: d}, d
	default:
		return
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw, msg); err != nil {
		out.Details = nil
	}
}

// detailsJSON is how details are stored: protobuf JSON with the proto field
// names, so SQL and operators read them as the proto file spells them.
func detailsJSON(m proto.Message) ([]byte, error) {
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encode interaction details: %w", err)
	}
	return b, nil
}
