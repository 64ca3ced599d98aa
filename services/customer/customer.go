// Package customer is the customer service: who a company's customers are and
// how to reach them. This file is its only public surface: the rapport
// binary builds it with New, registers it on a gRPC server and runs it.
package customer

import (
	"context"
	"embed"
	"io/fs"

	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/server"
	"github.com/rapporthq/rapport/services/customer/internal/store"
)

// Name is the service's name: its schema, its stream's subject token and its
// target name.
const Name = "customer"

// ServiceName is the gRPC service it registers.
const ServiceName = "rapport.customer.v1.CustomerService"

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the service's goose migrations.
func Migrations() fs.FS {
	sub, _ := fs.Sub(migrationFiles, "migrations")
	return sub
}

// Service is the customer service.
type Service struct {
	grpc  *server.Server
	relay *service.Relay
}

// New builds the service. It does not touch the database or NATS.
func New(_ context.Context, deps service.Deps, cfg service.Config) (*Service, error) {
	relay, err := service.NewRelay(Name, deps, cfg)
	if err != nil {
		return nil, err
	}
	profiles := profile.NewService(store.New(), deps.Now)
	return &Service{grpc: server.New(deps.Pool, profiles), relay: relay}, nil
}

// Register adds the service's gRPC API to srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterCustomerServiceServer(srv, s.grpc)
}

// Run relays the service's events until ctx ends.
func (s *Service) Run(ctx context.Context) error { return s.relay.Run(ctx) }
