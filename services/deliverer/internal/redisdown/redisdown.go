// Package redisdown is the deliverer's count of admission decisions taken
// without Redis: one metric, hookline_admission_degraded_total{component},
// shared by endpoint health's Redis users (the circuit breaker, the
// in-flight cap and the rate limit), each counting through its
// pkg/redisdown Guard (what every Redis user does when Redis fails).
package redisdown

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/hookline/hookline/pkg/redisdown"
)

// Components, the metric's label values.
const (
	Breaker   = "breaker"
	InFlight  = "in_flight"
	RateLimit = "rate_limit"
)

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

// Counter is component's count, for its Guard's Config (nil for nil m:
// not counted).
func (m *Metrics) Counter(component string) redisdown.Counter {
	if m == nil {
		return nil
	}
	return m.vec.WithLabelValues(component)
}
