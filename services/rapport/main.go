// Command rapport runs Rapport: `rapport serve` runs any set of targets (all
// of them by default) in one process, `rapport migrate` applies migrations,
// `rapport token` mints a development token.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

// usageError is a bad command line or configuration: exit status 2, before
// anything connects.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

const usage = `usage: rapport <command> [flags]

commands:
  serve     run targets (default: all) until SIGTERM
  migrate   apply the database migrations of the targets and exit
  token     mint a development token (RAPPORT_DEV key)

Configuration comes from RAPPORT_* environment variables; see
'rapport serve -print-config'. Run 'rapport <command> -h' for its flags.
`

// run is main without the exits, so tests can drive it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, lookup func(string) (string, bool)) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr, lookup)
	case "migrate":
		err = migrate(ctx, args[1:], stderr, lookup)
	case "token":
		err = token(ctx, args[1:], stdout, stderr, lookup)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "rapport: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "rapport %s: %v\n", args[0], ue.err)
		return 2
	default:
		fmt.Fprintf(stderr, "rapport %s: %v\n", args[0], err)
		return 1
	}
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
