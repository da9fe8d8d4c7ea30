// Package quota is the tenant events/s quota of the producer's API: a
// generic cell rate algorithm (GCRA) per tenant in Redis, shared by every
// producer replica, on Redis's clock (a replica whose clock is skewed
// neither grants nor refuses more than the quota).
//
// A request takes as many units as it publishes events, per tenant, all
// or nothing: a batch over its tenant's remaining burst is refused whole
// and takes nothing. When Redis cannot answer, requests are let through
// (the quota protects capacity; refusing every event while Redis is down
// would turn a cache outage into a publishing outage) and counted.
package quota

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KeyPrefix starts the Redis key of a tenant's quota state (its GCRA
// theoretical arrival time, in Redis-clock microseconds).
const KeyPrefix = "hookline:quota:"

// Key is the Redis key of tenant's quota.
func Key(tenant string) string { return KeyPrefix + "{" + tenant + "}" }

// Bounds of the configuration: a rate so small that one event's interval
// overflows a schedule, or so large it means nothing, is refused.
const (
	MinRate  = 0.001
	MaxRate  = 1e6
	MaxBurst = 1_000_000
)

// takeScript checks every tenant's quota, then takes from all or none.
//
//	KEYS[i] a tenant's key   ARGV[1] interval µs   ARGV[2] tolerance µs (burst × interval)
//	ARGV[2+i] units for KEYS[i]
//
// Returns {1, 0} when taken, {0, µs until the request would fit} when not.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tats = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now then tat = now end
  local new = tat + tonumber(ARGV[2 + i]) * interval
  if new - now > tolerance then
    return {0, math.ceil(new - now - tolerance)}
  end
  tats[i] = new
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.0f', tats[i]), 'PX', math.ceil((tats[i] - now) / 1000) + 1000)
end
return {1, 0}
`)

// Config is the quota: Rate events per second per tenant, Burst at once.
// Rate 0 turns it off.
type Config struct {
	Rate  float64
	Burst int
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
	rdb       redis.Scripter
	interval  int64 // µs per event
	tolerance int64 // µs: Burst intervals
	// Degraded counts requests let through because Redis could not answer.
	degraded func()
}

// New returns a Limiter, or nil when c.Rate is 0 (a nil Limiter lets
// everything through). degraded is called for each request let through
// because Redis failed (nil: not counted).
func New(rdb redis.Scripter, c Config, degraded func()) *Limiter {
	if c.Rate == 0 {
		return nil
	}
	interval := int64(math.Ceil(1e6 / c.Rate))
	if degraded == nil {
		degraded = func() {}
	}
	return &Limiter{rdb: rdb, interval: interval, tolerance: interval * int64(c.Burst), degraded: degraded}
}

// Take takes units[tenant] events from each tenant's quota, all or none.
// ok false says the request is over quota; retryAfter is when it would
// fit. An error from Redis lets the request through (ok true) and is
// returned for the log.
func (l *Limiter) Take(ctx context.Context, units map[string]int) (ok bool, retryAfter time.Duration, err error) {
	if l == nil || len(units) == 0 {
		return true, 0, nil
	}
	tenants := make([]string, 0, len(units))
	for t := range units {
		tenants = append(tenants, t)
	}
	sort.Strings(tenants)
	keys := make([]string, len(tenants))
	args := []any{l.interval, l.tolerance}
	for i, t := range tenants {
		keys[i] = Key(t)
		args = append(args, strconv.Itoa(units[t]))
	}
	res, err := takeScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil || len(res) != 2 {
		l.degraded()
		if err == nil {
			err = fmt.Errorf("quota script answered %v", res)
		}
		return true, 0, fmt.Errorf("tenant quota: redis: %w", err)
	}
	if res[0] == 1 {
		return true, 0, nil
	}
	return false, time.Duration(res[1]) * time.Microsecond, nil
}
