// Package loyalty is the loyalty service. Today it is the skeleton every later issue
// fills in: it owns the loyalty schema (migrated at start), registers
// LoyaltyService on the gRPC server and relays its outbox to JetStream.
package loyalty

import (
	"context"
	"embed"
	"io/fs"

	"google.golang.org/grpc"

	loyaltyv1 "github.com/rapporthq/rapport/pkg/gen/rapport/loyalty/v1"
	"github.com/rapporthq/rapport/pkg/service"
)

// Name is the service's name: its schema, subject token and target name.
const Name = "loyalty"

// ServiceName is the gRPC service it registers.
const ServiceName = "rapport.loyalty.v1.LoyaltyService"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's goose migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrationFiles, "migrations")
	return sub
}

// Service is the loyalty service.
type Service struct {
	loyaltyv1.UnimplementedLoyaltyServiceServer
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
	loyaltyv1.RegisterLoyaltyServiceServer(srv, s)
}

// Run relays the service's events until ctx ends.
func (s *Service) Run(ctx context.Context) error { return s.relay.Run(ctx) }
