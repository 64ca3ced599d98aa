// Package customer is the customer service: who a company's customers are and
// how to reach them. This file is its only public surface: the rapport
// binary builds it with New, registers it on a gRPC server and runs it.
package customer

import (
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
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
	grpc      *server.Server
	consent   *consent.Server
	purchases *purchase.Server
	recompute time.Duration
	relay     *service.Relay
}

// ConsentServiceName is the consent and contact-governor API's gRPC name.
const ConsentServiceName = consent.ServiceName

// Config is the customer service's configuration: what every service takes,
// plus the master key of its personal data.
type Config struct {
	service.Config

	// SegmentRecompute is how often every tenant's RFM segments are
	// recomputed (recency changes with time alone); 0 means 6 h. Each
	// purchase also recomputes its customer at once.
	SegmentRecompute time.Duration

	// MasterKey wraps every tenant's keys, which wrap every customer's data
	// key (DESIGN.md §3 Data): MasterKeySize random bytes, from
	// RAPPORT_MASTER_KEY (base64, see ParseMasterKey). Required: there is
	// no default and no fallback. Every replica must have the same key;
	// losing or changing it makes all personal data unreadable. For
	// development, LoadOrCreateDevMasterKey keeps one in the data dir; tests
	// pass GenerateMasterKey's.
	MasterKey []byte
}

// MasterKeySize is the length of Config.MasterKey in bytes.
const MasterKeySize = pii.MasterKeySize

// New builds the service. It does not touch the database or NATS.
func New(_ context.Context, deps service.Deps, cfg Config) (*Service, error) {
	if len(cfg.MasterKey) == 0 {
		return nil, errors.New(Name + ": Config.MasterKey is required (RAPPORT_MASTER_KEY: 32 random bytes, base64)")
	}
	relay, err := service.NewRelay(Name, deps, cfg.Config)
	if err != nil {
		return nil, err
	}
	sealer, err := pii.New(deps.Pool, pii.Config{MasterKey: cfg.MasterKey, Now: deps.Now})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	profiles := profile.NewService(store.New(sealer), deps.Now)
	every := cfg.SegmentRecompute
	if every == 0 {
		every = 6 * time.Hour
	}
	purchases := purchase.NewServer(deps.Pool, deps.Now)
	purchases.Logger = deps.Logger
	return &Service{grpc: server.New(deps.Pool, profiles, sealer),
		consent:   consent.NewServer(deps.Pool, deps.Now),
		purchases: purchases,
		recompute: every, relay: relay}, nil
}

// GenerateMasterKey returns a new random master key (tests, and
// `openssl rand -base64 32` without openssl).
func GenerateMasterKey() ([]byte, error) { return pii.GenerateMasterKey() }

// ParseMasterKey decodes a master key given as base64 (standard or URL
// alphabet, padded or not), as RAPPORT_MASTER_KEY carries it. The error never
// echoes the value.
func ParseMasterKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != MasterKeySize {
				return nil, fmt.Errorf("master key: must be %d bytes, got %d", MasterKeySize, len(k))
			}
			return k, nil
		}
	}
	return nil, errors.New("master key: not base64")
}

// devMasterKeyFile is the development master key's file name.
const devMasterKeyFile = "master.key"

// LoadOrCreateDevMasterKey returns the development master key kept in dir
// (base64, mode 0600), creating it on first use; processes starting together
// agree on one key. Never for production: the key sits beside the data.
func LoadOrCreateDevMasterKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create dev master key directory: %w", err)
	}
	path := filepath.Join(dir, devMasterKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		return ParseMasterKey(string(b))
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read dev master key: %w", err)
	}
	k, err := GenerateMasterKey()
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, devMasterKeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("write dev master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(base64.StdEncoding.EncodeToString(k) + "\n"); err != nil {
		_ = tmp.Close()
		return nil, fmt.Errorf("write dev master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write dev master key: %w", err)
	}
	// A hard link never replaces an existing file: of two processes racing
	// here, the second reads the first one's key.
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read dev master key: %w", err)
		}
		return ParseMasterKey(string(b))
	} else if err != nil {
		return nil, fmt.Errorf("install dev master key: %w", err)
	}
	return k, nil
}

// Register adds the service's gRPC API to srv.
func (s *Service) Register(srv grpc.ServiceRegistrar) {
	customerv1.RegisterCustomerServiceServer(srv, s.grpc)
	s.consent.Register(srv)
	s.purchases.Register(srv)
}

// Run relays the service's events and recomputes segments on schedule until
// ctx ends. Either failing stops both.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.relay.Run(ctx) })
	g.Go(func() error {
		if err := s.purchases.RunRecompute(ctx, s.recompute); err != nil && ctx.Err() == nil {
			return fmt.Errorf("%s segment recompute: %w", Name, err)
		}
		return nil
	})
	return g.Wait()
}
