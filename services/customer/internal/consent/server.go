package consent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/consent/store"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

// ServiceName is the gRPC service Register adds, for health and readiness.
const ServiceName = "rapport.customer.v1.ConsentService"

// ErrorInfo reasons of the refusals clients branch on.
const (
	ErrorReasonCustomerUnknown   = "CUSTOMER_UNKNOWN"
	ErrorReasonOutdated          = "CONSENT_DECISION_OUTDATED"
	ErrorReasonTokenUsed         = "CONFIRMATION_TOKEN_USED"
	ErrorReasonTokenExpired      = "CONFIRMATION_TOKEN_EXPIRED"
	ErrorReasonTokenSuperseded   = "CONFIRMATION_TOKEN_SUPERSEDED"
	ErrorReasonReferenceConflict = "CONTACT_REFERENCE_CONFLICT"
	// ErrorReasonErased: the customer was erased (the governor's ERASED).
	ErrorReasonErased = "ERASED"
	// ErrorReasonSuppressed: marketing to an erased customer's address.
	ErrorReasonSuppressed = "CONTACT_SUPPRESSED"
)

// Server implements customerv1.ConsentServiceServer: the transport of
// consent, preferences, the governor and the tenant's contact policy. Every
// query is scoped by the caller's tenant, so another tenant's customer is
// NOT_FOUND like one that does not exist.
type Server struct {
	customerv1.UnimplementedConsentServiceServer
	pool *pgxpool.Pool
	svc  *service
}

// NewServer returns a Server on pool, whose search_path must be the
// customer schema; now is the clock (nil means time.Now).
func NewServer(pool *pgxpool.Pool, now func() time.Time) *Server {
	if now == nil {
		now = time.Now
	}
	return &Server{pool: pool, svc: &service{store: store.New(), now: now}}
}

// Register adds the ConsentService to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { customerv1.RegisterConsentServiceServer(r, s) }

// caller is who is calling: the tenant and the principal from the verified
// credential. The tenant never comes from the request.
func caller(ctx context.Context, requestID string) (actor, error) {
	t, subject, err := authn.Caller(ctx)
	if err != nil {
		return actor{}, err
	}
	a := actor{tenant: t, subject: subject}
	if requestID != "" {
		// Validated as a UUID by the request schema.
		a.requestID, _ = uuid.Parse(requestID)
	}
	return a, nil
}

func (a actor) key(method, requestID string) idem.Key {
	return idem.Key{TenantID: a.tenant.String(), Principal: a.subject, Method: method, RequestID: requestID}
}

// customerID parses a request's customer id (validated by the schema; this
// guards handlers reached without the validation interceptor).
func customerID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: field, Description: "must be a UUID"})
	}
	return id, nil
}

// read runs fn in a read-only REPEATABLE READ transaction, so the several
// queries of one read see one snapshot.
func (s *Server) read(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (s *Server) GetConsents(ctx context.Context, req *customerv1.GetConsentsRequest) (*customerv1.GetConsentsResponse, error) {
	who, err := caller(ctx, "")
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	resp := &customerv1.GetConsentsResponse{}
	err = s.read(ctx, func(tx pgx.Tx) error {
		cs, version, err := s.svc.consents(ctx, tx, who.tenant, id)
		if err != nil {
			return err
		}
		resp.Version = version
		for _, c := range cs {
			resp.Consents = append(resp.Consents, consentToProto(c))
		}
		return nil
	})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return resp, nil
}

func (s *Server) SetConsent(ctx context.Context, req *customerv1.SetConsentRequest) (*customerv1.SetConsentResponse, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	c := Change{
		CustomerID: id, Channel: channelOf[req.GetChannel()], Purpose: purposeOf[req.GetPurpose()],
		State: stateOf[req.GetState()], LegalBasis: basisOf[req.GetLegalBasis()], Source: req.GetSource(),
	}
	if ts := req.GetCaptureTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "capture_time", Description: "is not a valid time"})
		}
		c.CaptureTime = ts.AsTime()
	}
	// The token is attached only to the response of the call that made it:
	// the stored response (for retries with the same request_id) never holds
	// it, so no table does.
	var token string
	resp, err := idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_SetConsent_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.SetConsentResponse, error) {
			res, err := s.svc.setConsent(ctx, tx, who, c)
			if err != nil {
				return nil, toStatus(err, "")
			}
			token = res.token
			out := &customerv1.SetConsentResponse{Consent: consentToProto(res.consent)}
			if !res.tokenExpiry.IsZero() {
				out.ConfirmationExpireTime = timestamppb.New(res.tokenExpiry)
			}
			return out, nil
		})
	if err != nil {
		return nil, err
	}
	resp.ConfirmationToken = token
	return resp, nil
}

func (s *Server) ListConsentEvents(ctx context.Context, req *customerv1.ListConsentEventsRequest) (*customerv1.ListConsentEventsResponse, error) {
	who, err := caller(ctx, "")
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	var before int64
	if tok := req.GetPageToken(); tok != "" {
		if before, err = decodeEventsPageToken(tok, id); err != nil {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "page_token", Description: err.Error()})
		}
	}
	events, err := s.svc.events(ctx, s.pool, who.tenant, id, before, size+1)
	if err != nil {
		return nil, toStatus(err, "")
	}
	resp := &customerv1.ListConsentEventsResponse{}
	if len(events) > size {
		events = events[:size]
		resp.NextPageToken = encodeEventsPageToken(id, events[len(events)-1].Version)
	}
	for _, e := range events {
		resp.ConsentEvents = append(resp.ConsentEvents, eventToProto(e))
	}
	return resp, nil
}

func (s *Server) ConfirmConsent(ctx context.Context, req *customerv1.ConfirmConsentRequest) (*customerv1.Consent, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	return idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_ConfirmConsent_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.Consent, error) {
			c, err := s.svc.confirm(ctx, tx, who, req.GetToken())
			if err != nil {
				return nil, toStatus(err, "")
			}
			return consentToProto(c), nil
		})
}

func (s *Server) GetContactPreferences(ctx context.Context, req *customerv1.GetContactPreferencesRequest) (*customerv1.ContactPreferences, error) {
	who, err := caller(ctx, "")
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	var out *customerv1.ContactPreferences
	err = s.read(ctx, func(tx pgx.Tx) error {
		p, err := s.svc.preferences(ctx, tx, who.tenant, id)
		out = preferencesToProto(p)
		return err
	})
	if err != nil {
		return nil, toStatus(err, "")
	}
	return out, nil
}

func (s *Server) UpdateContactPreferences(ctx context.Context, req *customerv1.UpdateContactPreferencesRequest) (*customerv1.ContactPreferences, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	in := req.GetContactPreferences()
	id, err := customerID("contact_preferences.customer_id", in.GetCustomerId())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetUpdateMask().GetPaths(), PreferencePaths)
	if err != nil {
		return nil, err
	}
	patch := Preferences{CustomerID: id}
	if q := in.GetQuietHours(); q != nil {
		start, err1 := ParseClock(q.GetStartTime())
		end, err2 := ParseClock(q.GetEndTime())
		if err := errors.Join(err1, err2); err != nil {
			field := "contact_preferences.quiet_hours.start_time"
			if err1 == nil {
				field = "contact_preferences.quiet_hours.end_time"
			}
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: field, Description: "must be HH:MM"})
		}
		patch.QuietHours = &QuietHours{Start: start, End: end}
	}
	for _, c := range in.GetPreferredChannels() {
		patch.PreferredChannels = append(patch.PreferredChannels, channelOf[c])
	}
	return idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_UpdateContactPreferences_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.ContactPreferences, error) {
			p, err := s.svc.updatePreferences(ctx, tx, who.tenant, patch, paths)
			if err != nil {
				return nil, toStatus(err, "contact_preferences.")
			}
			if err := audit.Record(ctx, tx, audit.Entry{Action: audit.PreferencesChange,
				CustomerIDs: []uuid.UUID{id}, Fields: paths, IdempotencyKey: req.GetRequestId()}); err != nil {
				return nil, err
			}
			return preferencesToProto(p), nil
		})
}

func (s *Server) CheckContact(ctx context.Context, req *customerv1.CheckContactRequest) (*customerv1.ContactDecision, error) {
	who, err := caller(ctx, "")
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	var d Decision
	err = s.read(ctx, func(tx pgx.Tx) error {
		d, err = s.svc.check(ctx, tx, who.tenant, id, channelOf[req.GetChannel()], purposeOf[req.GetPurpose()])
		return err
	})
	if err != nil {
		return nil, toStatus(err, "")
	}
	if d.Reason == ReasonCustomerUnknown {
		return nil, customerNotFound()
	}
	return decisionToProto(d), nil
}

func (s *Server) ReserveContact(ctx context.Context, req *customerv1.ReserveContactRequest) (*customerv1.ReserveContactResponse, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	t := Touch{CustomerID: id, Channel: channelOf[req.GetChannel()], Purpose: purposeOf[req.GetPurpose()],
		SourceService: req.GetSourceService(), Reference: req.GetReference()}
	return idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_ReserveContact_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.ReserveContactResponse, error) {
			d, touch, err := s.svc.reserve(ctx, tx, who, t)
			if err != nil {
				return nil, toStatus(err, "")
			}
			if d.Reason == ReasonCustomerUnknown {
				return nil, customerNotFound()
			}
			out := &customerv1.ReserveContactResponse{Decision: decisionToProto(d)}
			if touch != nil {
				out.Touch = touchToProto(*touch)
			}
			return out, nil
		})
}

func (s *Server) RecordContact(ctx context.Context, req *customerv1.RecordContactRequest) (*customerv1.ContactTouch, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	id, err := customerID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, err
	}
	t := Touch{CustomerID: id, Channel: channelOf[req.GetChannel()], Purpose: purposeOf[req.GetPurpose()],
		SourceService: req.GetSourceService(), Reference: req.GetReference()}
	return idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_RecordContact_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.ContactTouch, error) {
			stored, err := s.svc.recordTouch(ctx, tx, who, t)
			if err != nil {
				return nil, toStatus(err, "")
			}
			return touchToProto(stored), nil
		})
}

func (s *Server) GetContactPolicy(ctx context.Context, _ *customerv1.GetContactPolicyRequest) (*customerv1.ContactPolicy, error) {
	who, err := caller(ctx, "")
	if err != nil {
		return nil, err
	}
	p, err := s.svc.policy(ctx, s.pool, who.tenant)
	if err != nil {
		return nil, toStatus(err, "")
	}
	return policyToProto(p), nil
}

func (s *Server) UpdateContactPolicy(ctx context.Context, req *customerv1.UpdateContactPolicyRequest) (*customerv1.ContactPolicy, error) {
	who, err := caller(ctx, req.GetRequestId())
	if err != nil {
		return nil, err
	}
	paths, err := maskPaths(req.GetUpdateMask().GetPaths(), PolicyPaths)
	if err != nil {
		return nil, err
	}
	in := req.GetContactPolicy()
	patch := Policy{
		DefaultTimeZone: in.GetDefaultTimeZone(), Care: capFromProto(in.GetCareCap()),
		Marketing: capFromProto(in.GetMarketingCap()), Survey: capFromProto(in.GetSurveyCap()),
		Global: capFromProto(in.GetGlobalCap()),
	}
	return idem.Do(ctx, s.pool, who.key(customerv1.ConsentService_UpdateContactPolicy_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.ContactPolicy, error) {
			p, err := s.svc.updatePolicy(ctx, tx, who.tenant, patch, paths)
			if err != nil {
				return nil, toStatus(err, "contact_policy.")
			}
			return policyToProto(p), nil
		})
}

// maskPaths checks an update mask against the fields clients may change.
// Unknown and output-only paths and the "*" wildcard are refused by name. A
// path inside an allowed field ("quiet_hours.start_time", as grpc-gateway
// derives a PATCH body's mask) selects the whole field: the sub-messages
// are replaced as a unit.
func maskPaths(paths, allowed []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "update_mask",
			Description: "must name at least one field: " + strings.Join(allowed, ", ")})
	}
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		if top, _, ok := strings.Cut(p, "."); ok && slices.Contains(allowed, top) {
			p = top
		}
		if !slices.Contains(allowed, p) {
			return nil, grpcx.InvalidArgument(grpcx.FieldViolation{Field: "update_mask",
				Description: fmt.Sprintf("path %q cannot be updated; allowed: %s", p, strings.Join(allowed, ", "))})
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// toStatus maps the domain's errors to statuses, once; fieldPrefix turns a
// domain field into the request's field path. Other errors pass on to
// grpcx's mapping (database kinds, or INTERNAL).
func toStatus(err error, fieldPrefix string) error {
	var (
		fe *FieldError
		me *customerMergedError
	)
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fieldPrefix + fe.Field, Description: fe.Reason})
	case errors.As(err, &me):
		return lifecycle.MergedError(me.id, me.into)
	case errors.Is(err, ErrCustomerNotFound):
		return customerNotFound()
	case errors.Is(err, ErrOutdated):
		return grpcx.FailedPrecondition(ErrorReasonOutdated,
			"a decision captured later is already recorded for this channel and purpose")
	case errors.Is(err, ErrCustomerErased):
		return grpcx.FailedPrecondition(ErrorReasonErased, "the customer was erased")
	case errors.Is(err, ErrContactSuppressed):
		return grpcx.FailedPrecondition(ErrorReasonSuppressed,
			"the customer's address for this channel may not receive marketing (an erased customer's)")
	case errors.Is(err, ErrTokenNotFound):
		return grpcx.NotFound("confirmation token")
	case errors.Is(err, ErrTokenUsed):
		return grpcx.FailedPrecondition(ErrorReasonTokenUsed, "the confirmation token was already used")
	case errors.Is(err, ErrTokenExpired):
		return grpcx.FailedPrecondition(ErrorReasonTokenExpired, "the confirmation token expired; grant again for a new one")
	case errors.Is(err, ErrTokenSuperseded):
		return grpcx.FailedPrecondition(ErrorReasonTokenSuperseded, "a later decision replaced the one this token confirms")
	case errors.Is(err, ErrReferenceConflict):
		st, _ := status.New(codes.AlreadyExists, "the reference is recorded for another customer, channel or purpose").
			WithDetails(&errdetails.ErrorInfo{Reason: ErrorReasonReferenceConflict, Domain: grpcx.ErrorDomain})
		return st.Err()
	}
	return err
}

// customerNotFound is the answer for a customer not in the caller's tenant,
// whether it exists elsewhere or not; the ErrorInfo reason is the
// governor's CUSTOMER_UNKNOWN.
func customerNotFound() error {
	st := status.New(codes.NotFound, "customer not found")
	if d, err := st.WithDetails(&errdetails.ErrorInfo{Reason: ErrorReasonCustomerUnknown, Domain: grpcx.ErrorDomain}); err == nil {
		st = d
	}
	return st.Err()
}

// Page tokens of ListConsentEvents are grpcx page tokens: the customer's
// fingerprint (a token is refused for another customer) and the last
// version of the page.
func eventsPageFilter(customer uuid.UUID) string { return "consent_events:" + customer.String() }

func encodeEventsPageToken(customer uuid.UUID, last int64) string {
	return grpcx.EncodePageToken(eventsPageFilter(customer), binary.BigEndian.AppendUint64(nil, uint64(last))) //nolint:gosec // a version, positive
}

func decodeEventsPageToken(s string, customer uuid.UUID) (int64, error) {
	pos, err := grpcx.DecodePageToken(s, eventsPageFilter(customer))
	if err != nil {
		return 0, err
	}
	if len(pos) != 8 {
		return 0, errors.New("is not a token from this API")
	}
	v := int64(binary.BigEndian.Uint64(pos)) //nolint:gosec // written from an int64
	if v <= 0 {
		return 0, errors.New("is not a token from this API")
	}
	return v, nil
}
