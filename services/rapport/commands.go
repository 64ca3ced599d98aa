package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/sethvargo/go-envconfig"

	"github.com/rapporthq/rapport/pkg/authn"
	"github.com/rapporthq/rapport/services/rapport/internal/compose"
)

var errHelp = errors.New("help shown")

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// loadConfig reads the environment, applies -target and the adjustments,
// and validates.
func loadConfig(ctx context.Context, lookup func(string) (string, bool), target string, adjust ...func(*compose.Config)) (compose.Config, error) {
	cfg, err := compose.Load(ctx, envconfig.LookuperFunc(lookup))
	if err != nil {
		return cfg, usageError{err}
	}
	if target != "" {
		cfg.Targets = target
	}
	for _, a := range adjust {
		a(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, usageError{err}
	}
	return cfg, nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "comma list of targets: all, customer, ticket, loyalty, survey, gateway (default RAPPORT_TARGETS or all)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration (secrets masked) and exit")
	verifyConfig := fs.Bool("verify-config", false, "validate the configuration and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(ctx, lookup, *target)
	if *printConfig {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(cfg.Redacted())
		return err
	}
	if err != nil || *verifyConfig {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)
	sys, err := compose.Build(ctx, cfg, logger, compose.Options{})
	if err != nil {
		return err
	}
	return sys.Run(ctx)
}

func migrate(ctx context.Context, args []string, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	target := fs.String("target", "", "targets whose schemas to migrate (default RAPPORT_TARGETS or all)")
	if err := parse(fs, args); err != nil {
		return err
	}
	// Migrations need no credentials configuration; check only what they use.
	cfg, err := loadConfig(ctx, lookup, *target, func(c *compose.Config) {
		c.Auth.Dev = c.Auth.JWKSFile == "" && c.Auth.JWKSURL == ""
	})
	if err != nil {
		return err
	}
	return compose.Migrate(ctx, cfg, newLogger(stderr, cfg.LogLevel))
}

func token(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tenant := fs.String("tenant", compose.DevTenantID, "tenant id (UUID)")
	subject := fs.String("subject", "dev", "subject (who the token speaks for)")
	roles := fs.String("roles", "admin", "comma list of roles: admin, supervisor, agent, marketer, analyst, service")
	ttl := fs.Duration("ttl", 12*time.Hour, "lifetime")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := compose.Load(ctx, envconfig.LookuperFunc(lookup))
	if err != nil {
		return usageError{err}
	}
	key, err := compose.DevKey(cfg)
	if err != nil {
		return err
	}
	var rs []string
	for _, r := range strings.Split(*roles, ",") {
		if r = strings.TrimSpace(r); r != "" {
			rs = append(rs, r)
		}
	}
	tok, err := key.Mint(authn.MintOptions{Issuer: cfg.Auth.Issuer, Audience: cfg.Auth.Audience,
		Subject: *subject, TenantID: *tenant, Roles: rs, TTL: *ttl})
	if err != nil {
		return usageError{err}
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
