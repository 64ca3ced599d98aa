package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/rs/cors"
)

// CORS lets browsers on allowedOrigins call next cross-origin.
//
// An entry is an exact origin, scheme://host[:port] as browsers send it in
// the Origin header ("https://app.example.com"), compared case-insensitively;
// or "*" as the only entry, meaning any origin. Credentials (cookies, TLS
// client certificates) are never allowed, "*" included: the API
// authenticates with a bearer token the page sends itself, so nothing ambient
// should ride along.
//
// An empty list allows no cross-origin calls: next is returned unchanged and
// no response carries a CORS header, so browsers refuse cross-origin reads.
// So does a list CheckCORSOrigins refuses: it fails closed, never open.
// Configuration should call CheckCORSOrigins first and report the error.
//
// Preflights from an allowed origin are answered 204 here and never reach
// next (they carry no credentials, so authentication would refuse them).
// The exposed headers let scripts read the request id and the rate-limit
// fields, including on a 429.
func CORS(allowedOrigins []string, next http.Handler) http.Handler {
	origins, anyOrigin, err := parseOrigins(allowedOrigins)
	if err != nil || (len(origins) == 0 && !anyOrigin) {
		return next
	}
	opts := cors.Options{
		AllowedMethods: []string{
			http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodOptions,
		},
		AllowedHeaders: []string{
			"Authorization", "Content-Type", IdempotencyKeyHeader, "X-Request-Id", "traceparent", "tracestate",
		},
		ExposedHeaders: []string{
			"X-Request-Id", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
		},
		MaxAge:           600,
		AllowCredentials: false,
	}
	if anyOrigin {
		opts.AllowedOrigins = []string{"*"}
	} else {
		// A function rather than AllowedOrigins, which would read "*" inside
		// an entry as a wildcard; parseOrigins has refused those anyway.
		opts.AllowOriginFunc = func(origin string) bool {
			_, ok := origins[strings.ToLower(origin)]
			return ok
		}
	}
	return cors.New(opts).Handler(next)
}

// CheckCORSOrigins reports what is wrong with a CORS origin list, naming the
// entry: "*" mixed with origins, and anything that is not a bare http or
// https origin (paths, a trailing slash, wildcards, "null").
func CheckCORSOrigins(allowedOrigins []string) error {
	_, _, err := parseOrigins(allowedOrigins)
	return err
}

// parseOrigins returns the allowed origins, lower-cased, or anyOrigin for a
// lone "*". Blank entries (a trailing comma in the variable) are skipped.
func parseOrigins(list []string) (origins map[string]struct{}, anyOrigin bool, err error) {
	var entries []string
	for _, raw := range list {
		if o := strings.TrimSpace(raw); o != "" {
			entries = append(entries, o)
		}
	}
	origins = map[string]struct{}{}
	var errs []error
	for _, o := range entries {
		if o == "*" {
			if len(entries) != 1 {
				errs = append(errs, errors.New(`"*" must be the only entry`))
			}
			anyOrigin = true
			continue
		}
		if err := checkOrigin(o); err != nil {
			errs = append(errs, fmt.Errorf("%q: %w", o, err))
			continue
		}
		origins[strings.ToLower(o)] = struct{}{}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, false, fmt.Errorf("CORS allowed origins: %w", err)
	}
	return origins, anyOrigin, nil
}

func checkOrigin(o string) error {
	if strings.Contains(o, "*") {
		return errors.New(`wildcards are not supported; list each origin, or use "*" alone`)
	}
	u, err := url.Parse(o)
	if err != nil {
		return errors.New("not a URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("must start with https:// or http://")
	case u.Host == "" || u.Hostname() == "":
		return errors.New("has no host")
	case u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return errors.New("must be scheme://host[:port] only, without a path, a trailing slash, a query or credentials")
	}
	return nil
}
