// Package ticket is the ticket service. Today it is the skeleton every later issue
// fills in: it owns the ticket schema (migrated at start), registers
// TicketService on the gRPC server and relays its outbox to JetStream.
package ticket

import (
	"context"
	"embed"
	"io/fs"

	"google.golang.org/grpc"

	ticketv1 "github.com/rapporthq/rapport/pkg/gen/rapport/ticket/v1"
	"github.com/rapporthq/rapport/pkg/service"
)

// Name is the service's name: its schema, subject token and target name.
const Name = "ticket"

// ServiceName is the gRPC service it registers.
const ServiceName = "rapport.ticket.v1.TicketService"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's goose migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrationFiles, "migrations")
	return sub
}

// Service is the ticket service.
type Service struct {
	ticketv1.UnimplementedTicketServiceServer
	relay *service.Relay
}

// New builds the service. It does not touch the database or NATS.
func New(_ context.Context, deps service.Deps, cfg service.Config) (*Service, error) {
	relay, err := service.NewRelay(Name, deps, cfg)
	if err != nil {
		return nil, err
	}
	return &Service{relay: relay}, nil
}

// Register adds the service's gRPC API to srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	ticketv1.RegisterTicketServiceServer(srv, s)
}

// Run relays the service's events until ctx ends.
func (s *Service) Run(ctx context.Context) error { return s.relay.Run(ctx) }
