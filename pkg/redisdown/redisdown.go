// Package redisdown is what a user of Redis does when Redis fails and a
// decision cannot wait for it (the deliverer's circuit breaker, in-flight
// cap and rate limit, the producer's tenant quota): the decision is taken
// without Redis (each user says how: a circuit taken as closed, a cap or
// rate counted per process, a quota not checked), Redis is not asked again
// for a retry interval, so that an unreachable Redis costs one timeout per
// interval rather than one per decision, every decision taken so is
// counted, and the log says so (at most every 30 seconds, and once when
// Redis answers again).
package redisdown

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultRetry is how long Redis is not asked after it failed.
const DefaultRetry = time.Second

// warnEvery rate-limits the warning of one Guard.
const warnEvery = 30 * time.Second

// ErrSkipped is the error of a decision taken without asking Redis, because
// it failed less than the retry interval ago.
var ErrSkipped = errors.New("redis failed recently: not asked")

// Counter counts the decisions taken without Redis (a prometheus.Counter
// is one).
type Counter interface{ Inc() }

// Config is one Guard's.
type Config struct {
	// Component names the user in the log.
	Component string
	// Consequence says in the log what deciding without Redis means.
	Consequence string
	// Retry is how long Redis is not asked after it failed (DefaultRetry
	// when 0).
	Retry time.Duration
	// Count counts every decision taken without Redis (nil: not counted).
	Count Counter
	// Log says when deciding without Redis starts and ends (nil: nowhere).
	Log *zap.Logger
}

// Guard is one component's view of Redis being down. It is safe for
// concurrent use.
type Guard struct {
	retry       time.Duration
	count       Counter // nil: not counted
	log         *zap.Logger
	consequence string

	skipUntil atomic.Int64 // unix ns: Redis is not asked before
	down      atomic.Bool
	lastWarn  atomic.Int64 // unix ns
}

// New returns the Guard of c.Component.
func New(c Config) *Guard {
	if c.Retry <= 0 {
		c.Retry = DefaultRetry
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return &Guard{
		retry:       c.Retry,
		count:       c.Count,
		log:         c.Log.With(zap.String("component", c.Component)),
		consequence: c.Consequence,
	}
}

// Skip reports whether Redis is not to be asked at now (it failed less than
// the retry interval before); a skipped decision is counted.
func (g *Guard) Skip(now time.Time) bool {
	if now.UnixNano() >= g.skipUntil.Load() {
		return false
	}
	g.counted()
	return true
}

// Fail records that Redis failed a decision at now with err: the decision
// is taken without Redis (counted), and Redis is not asked again for the
// retry interval. A canceled ctx is the caller going away, not Redis
// failing: then nothing is recorded and Fail reports false. (A deadline is
// Redis being slow: recorded like any failure.)
func (g *Guard) Fail(ctx context.Context, now time.Time, err error) bool {
	if errors.Is(ctx.Err(), context.Canceled) {
		return false
	}
	g.skipUntil.Store(now.Add(g.retry).UnixNano())
	g.counted()
	g.down.Store(true)
	if last := g.lastWarn.Load(); now.UnixNano()-last >= int64(warnEvery) && g.lastWarn.CompareAndSwap(last, now.UnixNano()) {
		g.log.Warn("deciding without redis: "+g.consequence, zap.Error(err), zap.Duration("retry_every", g.retry))
	}
	return true
}

// OK records that Redis answered.
func (g *Guard) OK() {
	if g.down.CompareAndSwap(true, false) {
		g.log.Info("deciding through redis again")
	}
}

func (g *Guard) counted() {
	if g.count != nil {
		g.count.Inc()
	}
}
