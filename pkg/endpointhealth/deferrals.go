package endpointhealth

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Deferral counts: the deliverers count the tasks of each subscription
// they defer (a scheduled copy instead of an attempt: rate limit, open
// circuit, full line, …) in five-minute buckets, one hash a bucket:
//
//	hookline:deferrals:{<subscription id>}:<bucket start, unix s>   hash: reason → count
//
// Each hash expires DeferralsKept after its bucket began, so a
// subscription holds at most DeferralsKept/DeferralBucket small hashes,
// whatever its traffic, and a deleted one's go by themselves. A read of a
// day is one pipeline of 289 HGETALLs in one slot.
const (
	DeferralsPrefix = "hookline:deferrals:"
	DeferralBucket  = 5 * time.Minute
	DeferralsKept   = 24*time.Hour + DeferralBucket
)

// DeferralsKey is the hash of a subscription's deferrals in the bucket
// that holds at.
func DeferralsKey(subscriptionID string, at time.Time) string {
	return DeferralsPrefix + "{" + subscriptionID + "}:" + strconv.FormatInt(at.Truncate(DeferralBucket).Unix(), 10)
}

// AddDeferrals queues on pipe the commands that add n deferrals of a
// subscription for reason at time at: HINCRBY of the bucket's hash and
// PEXPIRE to DeferralsKept after the bucket began (the commands the
// deliverer's Redis user has; deploy/security/users.acl).
func AddDeferrals(ctx context.Context, pipe redis.Pipeliner, subscriptionID, reason string, at time.Time, n int64) {
	key := DeferralsKey(subscriptionID, at)
	pipe.HIncrBy(ctx, key, reason, n)
	pipe.PExpire(ctx, key, max(time.Until(at.Truncate(DeferralBucket).Add(DeferralsKept)), time.Millisecond))
}

// Deferrals counts a subscription's deferrals since a time.
type Deferrals struct {
	// Since is the start of the first bucket counted: up to five minutes
	// before the time asked for.
	Since    time.Time        `json:"since" doc:"start of the first five-minute bucket counted (up to 5 minutes before the window's start)"`
	Total    int64            `json:"total" doc:"tasks deferred (a scheduled copy, not an HTTP attempt) by every deliverer"`
	ByReason map[string]int64 `json:"by_reason" doc:"by reason: rate_limited, circuit_open, probe_in_flight, in_flight_full, tenant_full, destination_full, destination_open, line_full, ordered, shutdown"`
}

// ReadDeferrals sums the deferrals of a subscription in the buckets from
// the one holding since to the one holding now. since must be at most
// DeferralsKept before now (older buckets have expired).
func ReadDeferrals(ctx context.Context, rdb redis.UniversalClient, subscriptionID string, since, now time.Time) (Deferrals, error) {
	out := Deferrals{Since: since.Truncate(DeferralBucket).UTC(), ByReason: map[string]int64{}}
	if now.Sub(since) > DeferralsKept {
		return Deferrals{}, fmt.Errorf("deferrals: %s back is more than the %s kept", now.Sub(since), DeferralsKept)
	}
	pipe := rdb.Pipeline()
	var cmds []*redis.MapStringStringCmd
	for b := out.Since; !b.After(now); b = b.Add(DeferralBucket) {
		cmds = append(cmds, pipe.HGetAll(ctx, DeferralsKey(subscriptionID, b)))
	}
	if len(cmds) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return Deferrals{}, fmt.Errorf("deferrals: %w", err)
	}
	for _, c := range cmds {
		for reason, v := range c.Val() {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return Deferrals{}, fmt.Errorf("deferrals: %v field %s: %w", c.Args()[1], reason, err)
			}
			out.ByReason[reason] += n
			out.Total += n
		}
	}
	return out, nil
}
