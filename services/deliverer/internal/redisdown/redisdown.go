// Package redisdown is what endpoint health's Redis users (the circuit
// breaker, the in-flight cap and the rate limit) do when Redis fails: each
// decides without Redis (the breaker takes the circuit as closed, the caps
// and rates count per process), stops asking Redis for a retry interval so
// that an unreachable Redis costs one timeout per interval rather than one
// per attempt, counts every decision taken so in one metric,
// hookline_admission_degraded_total{component}, and says so in the log (at
// most every 30 seconds, and once when Redis answers again).
package redisdown

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"go.uber.org/zap"
)

// Components, the metric's label values.
const (
	Breaker   = "breaker"
	InFlight  = "in_flight"
	RateLimit = "rate_limit"
)

// DefaultRetry is how long Redis is not asked after it failed.
const DefaultRetry = time.Second

// warnEvery rate-limits the warning of one Guard.
const warnEvery = 30 * time.Second

// Metrics is hookline_admission_degraded_total, registered once per
// process and shared by the Guards.
type Metrics struct{ vec *prometheus.CounterVec }

// NewMetrics registers the metric with reg (none when nil), every
// component from 0 so that increase() sees the first degraded decision (an
// alert pages on it).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	vec := promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "hookline_admission_degraded_total",
		Help: "Admission decisions taken without Redis because it failed or did not answer in time (breaker taken as closed, in-flight cap and rate limit per process), by component.",
	}, []string{"component"})
	for _, c := range []string{Breaker, InFlight, RateLimit} {
		vec.WithLabelValues(c)
	}
	return &Metrics{vec: vec}
}

// ErrSkipped is the error of a decision taken without asking Redis, because
// it failed less than the retry interval ago.
var ErrSkipped = errors.New("redis failed recently: not asked")

// Guard is one component's view of Redis being down. It is safe for
// concurrent use.
type Guard struct {
	retry       time.Duration
	count       prometheus.Counter // nil: not counted
	log         *zap.Logger
	consequence string

	skipUntil atomic.Int64 // unix ns: Redis is not asked before
	down      atomic.Bool
	lastWarn  atomic.Int64 // unix ns
}

// New returns the guard of component; consequence says in the log what
// deciding without Redis means for it. retry 0 is DefaultRetry; m and log
// may be nil.
func New(component, consequence string, retry time.Duration, m *Metrics, log *zap.Logger) *Guard {
	if retry <= 0 {
		retry = DefaultRetry
	}
	if log == nil {
		log = zap.NewNop()
	}
	g := &Guard{retry: retry, log: log.With(zap.String("component", component)), consequence: consequence}
	if m != nil {
		g.count = m.vec.WithLabelValues(component)
	}
	return g
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
