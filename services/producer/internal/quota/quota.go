// Package quota is the tenant events/s quota of the producer's API: a
// pkg/gcra bucket per tenant in Redis, shared by every producer replica,
// on Redis's clock (a replica whose clock is skewed neither grants nor
// refuses more than the quota).
//
// A request takes as many units as it publishes events, per tenant, all
// or nothing: a batch over its tenant's remaining burst is refused whole
// and takes nothing. When Redis cannot answer, requests are let through
// (the quota protects capacity; refusing every event while Redis is down
// would turn a cache outage into a publishing outage), counted and logged
// by a pkg/redisdown Guard, which also stops asking Redis for a second
// after it failed.
package quota

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/gcra"
	"github.com/hookline/hookline/pkg/redisdown"
)

// KeyPrefix starts the Redis key of a tenant's quota, a pkg/gcra bucket.
// (The quota kept before its GCRA was pkg/gcra's was a string at
// hookline:quota:{<tenant>}; a bucket has its own key so that replicas of
// both versions never read each other's state as the wrong type.)
const KeyPrefix = "hookline:quota:gcra:"

// Key is the Redis key of tenant's quota.
func Key(tenant string) string { return KeyPrefix + "{" + tenant + "}" }

// Bounds of the configuration: a rate so small that one event's interval
// overflows a schedule, or so large it means nothing, is refused.
const (
	MinRate  = 0.001
	MaxRate  = 1e6
	MaxBurst = 1_000_000
)

// Component names the quota in the log of its Guard.
const Component = "tenant_quota"

// Config is the quota: Rate events per second per tenant, Burst at once.
// Rate 0 turns it off.
type Config struct {
	Rate  float64
	Burst int
	// Degraded counts the requests let through because Redis could not
	// answer (nil: not counted); Log says when that starts and ends (nil:
	// nowhere).
	Degraded redisdown.Counter
	Log      *zap.Logger
	// Now is this process's clock (time.Now when nil), for the Guard's
	// retry window.
	Now func() time.Time
}

// Validate checks c against the bounds; maxBatch is the largest batch the
// API accepts, which must fit in a burst (or no such batch ever passes).
func (c Config) Validate(maxBatch int) error {
	if c.Rate == 0 {
		return nil
	}
	if math.IsNaN(c.Rate) || c.Rate < MinRate || c.Rate > MaxRate {
		return fmt.Errorf("HOOKLINE_TENANT_EVENTS_PER_SECOND must be 0 (off) or between %g and %g, not %g", MinRate, MaxRate, c.Rate)
	}
	if c.Burst < maxBatch || c.Burst > MaxBurst {
		return fmt.Errorf("HOOKLINE_TENANT_EVENTS_BURST must be between HOOKLINE_MAX_BATCH (%d) and %d, not %d", maxBatch, MaxBurst, c.Burst)
	}
	return nil
}

// Limiter takes from the tenants' quotas.
type Limiter struct {
	rdb  redis.Scripter
	cfg  Config
	down *redisdown.Guard
}

// New returns a Limiter on rdb, or nil when c.Rate is 0 (a nil Limiter
// lets everything through).
func New(rdb redis.Scripter, c Config) *Limiter {
	if c.Rate == 0 {
		return nil
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Limiter{rdb: rdb, cfg: c, down: redisdown.New(redisdown.Config{
		Component: Component, Consequence: "tenant quotas not checked: requests let through",
		Count: c.Degraded, Log: c.Log,
	})}
}

// Take takes units[tenant] events from each tenant's quota, all or none.
// ok false says the request is over quota; retryAfter is when it would
// fit. When Redis cannot answer the request is let through (ok true).
func (l *Limiter) Take(ctx context.Context, units map[string]int) (ok bool, retryAfter time.Duration) {
	if l == nil || len(units) == 0 {
		return true, 0
	}
	now := l.cfg.Now()
	if l.down.Skip(now) {
		return true, 0
	}
	tenants := make([]string, 0, len(units))
	for t := range units {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	r := gcra.Request{PerSecond: l.cfg.Rate, Burst: l.cfg.Burst, Keys: make([]string, len(tenants)), Units: make([]int, len(tenants))}
	for i, t := range tenants {
		r.Keys[i], r.Units[i] = Key(t), units[t]
	}
	res, err := gcra.Take(ctx, l.rdb, r)
	if err != nil {
		l.down.Fail(ctx, now, fmt.Errorf("tenant quota: %w", err))
		return true, 0
	}
	l.down.OK()
	return res.Taken, res.Wait
}
