package redisdown_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redisdown"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type counter struct{ n atomic.Int64 }

func (c *counter) Inc() { c.n.Add(1) }

// After a failure Redis is not asked for the retry interval; every decision
// taken without it is counted; a caller that went away is not Redis
// failing.
func TestGuardSkipsCountsAndIgnoresCancel(t *testing.T) {
	var count counter
	g := redisdown.New(redisdown.Config{Component: "in_flight", Consequence: "counted per process", Count: &count})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	if g.Fail(canceled, now, errors.New("read: use of closed connection")) || g.Skip(now) || count.n.Load() != 0 {
		t.Fatalf("a canceled caller was taken as Redis failing (count %d)", count.n.Load())
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
	if n := count.n.Load(); n != 2 {
		t.Fatalf("%d decisions without Redis counted; want 2 (the failure and the skip)", n)
	}
}

// The log says when deciding without Redis starts (at most every 30
// seconds, with the consequence and the component) and when it ends.
func TestGuardLogsStartAtMostEvery30sAndEnd(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	g := redisdown.New(redisdown.Config{Component: "tenant_quota", Consequence: "quota not checked", Retry: time.Second, Log: zap.New(core)})
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 40 { // a failure a second for 40 seconds
		g.Fail(context.Background(), now.Add(time.Duration(i)*time.Second), errors.New("dial: connection refused"))
	}
	warns := logs.FilterMessage("deciding without redis: quota not checked")
	if warns.Len() != 2 {
		t.Fatalf("%d warnings in 40s of failures; want 2 (one per 30s)", warns.Len())
	}
	if c := warns.All()[0].ContextMap()["component"]; c != "tenant_quota" {
		t.Fatalf("warning's component %v", c)
	}
	g.OK()
	g.OK()
	if n := logs.FilterMessage("deciding through redis again").Len(); n != 1 {
		t.Fatalf("%d recoveries logged; want 1", n)
	}
}

// A Guard without a counter or a log still decides.
func TestGuardWithoutCounterOrLog(t *testing.T) {
	g := redisdown.New(redisdown.Config{})
	now := time.Now()
	if !g.Fail(context.Background(), now, errors.New("x")) || !g.Skip(now) {
		t.Fatal("a failure was not recorded")
	}
	g.OK()
}
