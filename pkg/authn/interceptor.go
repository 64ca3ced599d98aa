package authn

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// unauthenticatedMessage is the only message a refused caller sees, whatever
// the reason: the reason helps an attacker more than an honest client, and it
// may quote header values. The reason goes to the debug log instead.
const unauthenticatedMessage = "missing or invalid bearer token"

// AuthFunc returns the go-grpc-middleware auth function: it reads
// "authorization: bearer <jwt>" from the incoming metadata, verifies it and
// stores the Principal in the handler's context. Every failure becomes
// codes.Unauthenticated with one fixed message.
func (v *Verifier) AuthFunc() auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		raw, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			v.log.DebugContext(ctx, "call refused: no bearer token")
			return nil, status.Error(codes.Unauthenticated, unauthenticatedMessage)
		}
		p, err := v.Verify(ctx, raw)
		if err != nil {
			v.log.DebugContext(ctx, "call refused: token rejected", slog.Any("error", err))
			return nil, status.Error(codes.Unauthenticated, unauthenticatedMessage)
		}
		return NewContext(ctx, p), nil
	}
}

// UnaryServerInterceptor authenticates every unary call except those whose
// full method public reports true (nil: none are public).
//
// The middleware lets a service that implements auth.ServiceAuthFuncOverride
// replace this check; Rapport's services must not implement it, and declare
// unauthenticated methods through public instead, so that they are listed in
// one place.
func UnaryServerInterceptor(v *Verifier, public func(fullMethod string) bool) grpc.UnaryServerInterceptor {
	return selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(v.AuthFunc()), requiresAuth(public))
}

// StreamServerInterceptor is UnaryServerInterceptor for streams.
func StreamServerInterceptor(v *Verifier, public func(fullMethod string) bool) grpc.StreamServerInterceptor {
	return selector.StreamServerInterceptor(auth.StreamServerInterceptor(v.AuthFunc()), requiresAuth(public))
}

func requiresAuth(public func(fullMethod string) bool) selector.Matcher {
	return selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return public == nil || !public(c.FullMethod())
	})
}

// PublicPrefixes returns a public-method predicate for the interceptors:
// a method is public when its full name starts with one of prefixes, such as
// "/grpc.health.v1.Health/" for a whole service. Prefixes are matched
// exactly, so end a service prefix with "/" to avoid matching a longer name.
func PublicPrefixes(prefixes ...string) func(fullMethod string) bool {
	prefixes = slices.Clone(prefixes) // the caller's slice may change later
	return func(fullMethod string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(fullMethod, p) {
				return true
			}
		}
		return false
	}
}
