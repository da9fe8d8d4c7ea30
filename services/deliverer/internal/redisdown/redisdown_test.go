package redisdown_test

import (
	"testing"

	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
	"github.com/prometheus/client_golang/prometheus"
)

// Every component starts at 0 (an alert on increase() sees the first
// degraded decision) and counts under its own label.
func TestMetricsCountPerComponent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := redisdown.NewMetrics(reg)
	for _, c := range []string{redisdown.Breaker, redisdown.InFlight, redisdown.RateLimit} {
		if v := healthtest.Counter(t, reg, "hookline_admission_degraded_total", c); v != 0 {
			t.Fatalf("%s starts at %g", c, v)
		}
	}
	m.Counter(redisdown.InFlight).Inc()
	m.Counter(redisdown.InFlight).Inc()
	if v := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.InFlight); v != 2 {
		t.Fatalf("in_flight counted %g; want 2", v)
	}
	if v := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.Breaker); v != 0 {
		t.Fatalf("breaker counted %g; want 0 (another component)", v)
	}
	var none *redisdown.Metrics
	if none.Counter(redisdown.Breaker) != nil {
		t.Fatal("nil Metrics gave a counter")
	}
}
