// Package ratelimit enforces a subscription's optional requests-per-second
// limit across every deliverer replica: GCRA (the generic cell rate
// algorithm, a token bucket kept as one timestamp) in Redis, on Redis's
// clock (pkg/gcra).
//
// A request over the limit is not counted; Take returns how long to wait
// before asking again, and the deliverer defers the task that long without
// spending an attempt. To keep a backlog from coming back all at once and
// being turned away again, the wait is spread: when d requests were turned
// away in the last second, the wait is the time until the next free slot
// plus a random share of d × the emission interval (the time the backlog
// needs to drain at the limit), capped at MaxSpread.
//
// When Redis cannot be reached, the decision is taken by an in-process token
// bucket with the same rate and burst. The number of replicas is not known
// here, so each replica allows the full rate: the endpoint may see up to
// replicas × the rate while Redis is down. This is logged and counted like
// every admission decision taken without Redis (pkg/redisdown).
//
// Why not github.com/go-redis/redis_rate: it compiles with go-redis v9.23.0,
// but its keys are fixed under "rate:", outside the hookline: namespace the
// Redis ACL grants, and it cannot spread the waits of a backlog.
package ratelimit

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/hookline/hookline/pkg/gcra"
	"github.com/hookline/hookline/pkg/redisclock"
	"github.com/hookline/hookline/pkg/redisdown"
	admission "github.com/hookline/hookline/services/deliverer/internal/redisdown"
)

// KeyPrefix starts every key of this package: hookline:ratelimit:{<subscription id>},
// a pkg/gcra bucket. The braces are a Redis Cluster hash tag.
const KeyPrefix = "hookline:ratelimit:"

// Key is the GCRA state of a subscription.
func Key(subscriptionID string) string { return KeyPrefix + "{" + subscriptionID + "}" }

// Config tunes a Limiter. Zero values take the defaults.
type Config struct {
	// MaxSpread caps the random part of a wait (default 5 minutes).
	MaxSpread time.Duration
	// RedisRetry is how long decisions stay local after Redis failed
	// (default 1s): an unreachable Redis costs one timeout per interval,
	// not one per attempt.
	RedisRetry time.Duration
	// Degraded counts the decisions taken without Redis (nil: not
	// counted); Logger says when they start and end (nil: nowhere).
	Degraded *admission.Metrics
	Log      *zap.Logger
	// Now is this process's clock (time.Now when nil), for what stays in
	// the process: the RedisRetry window and the local fall-back.
	Now func() time.Time
	// StateClock is the time of the GCRA state: nil (the default) is
	// Redis' own, so that replicas whose clocks disagree share one rate;
	// tests that move time set theirs.
	StateClock redisclock.Clock
	// Jitter returns a random duration in [0, n) (math/rand when nil).
	Jitter func(n time.Duration) time.Duration
}

// Limiter is safe for concurrent use.
type Limiter struct {
	rdb  redis.Scripter
	cfg  Config
	down *redisdown.Guard

	mu        sync.Mutex
	local     map[string]*localBucket
	lastSweep time.Time
}

type localBucket struct {
	lim  *rate.Limiter
	used time.Time
}

// New returns a limiter on rdb.
func New(rdb redis.Scripter, cfg Config) *Limiter {
	if cfg.MaxSpread <= 0 {
		cfg.MaxSpread = 5 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = func(n time.Duration) time.Duration {
			if n <= 0 {
				return 0
			}
			return rand.N(n)
		}
	}
	return &Limiter{
		rdb: rdb,
		cfg: cfg,
		down: redisdown.New(redisdown.Config{Component: admission.RateLimit, Consequence: "rate limits enforced per process (an endpoint may see up to replicas × its limit)",
			Retry: cfg.RedisRetry, Count: cfg.Degraded.Counter(admission.RateLimit), Log: cfg.Log}),
		local: map[string]*localBucket{},
	}
}

// Burst is the effective burst of a limit: burst, or one second's worth of
// requests (at least 1) when burst is 0.
func Burst(perSecond float64, burst uint32) int {
	if burst > 0 {
		return int(burst)
	}
	return max(1, int(math.Ceil(perSecond)))
}

// Take asks for one request of the subscription's limit (perSecond > 0;
// burst 0 means Burst's default). It returns 0 when the request may be sent
// now, and it is counted; otherwise nothing is counted and wait is how long
// to defer before asking again. err is only ever context.Canceled: a Redis
// failure, or ctx's deadline, falls back to the local limiter.
func (l *Limiter) Take(ctx context.Context, subscriptionID string, perSecond float64, burst uint32) (wait time.Duration, err error) {
	if perSecond <= 0 || math.IsNaN(perSecond) || math.IsInf(perSecond, 0) {
		return 0, nil
	}
	b := Burst(perSecond, burst)
	now := l.cfg.Now()
	if !l.down.Skip(now) {
		wait, err := l.takeRedis(ctx, subscriptionID, perSecond, b)
		if err == nil {
			l.down.OK()
			return wait, nil
		}
		if !l.down.Fail(ctx, now, err) {
			// The caller went away.
			return 0, fmt.Errorf("rate limit: %w", ctx.Err())
		}
	}
	return l.takeLocal(subscriptionID, perSecond, b, now), nil
}

func (l *Limiter) takeRedis(ctx context.Context, subscriptionID string, perSecond float64, burst int) (time.Duration, error) {
	res, err := gcra.Take(ctx, l.rdb, gcra.Request{PerSecond: perSecond, Burst: burst, Keys: []string{Key(subscriptionID)}, Clock: l.cfg.StateClock})
	if err != nil || res.Taken {
		return 0, err
	}
	intervalMS := 1000 / perSecond
	spread := min(time.Duration(float64(res.Denied)*intervalMS*float64(time.Millisecond)), l.cfg.MaxSpread)
	return res.Wait + l.cfg.Jitter(spread), nil
}

func (l *Limiter) takeLocal(subscriptionID string, perSecond float64, burst int, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sweep(now)
	lb, ok := l.local[subscriptionID]
	if !ok {
		lb = &localBucket{lim: rate.NewLimiter(rate.Limit(perSecond), burst)}
		l.local[subscriptionID] = lb
	}
	if lb.lim.Limit() != rate.Limit(perSecond) {
		lb.lim.SetLimitAt(now, rate.Limit(perSecond))
	}
	if lb.lim.Burst() != burst {
		lb.lim.SetBurstAt(now, burst)
	}
	lb.used = now
	r := lb.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return d
	}
	return 0
}

// sweep forgets local buckets idle for ten minutes, at most once a minute.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < time.Minute {
		return
	}
	l.lastSweep = now
	for id, lb := range l.local {
		if now.Sub(lb.used) > 10*time.Minute {
			delete(l.local, id)
		}
	}
}
