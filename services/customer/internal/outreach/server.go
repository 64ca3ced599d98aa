package outreach

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/rapporthq/rapport/pkg/authn"
	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/pkg/idem"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// ServiceName is the gRPC service Register adds, for health and readiness.
const ServiceName = "rapport.customer.v1.OutreachService"

// ErrorInfo reasons.
const (
	ErrorReasonTemplateKeyTaken = "OUTREACH_TEMPLATE_KEY_TAKEN"
	ErrorReasonCustomerUnknown  = "CUSTOMER_UNKNOWN"
	ErrorReasonCustomerMerged   = lifecycle.ReasonCustomerMerged
)

// Domain errors, mapped to statuses once by toStatus.
var (
	errTemplateNotFound = errors.New("outreach template not found")
	errDeliveryNotFound = errors.New("outreach delivery not found")
	errCustomerNotFound = errors.New("customer not found")
	errKeyTaken         = errors.New("outreach template key taken")
	errRequestIDReused  = errors.New("request id used for another outreach")
	errRequestIDRace    = errors.New("request id claimed concurrently")
	errCustomerMerged   = errors.New("customer merged into another")
)

// customerMergedError refuses an outreach to a customer merged into
// another: nothing new happens to a merged customer, and the caller holding
// its id learns the current one (lifecycle.MergedError). It is
// errCustomerMerged to errors.Is.
type customerMergedError struct{ id, into uuid.UUID }

func (e *customerMergedError) Error() string        { return errCustomerMerged.Error() }
func (e *customerMergedError) Is(target error) bool { return target == errCustomerMerged }

// Server implements customerv1.OutreachServiceServer and runs the delivery
// worker. Every query is scoped by the caller's tenant (the worker's by the
// claimed delivery's), so another tenant's objects are NOT_FOUND.
type Server struct {
	customerv1.UnimplementedOutreachServiceServer
	pool     *pgxpool.Pool
	sealer   *pii.Sealer
	store    *store.Store
	governor *consent.Governor
	drivers  map[consent.Channel]Driver
	cfg      Config
	now      func() time.Time
	log      *slog.Logger
	// jitter returns a random duration in [0, n]; tests may fix it.
	jitter func(n time.Duration) time.Duration
	// metrics, set by Instrument; nil records nothing.
	metrics *metrics
}

// New returns a Server on pool (search_path the customer schema), opening
// and sealing personal data with sealer, with the drivers cfg configures.
// now is the clock (nil: time.Now); log receives the worker's failures
// (nil: slog.Default()).
func New(pool *pgxpool.Pool, sealer *pii.Sealer, cfg Config, now func() time.Time, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	drivers := map[consent.Channel]Driver{}
	if cfg.SMTP.Addr != "" {
		d, err := newSMTPDriver(cfg.SMTP)
		if err != nil {
			return nil, err
		}
		drivers[consent.ChannelEmail] = d
	}
	for ch, w := range map[consent.Channel]WebhookConfig{consent.ChannelSMS: cfg.SMS, consent.ChannelMessaging: cfg.Messaging} {
		if w.URL == "" {
			continue
		}
		d, err := newWebhookDriver(w)
		if err != nil {
			return nil, fmt.Errorf("outreach: %s webhook: %w", ch, err)
		}
		drivers[ch] = d
	}
	return &Server{
		pool: pool, sealer: sealer, store: store.New(), governor: consent.NewGovernor(now), drivers: drivers,
		cfg: cfg, now: now, log: log.With("component", "outreach"),
		jitter: func(n time.Duration) time.Duration { return time.Duration(rand.Int64N(int64(n) + 1)) },
	}, nil
}

// Register adds the OutreachService to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { customerv1.RegisterOutreachServiceServer(r, s) }

// clock is now in UTC at the database's precision.
func (s *Server) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// who is the caller: the tenant and principal of the verified credential.
type who struct {
	tenant  uuid.UUID
	subject string
}

func caller(ctx context.Context) (who, error) {
	t, subject, err := authn.Caller(ctx)
	if err != nil {
		return who{}, err
	}
	return who{tenant: t, subject: subject}, nil
}

func (w who) key(method, requestID string) idem.Key {
	return idem.Key{TenantID: w.tenant.String(), Principal: w.subject, Method: method, RequestID: requestID}
}

// parseID parses an id the schema validated (this guards handlers reached
// without the validation interceptor).
func parseID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, &FieldError{Field: field, Reason: "must be a UUID"}
	}
	return id, nil
}

func (s *Server) CreateOutreachTemplate(ctx context.Context, req *customerv1.CreateOutreachTemplateRequest) (*customerv1.OutreachTemplate, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	t := templateFromProto(req.GetOutreachTemplate())
	t.TenantID, t.CreateTime = w.tenant, now
	if t.ID, err = uuid.NewV7(); err != nil {
		return nil, fmt.Errorf("new template id: %w", err)
	}
	if err := checkTemplate(t, "outreach_template"); err != nil {
		return nil, toStatus(err)
	}
	return idem.Do(ctx, s.pool, w.key(customerv1.OutreachService_CreateOutreachTemplate_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.OutreachTemplate, error) {
			return storedTemplate(s.store.InsertTemplate(ctx, tx, t))
		})
}

// storedTemplate is the answer to a template write: the stored template,
// or errKeyTaken's status when its key is another template's.
func storedTemplate(t store.Template, err error) (*customerv1.OutreachTemplate, error) {
	if errors.Is(err, store.ErrConflict) {
		return nil, toStatus(errKeyTaken)
	}
	if err != nil {
		return nil, err
	}
	return templateToProto(t), nil
}

func (s *Server) GetOutreachTemplate(ctx context.Context, req *customerv1.GetOutreachTemplateRequest) (*customerv1.OutreachTemplate, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	t, err := s.store.Template(ctx, s.pool, w.tenant, id, false)
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(errTemplateNotFound)
	}
	if err != nil {
		return nil, err
	}
	return templateToProto(t), nil
}

func (s *Server) ListOutreachTemplates(ctx context.Context, req *customerv1.ListOutreachTemplatesRequest) (*customerv1.ListOutreachTemplatesResponse, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	size := grpcx.PageSize(req.GetPageSize())
	var after string
	if tok := req.GetPageToken(); tok != "" {
		b, err := grpcx.DecodePageToken(tok, "templates")
		if err != nil {
			return nil, toStatus(&FieldError{Field: "page_token", Reason: err.Error()})
		}
		after = string(b)
	}
	rows, err := s.store.Templates(ctx, s.pool, w.tenant, after, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListOutreachTemplatesResponse{}
	if len(rows) > size {
		rows = rows[:size]
		resp.NextPageToken = grpcx.EncodePageToken("templates", []byte(rows[len(rows)-1].Key))
	}
	for _, t := range rows {
		resp.OutreachTemplates = append(resp.OutreachTemplates, templateToProto(t))
	}
	return resp, nil
}

// templatePaths are the fields UpdateOutreachTemplate may change.
var templatePaths = []string{"key", "default_locale", "variants"}

func (s *Server) UpdateOutreachTemplate(ctx context.Context, req *customerv1.UpdateOutreachTemplateRequest) (*customerv1.OutreachTemplate, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	in := req.GetOutreachTemplate()
	id, err := parseID("outreach_template.id", in.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	paths, err := maskPaths(req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, err
	}
	patch := templateFromProto(in)
	return idem.Do(ctx, s.pool, w.key(customerv1.OutreachService_UpdateOutreachTemplate_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*customerv1.OutreachTemplate, error) {
			cur, err := s.store.Template(ctx, tx, w.tenant, id, true)
			if errors.Is(err, store.ErrNotFound) {
				return nil, toStatus(errTemplateNotFound)
			}
			if err != nil {
				return nil, err
			}
			next := cur
			for _, p := range paths {
				switch p {
				case "key":
					next.Key = patch.Key
				case "default_locale":
					next.DefaultLocale = patch.DefaultLocale
				case "variants":
					next.Variants = patch.Variants
				}
			}
			if err := checkTemplate(next, "outreach_template"); err != nil {
				return nil, toStatus(err)
			}
			next.UpdateTime = s.clock()
			return storedTemplate(s.store.UpdateTemplate(ctx, tx, next))
		})
}

func (s *Server) DeleteOutreachTemplate(ctx context.Context, req *customerv1.DeleteOutreachTemplateRequest) (*emptypb.Empty, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	return idem.Do(ctx, s.pool, w.key(customerv1.OutreachService_DeleteOutreachTemplate_FullMethodName, req.GetRequestId()), req,
		func(ctx context.Context, tx pgx.Tx) (*emptypb.Empty, error) {
			err := s.store.DeleteTemplate(ctx, tx, w.tenant, id)
			if errors.Is(err, store.ErrNotFound) {
				return nil, toStatus(errTemplateNotFound)
			}
			if err != nil {
				return nil, err
			}
			return &emptypb.Empty{}, nil
		})
}

func (s *Server) GetOutreachDelivery(ctx context.Context, req *customerv1.GetOutreachDeliveryRequest) (*customerv1.OutreachDelivery, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, toStatus(err)
	}
	id, err := parseID("id", req.GetId())
	if err != nil {
		return nil, toStatus(err)
	}
	d, err := s.store.Delivery(ctx, s.pool, w.tenant, customerID, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, toStatus(errDeliveryNotFound)
	}
	if err != nil {
		return nil, err
	}
	return deliveryToProto(d), nil
}

func (s *Server) ListOutreachDeliveries(ctx context.Context, req *customerv1.ListOutreachDeliveriesRequest) (*customerv1.ListOutreachDeliveriesResponse, error) {
	w, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	customerID, err := parseID("customer_id", req.GetCustomerId())
	if err != nil {
		return nil, toStatus(err)
	}
	var statuses []string
	for _, st := range req.GetStatuses() {
		name := statusName(st)
		if name == "" {
			return nil, toStatus(&FieldError{Field: "statuses", Reason: "must be known statuses"})
		}
		statuses = append(statuses, name)
	}
	slices.Sort(statuses)
	filter := "deliveries:" + customerID.String() + ":" + strings.Join(statuses, ",")
	size := grpcx.PageSize(req.GetPageSize())
	var before uuid.UUID
	if tok := req.GetPageToken(); tok != "" {
		b, err := grpcx.DecodePageToken(tok, filter)
		if err == nil {
			before, err = uuid.FromBytes(b)
		}
		if err != nil {
			return nil, toStatus(&FieldError{Field: "page_token", Reason: err.Error()})
		}
	}
	exists, err := s.customerExists(ctx, w.tenant, customerID)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, toStatus(errCustomerNotFound)
	}
	rows, err := s.store.Deliveries(ctx, s.pool, w.tenant, customerID, before, statuses, size+1)
	if err != nil {
		return nil, err
	}
	resp := &customerv1.ListOutreachDeliveriesResponse{}
	if len(rows) > size {
		rows = rows[:size]
		last := rows[len(rows)-1].ID
		resp.NextPageToken = grpcx.EncodePageToken(filter, last[:])
	}
	for _, d := range rows {
		resp.OutreachDeliveries = append(resp.OutreachDeliveries, deliveryToProto(d))
	}
	return resp, nil
}

// customerExists tells whether the tenant has the customer, so another
// tenant's customer lists as NOT_FOUND rather than as an empty log.
func (s *Server) customerExists(ctx context.Context, tenant, customer uuid.UUID) (bool, error) {
	_, err := s.store.CustomerContact(ctx, s.pool, tenant, customer)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// maskPaths checks an update mask against templatePaths; "*" and unknown or
// immutable paths (channel) are refused by name. A path inside variants
// (variants.text_body, as a PATCH body may derive) selects all variants.
func maskPaths(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, toStatus(&FieldError{Field: "update_mask",
			Reason: "must name at least one field: " + strings.Join(templatePaths, ", ")})
	}
	var out []string
	for _, p := range paths {
		if top, _, ok := strings.Cut(p, "."); ok && top == "variants" {
			p = top
		}
		if !slices.Contains(templatePaths, p) {
			return nil, toStatus(&FieldError{Field: "update_mask",
				Reason: fmt.Sprintf("path %q cannot be updated; allowed: %s", p, strings.Join(templatePaths, ", "))})
		}
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out, nil
}

// toStatus maps the domain's errors to statuses, once. Other errors pass
// on to grpcx's mapping (database kinds, or INTERNAL).
func toStatus(err error) error {
	var (
		fe *FieldError
		me *customerMergedError
	)
	switch {
	case errors.As(err, &fe):
		return grpcx.InvalidArgument(grpcx.FieldViolation{Field: fe.Field, Description: fe.Reason})
	case errors.Is(err, errTemplateNotFound):
		return grpcx.NotFound("outreach template")
	case errors.Is(err, errDeliveryNotFound):
		return grpcx.NotFound("outreach delivery")
	case errors.Is(err, errCustomerNotFound):
		st := status.New(codes.NotFound, "customer not found")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ErrorReasonCustomerUnknown, Domain: grpcx.ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, errKeyTaken):
		st := status.New(codes.AlreadyExists, "the tenant has a template with this key")
		if d, derr := st.WithDetails(
			&errdetails.ErrorInfo{Reason: ErrorReasonTemplateKeyTaken, Domain: grpcx.ErrorDomain},
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
				{Field: "outreach_template.key", Description: "is taken by another template"}}},
		); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, errRequestIDReused):
		return grpcx.InvalidArgumentReason(idem.ReasonKeyReused, grpcx.FieldViolation{Field: "request_id",
			Description: "was used for another outreach (customer, template or purpose)"})
	case errors.As(err, &me):
		return lifecycle.MergedError(me.id, me.into)
	case errors.Is(err, errRequestIDRace):
		return status.Error(codes.Aborted, "the request id is being used by a concurrent call; retry")
	}
	return err
}
