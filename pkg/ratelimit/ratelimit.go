// Package ratelimit owns Rapport's request rate limits: a token bucket per
// tenant and one per principal within a tenant, enforced by a gRPC unary
// interceptor. REST reaches the same gRPC server through the gateway, so both
// share one budget.
//
// Limits are per process. Nothing is shared between replicas: with N replicas
// behind a balancer the cluster-wide limit is about N times the configured
// one (exactly N times only if load spreads evenly). That is the intended
// trade: no network round trip and no shared store on the hot path, and a
// noisy tenant is still held to a fixed share of each replica.
//
// It must not decide who is calling: the key function passed to
// UnaryServerInterceptor reads the already-authenticated tenant and
// principal, and a call without one (a public method) is never limited.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/rapporthq/rapport/pkg/authn"
)

// Response header metadata keys. The gateway maps them to HTTP headers with
// HTTPHeader.
const (
	// RetryAfterKey is set on refused calls only: whole seconds, at least 1,
	// after which the call would pass (both buckets hold a token again).
	RetryAfterKey = "retry-after"
	// LimitKey, RemainingKey and ResetKey are the IETF draft RateLimit
	// header fields (draft-ietf-httpapi-ratelimit-headers), set on every
	// limited call, allowed or refused, for the tighter bucket.
	LimitKey     = "ratelimit-limit"
	RemainingKey = "ratelimit-remaining"
	ResetKey     = "ratelimit-reset"
)

// Defaults for a zero Config.
const (
	DefaultTenantRPS      = 100
	DefaultTenantBurst    = 200
	DefaultPrincipalRPS   = 20
	DefaultPrincipalBurst = 40
	DefaultIdleTTL        = 10 * time.Minute
)

// Config sets the buckets. Zero values are the defaults; Validate refuses
// negative and non-finite values, which New would otherwise treat as zero.
type Config struct {
	// TenantRPS refills each tenant's bucket, in calls per second; default 100.
	TenantRPS float64
	// TenantBurst is the tenant bucket's size; default 200.
	TenantBurst int
	// PrincipalRPS refills each principal's bucket; default 20.
	PrincipalRPS float64
	// PrincipalBurst is the principal bucket's size; default 40.
	PrincipalBurst int
	// IdleTTL is how long a bucket may go unused before it is dropped;
	// default 10 min. A bucket is never dropped before it has refilled
	// completely, so dropping one never hands out an extra burst.
	IdleTTL time.Duration
	// Now is the clock; nil means time.Now. Tests inject one.
	Now func() time.Time
}

// Validate reports settings New would silently replace by defaults.
func (c Config) Validate() error {
	for _, r := range []struct {
		name string
		v    float64
	}{{"tenant rps", c.TenantRPS}, {"principal rps", c.PrincipalRPS}} {
		if r.v < 0 || math.IsNaN(r.v) || math.IsInf(r.v, 0) {
			return fmt.Errorf("ratelimit: %s must be a finite non-negative number, got %v", r.name, r.v)
		}
	}
	if c.TenantBurst < 0 || c.PrincipalBurst < 0 {
		return fmt.Errorf("ratelimit: bursts must not be negative, got %d and %d", c.TenantBurst, c.PrincipalBurst)
	}
	if c.IdleTTL < 0 {
		return fmt.Errorf("ratelimit: idle TTL must not be negative, got %s", c.IdleTTL)
	}
	return nil
}

func (c Config) withDefaults() Config {
	valid := func(v float64) bool { return v > 0 && !math.IsInf(v, 0) }
	if !valid(c.TenantRPS) {
		c.TenantRPS = DefaultTenantRPS
	}
	if c.TenantBurst <= 0 {
		c.TenantBurst = DefaultTenantBurst
	}
	if !valid(c.PrincipalRPS) {
		c.PrincipalRPS = DefaultPrincipalRPS
	}
	if c.PrincipalBurst <= 0 {
		c.PrincipalBurst = DefaultPrincipalBurst
	}
	if c.IdleTTL <= 0 {
		c.IdleTTL = DefaultIdleTTL
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Limiter holds the buckets. It is safe for concurrent use and needs no
// goroutine: idle buckets are swept by the calls themselves.
//
// Locking: mu guards the maps and every bucket's lastUsed; a tenant's own
// mutex makes the decision over its bucket and its principals' buckets one
// atomic step, so a call refused by one bucket never takes a token from the
// other, and tenants do not queue behind each other while deciding.
type Limiter struct {
	cfg Config

	mu        sync.Mutex
	tenants   map[string]*tenantBuckets
	lastSweep time.Time

	refusedTenant    atomic.Uint64
	refusedPrincipal atomic.Uint64
	allowed          atomic.Uint64
}

type tenantBuckets struct {
	decide sync.Mutex // held while deciding over bucket and principals' buckets
	// decided is the latest time a decision used (guarded by decide). A call
	// that read the clock before another but decides after it uses this
	// time instead: rate.Limiter moves its clock back to an earlier time it
	// is given, and would then refill the same interval twice.
	decided    time.Time
	bucket     *rate.Limiter
	lastUsed   time.Time // guarded by Limiter.mu
	principals map[string]*principalBucket
}

type principalBucket struct {
	bucket   *rate.Limiter
	lastUsed time.Time // guarded by Limiter.mu
}

// New returns a Limiter with no buckets yet; each is made on first use, full.
func New(cfg Config) *Limiter {
	cfg = cfg.withDefaults()
	return &Limiter{cfg: cfg, tenants: map[string]*tenantBuckets{}, lastSweep: cfg.Now()}
}

// KeyFromPrincipal is the key function for Rapport's authentication: the
// verified principal's tenant and subject. Calls without a principal (public
// methods) are not limited.
func KeyFromPrincipal(ctx context.Context) (tenant, principal string, ok bool) {
	p, ok := authn.FromContext(ctx)
	if !ok {
		return "", "", false
	}
	return p.TenantID, p.Subject, true
}

// UnaryServerInterceptor limits every call key identifies. It belongs after
// authentication and authorization (key reads their result; a forbidden call
// spends none of the tenant's budget) and before anything that does work for
// the request. Refused calls return RESOURCE_EXHAUSTED with a
// google.rpc.RetryInfo, which the gateway renders as HTTP 429.
func (l *Limiter) UnaryServerInterceptor(key func(ctx context.Context) (tenant, principal string, ok bool)) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		tenant, principal, ok := key(ctx)
		if !ok {
			return h(ctx, req)
		}
		d := l.take(tenant, principal)
		_ = grpc.SetHeader(ctx, d.metadata())
		if !d.allowed {
			return nil, d.err()
		}
		return h(ctx, req)
	}
}

// bucketState is one bucket after the decision.
type bucketState struct {
	limit  int
	tokens float64
	rps    float64
}

func (b bucketState) remaining() int { return max(0, int(math.Floor(b.tokens))) }

// wait is how long until the bucket holds one token.
func (b bucketState) wait() time.Duration {
	if b.tokens >= 1 {
		return 0
	}
	return secondsToDuration((1 - b.tokens) / b.rps)
}

// reset is how long until the bucket is full again: the draft's "quota
// resets" mapped onto a token bucket, i.e. until Remaining equals Limit.
func (b bucketState) reset() time.Duration {
	return secondsToDuration((float64(b.limit) - b.tokens) / b.rps)
}

func secondsToDuration(s float64) time.Duration {
	if s <= 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// decision is the outcome of one call, with both buckets as they are after it.
type decision struct {
	allowed           bool
	tenant, principal bucketState
}

// tighter is the bucket the RateLimit fields describe: the one with fewer
// calls left, then the one that takes longer to give the next token, then
// the one that takes longer to refill. One set of fields cannot describe two
// buckets, and the tighter one is what the client runs into first; its
// Remaining never promises a call the other bucket would refuse.
func (d decision) tighter() bucketState {
	t, p := d.tenant, d.principal
	switch {
	case t.remaining() != p.remaining():
		if t.remaining() < p.remaining() {
			return t
		}
		return p
	case t.wait() != p.wait():
		if t.wait() > p.wait() {
			return t
		}
		return p
	case t.reset() >= p.reset():
		return t
	}
	return p
}

// retryAfter is when both buckets hold a token again, in whole seconds, at
// least 1 (HTTP Retry-After has no fractions, and 0 would invite a retry
// storm).
func (d decision) retryAfter() int64 {
	return ceilSeconds(max(d.tenant.wait(), d.principal.wait()), 1)
}

func ceilSeconds(dur time.Duration, least int64) int64 {
	return max(least, int64(math.Ceil(dur.Seconds())))
}

func (d decision) metadata() metadata.MD {
	b := d.tighter()
	md := metadata.Pairs(
		LimitKey, strconv.Itoa(b.limit),
		RemainingKey, strconv.Itoa(b.remaining()),
		ResetKey, strconv.FormatInt(ceilSeconds(b.reset(), 0), 10),
	)
	if !d.allowed {
		md.Set(RetryAfterKey, strconv.FormatInt(d.retryAfter(), 10))
	}
	return md
}

func (d decision) err() error {
	secs := d.retryAfter()
	st := status.New(codes.ResourceExhausted, fmt.Sprintf("rate limit exceeded; retry after %d s", secs))
	if s, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(secs) * time.Second)}); err == nil {
		st = s
	}
	return st.Err()
}

// take decides one call: it passes only when both buckets hold a token, and
// then takes one from each. Both are checked and taken under the tenant's
// mutex, which every call touching these buckets holds, so the check cannot
// go stale between reading and taking, and a refusal takes nothing.
func (l *Limiter) take(tenant, principal string) decision {
	now := l.cfg.Now()
	tb, pb := l.buckets(now, tenant, principal)

	tb.decide.Lock()
	defer tb.decide.Unlock()
	if now.Before(tb.decided) {
		now = tb.decided
	}
	tb.decided = now
	tt, pt := tb.bucket.TokensAt(now), pb.TokensAt(now)
	allowed := tt >= 1 && pt >= 1
	if allowed {
		// Cannot fail: both hold a token and nobody else decides on them now.
		tb.bucket.AllowN(now, 1)
		pb.AllowN(now, 1)
		tt, pt = tt-1, pt-1
		l.allowed.Add(1)
	} else if tt < 1 {
		l.refusedTenant.Add(1)
	} else {
		l.refusedPrincipal.Add(1)
	}
	return decision{
		allowed:   allowed,
		tenant:    bucketState{limit: l.cfg.TenantBurst, tokens: tt, rps: l.cfg.TenantRPS},
		principal: bucketState{limit: l.cfg.PrincipalBurst, tokens: pt, rps: l.cfg.PrincipalRPS},
	}
}

// buckets finds or makes the call's two buckets and marks them used, sweeping
// idle ones first when a sweep is due. Marking happens under mu, as the sweep
// does, so a bucket handed out here is never dropped before it is used.
func (l *Limiter) buckets(now time.Time, tenant, principal string) (*tenantBuckets, *rate.Limiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.cfg.IdleTTL/2 {
		l.sweep(now)
		l.lastSweep = now
	}
	tb, ok := l.tenants[tenant]
	if !ok {
		tb = &tenantBuckets{
			bucket:     rate.NewLimiter(rate.Limit(l.cfg.TenantRPS), l.cfg.TenantBurst),
			principals: map[string]*principalBucket{},
		}
		l.tenants[tenant] = tb
	}
	tb.lastUsed = now
	pb, ok := tb.principals[principal]
	if !ok {
		pb = &principalBucket{bucket: rate.NewLimiter(rate.Limit(l.cfg.PrincipalRPS), l.cfg.PrincipalBurst)}
		tb.principals[principal] = pb
	}
	pb.lastUsed = now
	return tb, pb.bucket
}

// sweep drops buckets unused for IdleTTL, or for as long as they take to
// refill if that is longer: a dropped bucket is full, so making it anew
// changes nothing. Every call uses its tenant's bucket, so a tenant idle that
// long has only idle principals and goes with them. Called with mu held; it
// costs one pass over the keys every IdleTTL/2, so the maps hold at most the
// keys used in the last 1.5 × IdleTTL (or refill time).
func (l *Limiter) sweep(now time.Time) {
	tenantIdle := max(l.cfg.IdleTTL, refillTime(l.cfg.TenantBurst, l.cfg.TenantRPS))
	principalIdle := max(l.cfg.IdleTTL, refillTime(l.cfg.PrincipalBurst, l.cfg.PrincipalRPS))
	for name, tb := range l.tenants {
		if now.Sub(tb.lastUsed) >= tenantIdle {
			delete(l.tenants, name)
			continue
		}
		for p, pb := range tb.principals {
			if now.Sub(pb.lastUsed) >= principalIdle {
				delete(tb.principals, p)
			}
		}
	}
}

func refillTime(burst int, rps float64) time.Duration {
	return secondsToDuration(float64(burst) / rps)
}

// size counts the buckets held: tenants and principals.
func (l *Limiter) size() (tenants, principals int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tb := range l.tenants {
		principals += len(tb.principals)
	}
	return len(l.tenants), principals
}

var (
	callsDesc = prometheus.NewDesc("rapport_ratelimit_calls_total",
		"Authenticated calls the rate limiter decided, by result: allowed, or refused by the tenant or the principal bucket.",
		[]string{"result"}, nil)
	bucketsDesc = prometheus.NewDesc("rapport_ratelimit_buckets",
		"Token buckets held in this process, by kind; idle ones are dropped.",
		[]string{"kind"}, nil)
)

// Describe implements prometheus.Collector: register the Limiter on a
// registry to export its refusals and the number of buckets it holds.
func (l *Limiter) Describe(ch chan<- *prometheus.Desc) {
	ch <- callsDesc
	ch <- bucketsDesc
}

// Collect implements prometheus.Collector.
func (l *Limiter) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.CounterValue, float64(l.allowed.Load()), "allowed")
	ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.CounterValue, float64(l.refusedTenant.Load()), "refused_tenant")
	ch <- prometheus.MustNewConstMetric(callsDesc, prometheus.CounterValue, float64(l.refusedPrincipal.Load()), "refused_principal")
	tenants, principals := l.size()
	ch <- prometheus.MustNewConstMetric(bucketsDesc, prometheus.GaugeValue, float64(tenants), "tenant")
	ch <- prometheus.MustNewConstMetric(bucketsDesc, prometheus.GaugeValue, float64(principals), "principal")
}

// HTTPHeader maps this package's response metadata keys to their HTTP header
// names, for the gateway's outgoing header matcher.
func HTTPHeader(key string) (string, bool) {
	switch key {
	case RetryAfterKey:
		return "Retry-After", true
	case LimitKey:
		return "RateLimit-Limit", true
	case RemainingKey:
		return "RateLimit-Remaining", true
	case ResetKey:
		return "RateLimit-Reset", true
	}
	return "", false
}
