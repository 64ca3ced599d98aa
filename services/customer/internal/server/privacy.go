package server

import (
	"context"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/privacy/audit"
)

// ProfileExporter is the "profile" section of ExportCustomer: the profile
// as GetCustomer returns it, every personal field in clear, so the export
// never lags behind the API's mapping of the profile.
type ProfileExporter struct{ s *Server }

var _ lifecycle.Exporter = ProfileExporter{}

// ProfileExporter returns the profile section's exporter.
func (s *Server) ProfileExporter() ProfileExporter { return ProfileExporter{s: s} }

// Section is the export section's name.
func (ProfileExporter) Section() string { return "profile" }

// Export returns the profile of a customer that is not erased (the privacy
// server renders erased ones itself).
func (e ProfileExporter) Export(ctx context.Context, tx pgx.Tx, tenant, customer uuid.UUID) (proto.Message, error) {
	c, err := e.s.profiles.Get(ctx, tx, tenant, customer)
	if err != nil {
		return nil, err
	}
	return &customerv1.ProfileExport{Customer: toProto(c)}, nil
}

// personalFields names the personal fields set in c, for an audit row.
func personalFields(c proto.Message) []string {
	if c == nil {
		return []string{}
	}
	m := c.ProtoReflect()
	out := []string{}
	for _, name := range audit.ProfileFields {
		fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
		if fd != nil && m.Has(fd) {
			out = append(out, name)
		}
	}
	return out
}

// auditRead records a read of customers' profiles (on the pool: reads have
// no transaction), before the response is returned. A read that cannot be
// audited fails.
func (s *Server) auditRead(ctx context.Context, action audit.Action, ids []uuid.UUID) error {
	return audit.Record(ctx, s.pool, audit.Entry{Action: action, CustomerIDs: ids, Fields: audit.ProfileFields})
}
