// Package inflight caps the attempts in flight per subscription across every
// deliverer replica.
//
// Each subscription has a Redis sorted set of lease ids scored by the lease's
// expiry (unix milliseconds, Redis' clock: see redisclock). Acquire, in one Lua script, drops expired
// leases, counts the rest and adds a lease when the count is under the cap;
// Release removes the lease. A lease lives for the attempt timeout plus a
// margin, so a replica that crashes mid-attempt leaks its slots for at most
// that long.
//
// Each process also counts the leases it holds, of either kind. When Redis
// cannot be reached (or answers too late) the limiter degrades to that
// per-process count with the same cap: delivery goes on, one replica never
// exceeds the cap, but each replica allows it on its own (the endpoint may
// see up to replicas × cap while Redis is down). The fall-back is counted
// and logged (redisdown).
package inflight

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redisclock"
	"github.com/hookline/hookline/pkg/redisdown"
	admission "github.com/hookline/hookline/services/deliverer/internal/redisdown"
)

// DefaultMax is the cap of a subscription whose max_in_flight is 0, unless
// the operator sets another (HOOKLINE_DEFAULT_MAX_IN_FLIGHT).
const DefaultMax = 10

// KeyPrefix starts every key of this package:
// hookline:inflight:{<subscription id>} (a sorted set). The braces are a
// Redis Cluster hash tag: every key of one subscription lands in one slot.
const KeyPrefix = endpointhealth.InFlightPrefix

// Key is the lease set of a subscription.
func Key(subscriptionID string) string { return endpointhealth.InFlightKey(subscriptionID) }

// acquire drops expired leases and adds ARGV[3] when fewer than ARGV[2]
// remain. Returns {1, count} when acquired, {0, count} when full (the task
// then waits in its subscription's line: nothing to spread).
//
//	KEYS[1] lease set
//	ARGV[1] now (redisclock.Clock.Arg)   ARGV[2] cap   ARGV[3] lease id   ARGV[4] lease ttl (ms)
var acquire = redis.NewScript(redisclock.Lua + `
local now = math.floor(now_ms(ARGV[1]))
local ttl = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local n = redis.call('ZCARD', KEYS[1])
if n >= tonumber(ARGV[2]) then
  return {0, n}
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return {1, n + 1}
`)

// Config sizes the limiter.
type Config struct {
	// DefaultMax caps subscriptions whose max_in_flight is 0 (DefaultMax
	// when 0).
	DefaultMax int
	// LeaseTTL bounds how long a slot stays taken when its holder never
	// releases it: the attempt timeout plus a margin.
	LeaseTTL time.Duration
	// RedisRetry is how long decisions stay local after Redis failed, so
	// that an unreachable Redis costs one timeout per interval rather than
	// one per attempt (1s when 0).
	RedisRetry time.Duration
	// Degraded counts the decisions taken without Redis (nil: not
	// counted); Logger says when they start and end (nil: nowhere).
	Degraded *admission.Metrics
	Log      *zap.Logger
	// Now is this process's clock (time.Now when nil), for what stays in
	// the process: the RedisRetry window.
	Now func() time.Time
	// StateClock is the time of lease expiries: nil (the default) is
	// Redis' own, so that replicas whose clocks disagree neither take nor
	// keep each other's slots; tests that move time set theirs.
	StateClock redisclock.Clock
}

// Limiter hands out leases. It is safe for concurrent use.
type Limiter struct {
	rdb  redis.UniversalClient
	cfg  Config
	down *redisdown.Guard

	mu   sync.Mutex
	held map[string]int // leases this process holds, by subscription
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, cfg Config) *Limiter {
	if cfg.DefaultMax <= 0 {
		cfg.DefaultMax = DefaultMax
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Limiter{
		rdb: rdb,
		cfg: cfg,
		down: redisdown.New(redisdown.Config{Component: admission.InFlight, Consequence: "in-flight caps counted per process (an endpoint may see up to replicas × its cap)",
			Retry: cfg.RedisRetry, Count: cfg.Degraded.Counter(admission.InFlight), Log: cfg.Log}),
		held: map[string]int{},
	}
}

// Lease is one slot held by an attempt. The zero Lease is not held.
type Lease struct {
	subscriptionID string
	id             string
	local          bool
}

// Held reports whether the lease holds a slot.
func (l Lease) Held() bool { return l.id != "" }

// Cap is the effective cap of a subscription whose max_in_flight is max.
func (l *Limiter) Cap(max uint32) int {
	if max == 0 {
		return l.cfg.DefaultMax
	}
	return int(max)
}

// PendingAcquire is an AcquireCmd queued on a pipeline.
type PendingAcquire struct {
	l              *Limiter
	ctx            context.Context
	subscriptionID string
	limit          int
	id             string
	now            time.Time
	cmd            *redis.Cmd // nil: Redis skipped
}

// AcquireCmd queues taking a slot for an attempt on the subscription on
// pipe. Result's ok is false when the subscription already has its cap of
// attempts in flight (max 0 means the default cap). When Redis fails, the
// decision is taken against a per-process count (counted and logged) and
// Result's err is the Redis error, or redisdown.ErrSkipped while Redis is
// not asked after a failure (see Config.RedisRetry); the lease and ok
// are still valid. It is queued (so that the caller can send it with
// other commands in one round trip); Result answers once pipe ran.
func (l *Limiter) AcquireCmd(ctx context.Context, pipe redis.Pipeliner, subscriptionID string, max uint32) *PendingAcquire {
	p := &PendingAcquire{l: l, ctx: ctx, subscriptionID: subscriptionID, limit: l.Cap(max), now: l.cfg.Now()}
	if l.down.Skip(p.now) {
		return p
	}
	p.id = rand.Text()
	// Eval, not EvalSha: a pipeline cannot fall back on NOSCRIPT. Redis
	// caches the compiled script by its hash either way.
	p.cmd = acquire.Eval(ctx, pipe, []string{Key(subscriptionID)},
		l.cfg.StateClock.Arg(), p.limit, p.id, l.cfg.LeaseTTL.Milliseconds())
	return p
}

// Result is the answer of an AcquireCmd whose pipe ran (see AcquireCmd).
func (p *PendingAcquire) Result() (Lease, bool, error) {
	l := p.l
	if p.cmd == nil {
		lease, ok := l.acquireLocal(p.subscriptionID, p.limit)
		return lease, ok, redisdown.ErrSkipped
	}
	res, err := p.cmd.Int64Slice()
	if err != nil {
		if !l.down.Fail(p.ctx, p.now, err) {
			// The caller went away.
			return Lease{}, false, fmt.Errorf("acquire in-flight slot: %w", p.ctx.Err())
		}
		lease, ok := l.acquireLocal(p.subscriptionID, p.limit)
		return lease, ok, fmt.Errorf("acquire in-flight slot in redis (counted locally instead): %w", err)
	}
	l.down.OK()
	if len(res) != 2 {
		return Lease{}, false, errors.New("acquire in-flight slot: unexpected script reply")
	}
	if res[0] == 0 {
		return Lease{}, false, nil
	}
	l.mu.Lock()
	l.held[p.subscriptionID]++
	l.mu.Unlock()
	return Lease{subscriptionID: p.subscriptionID, id: p.id}, true, nil
}

// acquireLocal decides against the leases this process holds.
func (l *Limiter) acquireLocal(subscriptionID string, limit int) (Lease, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[subscriptionID] >= limit {
		return Lease{}, false
	}
	l.held[subscriptionID]++
	return Lease{subscriptionID: subscriptionID, id: "local", local: true}, true
}

// ReleaseCmd queues freeing the slot on pipe; a local lease is released at
// once, and releasing the zero Lease does nothing. A lease that cannot be
// released (Redis down) expires after LeaseTTL.
// The returned command (nil for a local or zero lease) carries the error.
func (l *Limiter) ReleaseCmd(ctx context.Context, pipe redis.Pipeliner, lease Lease) *redis.IntCmd {
	if !lease.Held() {
		return nil
	}
	l.forget(lease)
	if lease.local {
		return nil
	}
	return pipe.ZRem(ctx, Key(lease.subscriptionID), lease.id)
}

// forget drops a lease from this process's count.
func (l *Limiter) forget(lease Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held[lease.subscriptionID] <= 1 {
		delete(l.held, lease.subscriptionID)
	} else {
		l.held[lease.subscriptionID]--
	}
}

// InFlight counts the unexpired leases of a subscription (for tests and
// operators).
func (l *Limiter) InFlight(ctx context.Context, subscriptionID string) (int, error) {
	now, err := l.cfg.StateClock.Now(ctx, l.rdb)
	if err != nil {
		return 0, fmt.Errorf("count in-flight slots: %w", err)
	}
	n, err := l.rdb.ZCount(ctx, Key(subscriptionID), strconv.FormatInt(now.UnixMilli()+1, 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("count in-flight slots: %w", err)
	}
	return int(n), nil
}
