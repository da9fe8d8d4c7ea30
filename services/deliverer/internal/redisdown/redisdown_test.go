package redisdown_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
	"github.com/prometheus/client_golang/prometheus"
)

// After a failure Redis is not asked for the retry interval; every decision
// taken without it is counted under its component; a caller that went away
// is not Redis failing.
func TestGuardSkipsCountsAndIgnoresCancel(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := redisdown.NewMetrics(reg)
	g := redisdown.New(redisdown.InFlight, "counted per process", 0, m, nil)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	count := func() float64 {
		return healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.InFlight)
	}

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if g.Fail(canceled, now, errors.New("read: use of closed connection")) || g.Skip(now) || count() != 0 {
		t.Fatalf("a canceled caller was taken as Redis failing (count %g)", count())
	}
	if !g.Fail(context.Background(), now, errors.New("dial: connection refused")) {
		t.Fatal("a Redis failure was not recorded")
	}
	if !g.Skip(now.Add(redisdown.DefaultRetry - time.Nanosecond)) {
		t.Fatal("Redis asked again within the retry interval")
	}
	if g.Skip(now.Add(redisdown.DefaultRetry)) {
		t.Fatal("Redis still skipped after the retry interval")
	}
	if count() != 2 {
		t.Fatalf("%g decisions without Redis counted; want 2 (the failure and the skip)", count())
	}
	if other := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.Breaker); other != 0 {
		t.Fatalf("breaker counted %g; want 0 (another component)", other)
	}
}
