// Package gcra is the one rate limit kept in Redis: GCRA (the generic cell
// rate algorithm, a token bucket kept as one timestamp, its theoretical
// arrival time) in a Lua script, on Redis's clock (pkg/redisclock), so
// that every replica shares the rate and a replica whose clock is off
// neither gets a burst the others paid for nor waits for hours. The
// deliverer's per-subscription rate limit and the producer's per-tenant
// events/s quota are both this script.
//
// A request takes units from one or more buckets, all or none: when one
// bucket has no room, nothing is taken from any, and the answer says how
// long until the request would fit and how many requests that bucket has
// turned away in the current second (for a caller that spreads a
// backlog's retries).
package gcra

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hookline/hookline/pkg/redisclock"
)

// script takes units from every bucket, or from none.
//
//	KEYS[i] bucket i: a hash with tat (theoretical arrival time, unix ms),
//	        and the requests turned away in the current second (w: the
//	        second, n: the count)
//	ARGV[1] now (redisclock.Clock.Arg)   ARGV[2] emission interval (ms)
//	ARGV[3] burst   ARGV[3+i] units for KEYS[i]
//
// Returns {1, "0", 0} when taken, {0, wait ms, denials this second} when
// not. Each key lives until its bucket is full again, plus 2 s.
var script = redis.NewScript(redisclock.Lua + `
local now = now_ms(ARGV[1])
local interval = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3]) * interval
local tats = {}
for i, key in ipairs(KEYS) do
  local st = redis.call('HMGET', key, 'tat', 'w', 'n')
  local tat = tonumber(st[1]) or now
  if tat < now then tat = now end
  local wait = tat + tonumber(ARGV[3 + i]) * interval - tolerance - now
  if wait > 0 then
    local w = math.floor(now / 1000)
    local n = 1
    if tonumber(st[2]) == w then n = (tonumber(st[3]) or 0) + 1 end
    redis.call('HSET', key, 'w', w, 'n', n)
    redis.call('PEXPIRE', key, math.ceil(tat - now) + 2000)
    return {0, tostring(wait), n}
  end
  tats[i] = tat + tonumber(ARGV[3 + i]) * interval
end
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'tat', tostring(tats[i]))
  redis.call('PEXPIRE', key, math.ceil(tats[i] - now) + 2000)
end
return {1, '0', 0}
`)

// Request is one Take.
type Request struct {
	// PerSecond is the rate (> 0), Burst how many units a full bucket
	// holds (>= 1).
	PerSecond float64
	Burst     int
	// Keys are the buckets; Units what the request takes from each
	// (nil: one from each).
	Keys  []string
	Units []int
	// Clock is the time of the buckets: nil (the default) is Redis' own;
	// tests that move time set theirs.
	Clock redisclock.Clock
}

// Result is a Take's answer.
type Result struct {
	// Taken says the units were taken; otherwise nothing was.
	Taken bool
	// Wait is how long until the request would fit (0 when taken).
	Wait time.Duration
	// Denied counts the requests the refusing bucket turned away in the
	// current second of the buckets' clock, this one included.
	Denied int
}

// Take takes r.Units from r.Keys' buckets on rdb, all or none. An error is
// Redis' (or a reply the script cannot give); nothing is known to be taken
// then.
func Take(ctx context.Context, rdb redis.Scripter, r Request) (Result, error) {
	if len(r.Units) != 0 && len(r.Units) != len(r.Keys) {
		return Result{}, fmt.Errorf("gcra: %d units for %d keys", len(r.Units), len(r.Keys))
	}
	if len(r.Keys) == 0 {
		return Result{Taken: true}, nil
	}
	args := make([]any, 0, 3+len(r.Keys))
	args = append(args, r.Clock.Arg(), strconv.FormatFloat(1000/r.PerSecond, 'f', -1, 64), r.Burst)
	for i := range r.Keys {
		u := 1
		if len(r.Units) != 0 {
			u = r.Units[i]
		}
		args = append(args, u)
	}
	res, err := script.Run(ctx, rdb, r.Keys, args...).Slice()
	if err != nil {
		return Result{}, err
	}
	if len(res) != 3 {
		return Result{}, errors.New("gcra script: unexpected reply")
	}
	if taken, _ := res[0].(int64); taken == 1 {
		return Result{Taken: true}, nil
	}
	waitStr, _ := res[1].(string)
	waitMS, err := strconv.ParseFloat(waitStr, 64)
	if err != nil {
		return Result{}, fmt.Errorf("gcra script: wait %q: %w", waitStr, err)
	}
	denied, _ := res[2].(int64)
	return Result{Wait: time.Duration(math.Ceil(waitMS * float64(time.Millisecond))), Denied: int(denied)}, nil
}
