// Package privacy answers customers' data-protection rights: PrivacyService
// exports everything the customer service holds about a customer
// (ExportCustomer), erases a customer by crypto-shredding (EraseCustomer),
// and lists the audit log of personal data (ListAuditEvents; package audit
// writes it). It also keeps the suppression list an erasure leaves behind
// (Suppressions), which the outreach and consent code consult before a
// marketing contact.
//
// Every package that holds data about a customer takes part through the
// lifecycle interfaces: the server runs each registered Exporter in the
// export's snapshot and each Eraser in the erasure's transaction, so a new
// table is exported and erased by the package that owns it.
//
// Guarantees, and where they come from:
//   - An erasure commits whole or not at all: the key deletion, the cleared
//     columns, every Eraser, the suppression entries, the audit row and the
//     customer.erased event share one transaction, under the customer's row
//     lock.
//   - Erasing is idempotent by state, not only by request id: the first
//     erasure sets erase_time; any later call (any request id) finds it and
//     returns the same response without writing anything but its audit row.
//   - An export reads one REPEATABLE READ snapshot: its sections agree.
//
// It must not put personal data into logs, errors, events or the audit log.
package privacy

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/grpcx"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/store"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
)

// ServiceName is the gRPC service Register adds.
const ServiceName = "rapport.customer.v1.PrivacyService"

// Event subject and aggregate of an erasure, per DESIGN.md.
const (
	SubjectErased = "rapport.customer.customer.erased"
	aggregateType = "customer"
)

// ProfileSection is the export section of the profile itself.
const ProfileSection = "profile"

// Deps is what the server needs.
type Deps struct {
	// Pool is the customer schema's pool.
	Pool *pgxpool.Pool
	// Sealer computes the suppression fingerprints.
	Sealer *pii.Sealer
	// Profiles reads profiles in clear (store.New(sealer)): an erasure
	// reads the contact addresses it suppresses before shredding them.
	Profiles profile.Repository
	// Profile exports the "profile" section of a customer not erased (the
	// CustomerService server, whose mapping of the profile it reuses).
	Profile lifecycle.Exporter
	// Exporters and Erasers are the other packages' steps, run in order.
	Exporters []lifecycle.Exporter
	Erasers   []lifecycle.Eraser
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Server implements customerv1.PrivacyServiceServer.
type Server struct {
	customerv1.UnimplementedPrivacyServiceServer
	pool      *pgxpool.Pool
	sealer    *pii.Sealer
	profiles  profile.Repository
	profile   lifecycle.Exporter
	exporters []lifecycle.Exporter
	erasers   []lifecycle.Eraser
	store     *store.Store
	now       func() time.Time
}

// NewServer returns a Server. Section names must be unique.
func NewServer(d Deps) (*Server, error) {
	if d.Pool == nil || d.Sealer == nil || d.Profiles == nil || d.Profile == nil {
		return nil, errors.New("privacy: Pool, Sealer, Profiles and Profile are required")
	}
	seen := map[string]bool{ProfileSection: true}
	for _, e := range d.Exporters {
		if seen[e.Section()] {
			return nil, fmt.Errorf("privacy: export section %q registered twice", e.Section())
		}
		seen[e.Section()] = true
	}
	now := d.Now
	if now == nil {
		now = time.Now
	}
	return &Server{pool: d.Pool, sealer: d.Sealer, profiles: d.Profiles, profile: d.Profile,
		exporters: d.Exporters, erasers: d.Erasers, store: store.New(), now: now}, nil
}

// Register adds PrivacyService to r.
func (s *Server) Register(r grpc.ServiceRegistrar) { customerv1.RegisterPrivacyServiceServer(r, s) }

// clock is now in UTC at the database's precision.
func (s *Server) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// toStatus maps the store's not-found; others pass on to grpcx's mapping.
func toStatus(err error) error {
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, profile.ErrNotFound) {
		return grpcx.NotFound("customer")
	}
	return err
}
