// Package deferrals counts the tasks each subscription has deferred, in
// Redis, for the producer's stats and health answers
// (pkg/endpointhealth's deferral buckets). Counts gather in memory and go
// out together once a second: a deferral costs a map increment, not a
// Redis round trip, and a second of a burst costs one pipeline of one
// HINCRBY and EXPIREAT per subscription, reason and bucket.
//
// The counts are a view for people, not a ledger: those of the last
// second are lost when the process dies, and those of a flush Redis
// refuses are dropped (hookline_deferral_counts_dropped_total), never
// retried without bound.
package deferrals

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/hookline/hookline/pkg/endpointhealth"
)

// flushEvery is how often the counts go to Redis.
const flushEvery = time.Second

// maxPending bounds the distinct subscription × reason × bucket counts
// held between two flushes; beyond it a deferral is dropped (and counted
// as such) rather than held.
const maxPending = 100_000

type key struct {
	sub, reason string
	bucket      time.Time
}

// Counter counts deferrals. Its zero value is not usable: use New.
type Counter struct {
	rdb redis.UniversalClient
	// dropped counts the deferrals not stored (Redis failed, or too many
	// distinct counts at once).
	dropped prometheus.Counter

	mu      sync.Mutex
	pending map[key]int64
}

// New returns a Counter that writes to rdb, and registers on reg the
// count of deferrals it could not store.
func New(rdb redis.UniversalClient, reg prometheus.Registerer) *Counter {
	dropped := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "hookline_deferral_counts_dropped_total",
		Help: "Deferrals left out of the per-subscription counts the stats API shows (Redis failed, or too many distinct counts between two flushes).",
	})
	reg.MustRegister(dropped)
	return &Counter{rdb: rdb, dropped: dropped, pending: map[key]int64{}}
}

// Deferred counts one deferral of a subscription's task for reason.
func (c *Counter) Deferred(subscriptionID, reason string) {
	k := key{sub: subscriptionID, reason: reason, bucket: time.Now().Truncate(endpointhealth.DeferralBucket)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pending[k]; !ok && len(c.pending) >= maxPending {
		c.dropped.Inc()
		return
	}
	c.pending[k]++
}

// Flush writes the counts gathered so far in one pipeline.
func (c *Counter) Flush(ctx context.Context) error {
	c.mu.Lock()
	batch := c.pending
	c.pending = map[key]int64{}
	c.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	pipe := c.rdb.Pipeline()
	var n int64
	for k, v := range batch {
		endpointhealth.AddDeferrals(ctx, pipe, k.sub, k.reason, k.bucket, v)
		n += v
	}
	if _, err := pipe.Exec(ctx); err != nil {
		c.dropped.Add(float64(n))
		return err
	}
	return nil
}

// Run flushes once a second until ctx ends, then once more within
// finalTimeout. A failed flush is reported to onError (optional) and
// dropped.
func (c *Counter) Run(ctx context.Context, finalTimeout time.Duration, onError func(error)) {
	if onError == nil {
		onError = func(error) {}
	}
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, flushEvery)
			if err := c.Flush(fctx); err != nil {
				onError(err)
			}
			cancel()
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
			defer cancel()
			if err := c.Flush(fctx); err != nil {
				onError(err)
			}
			return
		}
	}
}
