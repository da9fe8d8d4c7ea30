// Package ratelimit enforces a subscription's optional requests-per-second
// limit across every deliverer replica: GCRA (the generic cell rate
// algorithm, a token bucket kept as one timestamp) in a Redis Lua script.
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
// every admission decision taken without Redis (redisdown).
//
// Why not github.com/go-redis/redis_rate: it compiles with go-redis v9.23.0,
// but its keys are fixed under "rate:", outside the hookline: namespace the
// Redis ACL grants, and it cannot spread the waits of a backlog.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"golang.org/x/time/rate"

	"github.com/hookline/hookline/services/deliverer/internal/redisclock"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
)

// KeyPrefix starts every key of this package: hookline:ratelimit:{<subscription id>},
// a hash with the theoretical arrival time (tat, unix ms) and the requests
// turned away in the current second (w: the second, n: the count). The
// braces are a Redis Cluster hash tag.
const KeyPrefix = "hookline:ratelimit:"

// Key is the GCRA state of a subscription.
func Key(subscriptionID string) string { return KeyPrefix + "{" + subscriptionID + "}" }

// gcra takes one request when the bucket allows it.
//
//	KEYS[1] state hash
//	ARGV[1] now (redisclock.Clock.Arg)   ARGV[2] emission interval (ms)   ARGV[3] burst
//
// Returns {1, "0", 0} when allowed, {0, wait ms, denials this second} when
// not. The time is Redis' (redisclock): a replica whose clock is off
// neither gets a burst the others paid for nor waits for hours.
var gcra = redis.NewScript(redisclock.Lua + `
local now = now_ms(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local st = redis.call('HMGET', KEYS[1], 'tat', 'w', 'n')
local tat = tonumber(st[1]) or now
if tat < now then tat = now end
local allow_at = tat + interval - burst * interval
if now < allow_at then
  local w = math.floor(now / 1000)
  local n = 1
  if tonumber(st[2]) == w then n = (tonumber(st[3]) or 0) + 1 end
  redis.call('HSET', KEYS[1], 'w', w, 'n', n)
  redis.call('PEXPIRE', KEYS[1], math.ceil(tat - now) + 2000)
  return {0, tostring(allow_at - now), n}
end
local new_tat = tat + interval
redis.call('HSET', KEYS[1], 'tat', tostring(new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil(new_tat - now) + 2000)
return {1, '0', 0}
`)

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
	Degraded *redisdown.Metrics
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
		rdb:   rdb,
		cfg:   cfg,
		down:  redisdown.New(redisdown.RateLimit, "rate limits enforced per process (an endpoint may see up to replicas × its limit)", cfg.RedisRetry, cfg.Degraded, cfg.Log),
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
	intervalMS := 1000 / perSecond
	res, err := gcra.Run(ctx, l.rdb, []string{Key(subscriptionID)},
		l.cfg.StateClock.Arg(),
		strconv.FormatFloat(intervalMS, 'f', -1, 64),
		burst).Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 3 {
		return 0, errors.New("rate limit script: unexpected reply")
	}
	if allowed, _ := res[0].(int64); allowed == 1 {
		return 0, nil
	}
	waitStr, _ := res[1].(string)
	waitMS, err := strconv.ParseFloat(waitStr, 64)
	if err != nil {
		return 0, fmt.Errorf("rate limit script: wait %q: %w", waitStr, err)
	}
	denied, _ := res[2].(int64)
	wait := time.Duration(math.Ceil(waitMS * float64(time.Millisecond)))
	spread := min(time.Duration(float64(denied)*intervalMS*float64(time.Millisecond)), l.cfg.MaxSpread)
	return wait + l.cfg.Jitter(spread), nil
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
