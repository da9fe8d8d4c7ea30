// Package healthtest holds the fixtures the endpoint-health tests share
// (health, inflight, ratelimit, breaker): a settable clock and a Redis
// client that fails fast once its server is stopped.
package healthtest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Clock is a settable clock, safe for concurrent use: pass Now as a
// package's Config.Now, shared by the replicas of one test.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock at 2030-01-01T00:00:00Z.
func NewClock() *Clock { return NewClockAt(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) }

// NewClockAt returns a clock at t.
func NewClockAt(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now is the clock's time.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()) }

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// FailFastClient is a client of srv that neither retries nor pings: once
// srv.Stop, each call fails within a short dial timeout, so a test can watch
// the Redis-down path. It closes when the test ends.
func FailFastClient(tb testing.TB, srv *redistest.Server) *redis.Client {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	tb.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// Skews are replica clocks hours and days off, ahead and behind.
var Skews = []time.Duration{3 * time.Hour, -3 * time.Hour, 72 * time.Hour, -72 * time.Hour}

// Skewed is a clock that runs d ahead of this machine's (behind when d is
// negative): a replica whose clock is off.
func Skewed(d time.Duration) func() time.Time {
	return func() time.Time { return time.Now().Add(d) }
}

// Counter is the value of the counter name{component} in reg (0 when it
// has no such series).
func Counter(tb testing.TB, reg prometheus.Gatherer, name, component string) float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "component" && lp.GetValue() == component {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
