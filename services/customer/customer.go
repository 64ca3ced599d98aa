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

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	customerv1 "github.com/rapporthq/rapport/pkg/gen/rapport/customer/v1"
	"github.com/rapporthq/rapport/pkg/inbox"
	"github.com/rapporthq/rapport/pkg/natsx"
	"github.com/rapporthq/rapport/pkg/service"
	"github.com/rapporthq/rapport/services/customer/internal/care"
	"github.com/rapporthq/rapport/services/customer/internal/consent"
	"github.com/rapporthq/rapport/services/customer/internal/insight"
	"github.com/rapporthq/rapport/services/customer/internal/lifecycle"
	"github.com/rapporthq/rapport/services/customer/internal/outreach"
	"github.com/rapporthq/rapport/services/customer/internal/pii"
	"github.com/rapporthq/rapport/services/customer/internal/privacy"
	"github.com/rapporthq/rapport/services/customer/internal/profile"
	"github.com/rapporthq/rapport/services/customer/internal/purchase"
	"github.com/rapporthq/rapport/services/customer/internal/server"
	"github.com/rapporthq/rapport/services/customer/internal/store"
	"github.com/rapporthq/rapport/services/customer/internal/timeline"
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
	timeline  *timeline.Server
	care      *care.Server
	outreach  *outreach.Server
	insight   *insight.Server
	privacy   *privacy.Server

	// Background work, started by Run; the consumers are nil without
	// JetStream.
	projector      *timeline.Projector
	tickets        *inbox.Consumer
	careDue        *inbox.Consumer
	js             jetstream.JetStream
	streamReplicas int
	recompute      time.Duration
	careEvery      time.Duration
	recommendEvery time.Duration
	relay          *service.Relay
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

	// CareSchedule is how often the care calendar looks for occasions
	// that have fallen due; 0 means 1 min.
	CareSchedule time.Duration

	// RecommendationRefresh is how often each tenant's item co-occurrence
	// counts are rebuilt; 0 means 6 h.
	RecommendationRefresh time.Duration

	// StreamReplicas is the replica count of another service's stream this
	// service must create because that service has not started yet
	// (RAPPORT_NATS_REPLICAS); below 1 means 1.
	StreamReplicas int

	// Outreach configures the delivery drivers (SMTP, webhooks) and their
	// retries. A channel without a driver cannot send.
	Outreach OutreachConfig

	// MasterKey wraps every tenant's keys, which wrap every customer's data
	// key (DESIGN.md §3 Data): MasterKeySize random bytes, from
	// RAPPORT_MASTER_KEY (base64, see ParseMasterKey). Required: there is
	// no default and no fallback. Every replica must have the same key;
	// losing or changing it makes all personal data unreadable. For
	// development, LoadOrCreateDevMasterKey keeps one in the data dir; tests
	// pass GenerateMasterKey's.
	MasterKey []byte
}

// OutreachConfig configures outreach delivery; its fields carry the
// RAPPORT_OUTREACH_* names they are read from.
type OutreachConfig = outreach.Config

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
	purchases := purchase.NewServer(deps.Pool, deps.Now)
	purchases.Logger = deps.Logger
	consents := consent.NewServer(deps.Pool, deps.Now)
	timelines := timeline.NewServer(deps.Pool, sealer, deps.Now)
	cares := care.NewServer(deps.Pool, sealer, deps.Now)
	cares.Logger = deps.Logger
	out, err := outreach.New(deps.Pool, sealer, cfg.Outreach, deps.Now, deps.Logger)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := out.Instrument(deps.Registerer); err != nil {
		return nil, fmt.Errorf("%s: outreach metrics: %w", Name, err)
	}
	insights := insight.NewServer(deps.Pool, deps.Now)
	insights.Logger = deps.Logger

	// Every package holding data about a customer takes part in a merge,
	// an export and an erasure (package lifecycle).
	timelineSteps, careSteps, outreachSteps := timeline.NewLifecycle(sealer), cares.Lifecycle(), out
	repo := store.New(sealer)
	profiles := profile.NewService(repo, deps.Now,
		purchases.Merger(), consents.Merger(), timelineSteps, careSteps, outreachSteps)
	api := server.New(deps.Pool, profiles, sealer)
	consents.SetSuppressor(privacy.NewSuppressions(sealer, repo))
	privacies, err := privacy.NewServer(privacy.Deps{Pool: deps.Pool, Sealer: sealer, Profiles: repo,
		Profile: api.ProfileExporter(), Now: deps.Now,
		Exporters: []lifecycle.Exporter{consents.Privacy(), purchases.Privacy(), timelineSteps, careSteps, outreachSteps},
		Erasers:   []lifecycle.Eraser{consents.Privacy(), purchases.Privacy(), timelineSteps, careSteps, outreachSteps}})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}

	s := &Service{grpc: api, consent: consents, purchases: purchases, timeline: timelines, care: cares,
		outreach: out, insight: insights, privacy: privacies, relay: relay,
		recompute:      orDefault(cfg.SegmentRecompute, 6*time.Hour),
		careEvery:      orDefault(cfg.CareSchedule, time.Minute),
		recommendEvery: orDefault(cfg.RecommendationRefresh, 6*time.Hour)}
	if deps.JetStream != nil {
		s.js, s.streamReplicas = deps.JetStream, cfg.StreamReplicas
		s.projector, err = timeline.NewProjector(deps.Pool, deps.JetStream, timeline.ProjectorConfig{
			Logger: deps.Logger, Registerer: deps.Registerer, Now: deps.Now, StreamReplicas: cfg.StreamReplicas})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		s.tickets, err = cares.TicketConsumer(deps.JetStream, inbox.Config{Logger: deps.Logger, Registerer: deps.Registerer})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
		// Due care occasions become outreach where the tenant set a
		// template for their kind.
		s.careDue, err = out.CareConsumer(deps.JetStream, inbox.Config{Logger: deps.Logger, Registerer: deps.Registerer}, cares)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", Name, err)
		}
	}
	return s, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
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
	s.timeline.Register(srv)
	s.care.Register(srv)
	s.outreach.Register(srv)
	s.insight.Register(srv)
	s.privacy.Register(srv)
}

// Run relays the service's events, projects other services' events onto
// the timeline, and runs the schedules (segments, care calendar,
// recommendations) and the outreach worker until ctx ends. Any of them
// failing stops all.
func (s *Service) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return s.relay.Run(ctx) })
	loop := func(what string, run func(context.Context) error) {
		g.Go(func() error {
			if err := run(ctx); err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s %s: %w", Name, what, err)
			}
			return nil
		})
	}
	loop("segment recompute", func(ctx context.Context) error { return s.purchases.RunRecompute(ctx, s.recompute) })
	loop("care calendar", func(ctx context.Context) error { return s.care.Run(ctx, s.careEvery) })
	loop("recommendation refresh", func(ctx context.Context) error { return s.insight.RunRefresh(ctx, s.recommendEvery) })
	loop("outreach worker", s.outreach.Run)
	if s.projector != nil {
		loop("timeline projection", s.projector.Run)
	}
	if s.tickets != nil {
		loop("care ticket consumer", func(ctx context.Context) error {
			// The ticket service may not have started yet.
			if err := natsx.EnsureStreamExists(ctx, s.js, "ticket", s.streamReplicas); err != nil {
				return err
			}
			return s.tickets.Run(ctx)
		})
	}
	if s.careDue != nil {
		loop("care outreach", s.careDue.Run)
	}
	return g.Wait()
}
