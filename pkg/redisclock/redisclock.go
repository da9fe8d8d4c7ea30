// Package redisclock is the clock of the state kept in Redis by Lua
// scripts (the deliverer's circuit breaker, in-flight leases and rate
// limits, the producer's tenant quota, every GCRA of pkg/gcra): Redis'
// own, read inside each script with TIME, so that every replica writes and
// compares timestamps of one clock, whatever its own says. A replica whose
// clock is hours or days off then neither opens, probes or stalls a
// circuit early, nor takes or keeps in-flight slots, nor gets or withholds
// rate-limit or quota units, nor stretches a failure streak into an
// auto-disable.
//
// A script may call TIME and then write because Redis replicates a
// script's effects, not the script (the default since Redis 5, the only
// mode since 7).
package redisclock

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Lua defines now_ms(arg) for a script that starts with it: the time that
// arg holds (unix milliseconds, with a fraction), or Redis' TIME, to the
// microsecond, when arg is empty (Clock.Arg).
const Lua = `
local function now_ms(arg)
  if arg ~= nil and arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
`

// Clock is the time of the state in Redis. The nil Clock, the default, is
// Redis' own; a test that moves time sets its fake clock, shared by the
// replicas of the test.
type Clock func() time.Time

// Arg is the script argument for now_ms: empty for Redis' clock, else the
// clock's time in unix milliseconds with a microsecond fraction.
func (c Clock) Arg() string {
	if c == nil {
		return ""
	}
	return strconv.FormatFloat(float64(c().UnixMicro())/1000, 'f', 3, 64)
}

// Now is the clock's time: Redis' TIME for the nil Clock (one round trip).
func (c Clock) Now(ctx context.Context, rdb redis.Cmdable) (time.Time, error) {
	if c != nil {
		return c(), nil
	}
	t, err := rdb.Time(ctx).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("redis time: %w", err)
	}
	return t, nil
}
