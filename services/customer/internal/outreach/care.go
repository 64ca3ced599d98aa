package outreach

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/outreach/store"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
)

// Due care occasions become outreach (DESIGN.md §4 customer): the consumer
// of rapport.customer.care.due sends each occasion whose kind the tenant
// gave a template in its care settings, exactly as SendOutreach does (the
// governor with purpose CARE, sealed content, the delivery log, events).
const (
	// SubjectCareDue is the care calendar's event (package care publishes
	// it; outreach does not import care).
	SubjectCareDue = "rapport.customer.care.due"
	// CareConsumerName is the durable consumer (and inbox consumer) name.
	CareConsumerName = "customer-outreach-care-due"
	// CareActor is the principal the governor records for care touches.
	CareActor = "care-calendar"
)

// Care template variables: the fixed set a template sent for a care
// occasion may use, e.g. "Happy birthday, {{.DisplayName}}!". Any other
// variable fails the render (missingkey=error): a FAILED delivery with
// reason render_failed.
const (
	// VarDisplayName is the customer's display name, opened from the
	// profile at send time (never stored in plaintext).
	VarDisplayName = "DisplayName"
	// VarOccasionKind is birthday, holiday, anniversary,
	// purchase_follow_up or ticket_follow_up.
	VarOccasionKind = "OccasionKind"
	// VarOccasionDate is the occasion's local date, YYYY-MM-DD.
	VarOccasionDate = "OccasionDate"
	// VarHolidayName is the holiday's name for a holiday occasion; empty
	// for the other kinds and for a holiday deleted since.
	VarHolidayName = "HolidayName"
)

// careRequestNamespace derives a delivery's request id from its occasion
// id (UUIDv5), so the same occasion never makes a second delivery, and no
// request id a caller of SendOutreach picks at random meets it.
var careRequestNamespace = uuid.MustParse("5e0c1a52-7c3b-4c55-9a53-0a4f8f3c2b71")

// CareRequestID is the request id of the delivery an occasion makes.
func CareRequestID(occasionID uuid.UUID) uuid.UUID {
	return uuid.NewSHA1(careRequestNamespace, occasionID[:])
}

// CareSettings is what the consumer reads from the care calendar (package
// care's *Server implements it), in the consumer's transaction.
type CareSettings interface {
	// OutreachTemplate is the template key the tenant sends occasions of
	// kind with; "" for none.
	OutreachTemplate(ctx context.Context, tx pgx.Tx, tenant uuid.UUID, kind customerv1.CareOccasionKind) (string, error)
	// HolidayName is the name of the tenant's holiday; "" if it has none
	// with that id.
	HolidayName(ctx context.Context, tx pgx.Tx, tenant, holiday uuid.UUID) (string, error)
}

// careOccasion is what a care delivery's variables come from besides the
// profile.
type careOccasion struct {
	kind        string
	date        string
	holidayName string
}

// variables are the care template variables for the customer, whose
// display name is opened with key.
func (o *careOccasion) variables(key *pii.CustomerKey, c store.Contact) (map[string]string, error) {
	name := ""
	if len(c.DisplayNameSealed) > 0 {
		pt, err := key.Open(pii.DisplayName, c.DisplayNameSealed)
		if err != nil {
			return nil, err
		}
		name = string(pt)
	}
	return map[string]string{
		VarDisplayName: name, VarOccasionKind: o.kind, VarOccasionDate: o.date, VarHolidayName: o.holidayName,
	}, nil
}

// CareConsumer returns the consumer of rapport.customer.care.due on the
// service's own stream. cfg's Consumer, Stream and FilterSubjects are set
// here; the rest (workers, logger, registerer) is the caller's. Each event
// counts once (pkg/inbox: the delivery and the inbox row commit together),
// and a copy of an event under another id finds the delivery its
// occasion's request id already made.
func (s *Server) CareConsumer(js jetstream.JetStream, cfg inbox.Config, settings CareSettings) (*inbox.Consumer, error) {
	if settings == nil {
		return nil, errors.New("outreach: care consumer needs the care settings")
	}
	cfg.Consumer = CareConsumerName
	cfg.Stream = natsx.StreamName("customer")
	cfg.FilterSubjects = []string{SubjectCareDue}
	return inbox.New(s.pool, js, cfg, func(ctx context.Context, tx pgx.Tx, m inbox.Message) error {
		return s.handleCareDue(ctx, tx, m, settings)
	})
}

// handleCareDue sends the occasion's message if the tenant's settings name
// a template for its kind; nothing otherwise. An event that does not decode
// or lacks its ids can never apply: it is parked. A customer unknown,
// erased or merged since the occasion fired is skipped: there is no one to
// send to.
func (s *Server) handleCareDue(ctx context.Context, tx pgx.Tx, m inbox.Message, settings CareSettings) error {
	ev := &customerv1.CareDue{}
	if err := proto.Unmarshal(m.Data, ev); err != nil {
		return inbox.Permanent(fmt.Errorf("decode CareDue: %w", err))
	}
	tenant, err := uuid.Parse(ev.GetTenantId())
	if err != nil {
		return inbox.Permanent(errors.New("CareDue: tenant_id is not a UUID"))
	}
	if m.TenantID != "" && m.TenantID != ev.GetTenantId() {
		return inbox.Permanent(errors.New("CareDue: tenant header and payload differ"))
	}
	occasion, err := uuid.Parse(ev.GetOccasionId())
	if err != nil {
		return inbox.Permanent(errors.New("CareDue: occasion_id is not a UUID"))
	}
	customer, err := uuid.Parse(ev.GetCustomerId())
	if err != nil {
		return inbox.Permanent(errors.New("CareDue: customer_id is not a UUID"))
	}
	kind := ev.GetKind()
	if _, ok := customerv1.CareOccasionKind_name[int32(kind)]; !ok || kind == customerv1.CareOccasionKind_CARE_OCCASION_KIND_UNSPECIFIED {
		return inbox.Permanent(errors.New("CareDue: unknown kind"))
	}

	key, err := settings.OutreachTemplate(ctx, tx, tenant, kind)
	if err != nil {
		return err
	}
	if key == "" {
		return nil
	}
	o := &careOccasion{
		kind: strings.ToLower(strings.TrimPrefix(kind.String(), "CARE_OCCASION_KIND_")),
		date: ev.GetOccasionDate(),
	}
	if kind == customerv1.CareOccasionKind_CARE_OCCASION_KIND_HOLIDAY {
		if holiday, err := uuid.Parse(ev.GetReferenceId()); err == nil {
			if o.holidayName, err = settings.HolidayName(ctx, tx, tenant, holiday); err != nil {
				return err
			}
		}
	}
	var created store.Delivery
	d, err := s.send(ctx, tx, who{tenant: tenant, subject: CareActor}, sendRequest{
		customerID: customer, templateKey: key, purpose: consent.PurposeCare,
		requestID: CareRequestID(occasion), care: o, created: &created,
	})
	switch {
	case errors.Is(err, errCustomerNotFound), errors.Is(err, errCustomerMerged):
		s.log.InfoContext(ctx, "care occasion not sent: customer gone", "tenant_id", tenant.String(),
			"occasion_id", occasion.String(), "customer_id", customer.String())
		return nil
	case err != nil:
		return err
	}
	// Counted before the inbox commits the handler's transaction: a commit
	// that fails (rare) and the redelivery that follows count it twice.
	if created.ID != uuid.Nil {
		s.metrics.outcome(created)
	}
	s.log.DebugContext(ctx, "care occasion delivery", "tenant_id", tenant.String(), "occasion_id", occasion.String(),
		"delivery_id", d.ID.String(), "status", d.Status, "reason", d.FailureReason)
	return nil
}
