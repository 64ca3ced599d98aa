package apikey

import (
	"context"
	"errors"
	"strings"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/rapporthq/rapport/pkg/authn"
)

// unauthenticatedMessage is the only message a refused caller sees. It is
// the JWT verifier's message too, so a caller cannot tell which check
// refused it, nor why.
const unauthenticatedMessage = "missing or invalid bearer token"

// AuthFunc returns the go-grpc-middleware auth function for calls bearing
// either credential: a bearer token starting with "rk_" is verified as an
// API key by keys, anything else (including no token) is left to jwt.
//
// A refused key gets codes.Unauthenticated with one fixed message; the reason
// goes to keys' logger at debug level, naming the key id only. When the keys
// cannot be read (the database is unreachable) the call gets
// codes.Unavailable instead: the key may be fine, and a client should retry
// rather than discard it.
func AuthFunc(jwt auth.AuthFunc, keys *Verifier) auth.AuthFunc {
	return func(ctx context.Context) (context.Context, error) {
		raw, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil || !strings.HasPrefix(raw, Prefix) {
			return jwt(ctx)
		}
		p, err := keys.Verify(ctx, raw)
		switch {
		case err == nil:
			return authn.NewContext(ctx, p), nil
		case errors.Is(err, authn.ErrUnauthenticated):
			keys.log.DebugContext(ctx, "call refused: api key rejected", "error", err.Error())
			return nil, status.Error(codes.Unauthenticated, unauthenticatedMessage)
		case ctx.Err() != nil:
			return nil, ctx.Err() // the caller gave up; mapped to its own code
		default:
			keys.log.WarnContext(ctx, "call refused: api keys unavailable", "error", err.Error())
			return nil, status.Error(codes.Unavailable, "authentication temporarily unavailable; retry")
		}
	}
}
