package quota_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/producer/internal/quota"
)

// commands counts the commands a client sends (or tries to).
type commands struct{ n atomic.Int64 }

func (c *commands) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}
func (c *commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// A request takes its events from every tenant's quota or from none; the
// quota is kept under its tenant's key.
func TestTakeAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb := redistest.Start(t).Client(t)
	q := quota.New(rdb, quota.Config{Rate: 0.01, Burst: 3})
	if ok, _ := q.Take(ctx, map[string]int{"acme": 2}); !ok {
		t.Fatal("2 events of a burst of 3 refused")
	}
	ok, wait := q.Take(ctx, map[string]int{"acme": 2, "globex": 1})
	// On Redis's clock, which runs between the two requests: the wait is
	// one event's interval at 0.01/s, less the time since the first.
	if ok || wait > 100*time.Second || wait <= 99*time.Second {
		t.Fatalf("ok %v wait %s; want refused, just under 100s (one event at 0.01/s)", ok, wait)
	}
	if ok, _ := q.Take(ctx, map[string]int{"globex": 3}); !ok {
		t.Fatal("the refused request took from globex")
	}
	if n := rdb.Exists(ctx, quota.Key("acme"), quota.Key("globex")).Val(); n != 2 {
		t.Fatalf("%d of the 2 tenants' keys in Redis", n)
	}
	if quota.New(rdb, quota.Config{}) != nil {
		t.Fatal("rate 0 gave a limiter")
	}
	var off *quota.Limiter
	if ok, _ := off.Take(ctx, map[string]int{"acme": 1000}); !ok {
		t.Fatal("no quota refused a request")
	}
}

// With Redis down, requests are let through and each is counted; Redis is
// not asked again for a second after it failed (an unreachable Redis costs
// one timeout a second, not one a request), and the log says so once.
func TestRedisDownLetsThroughCountsAndBacksOff(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialerRetries: 1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	var sent commands
	rdb.AddHook(&sent)
	srv.Stop()

	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	degraded := prometheus.NewCounter(prometheus.CounterOpts{Name: "degraded"})
	core, logs := observer.New(zap.InfoLevel)
	q := quota.New(rdb, quota.Config{Rate: 0.01, Burst: 3, Degraded: degraded, Log: zap.New(core), Now: func() time.Time { return now }})
	for i := range 5 {
		if ok, _ := q.Take(context.Background(), map[string]int{"acme": 3}); !ok {
			t.Fatalf("request %d refused with Redis down", i)
		}
	}
	if n := testutil.ToFloat64(degraded); n != 5 {
		t.Fatalf("%g requests counted; want 5", n)
	}
	if n := sent.n.Load(); n != 1 {
		t.Fatalf("Redis asked %d times within a second; want once", n)
	}
	if n := logs.FilterMessageSnippet("deciding without redis").Len(); n != 1 {
		t.Fatalf("%d warnings; want 1", n)
	}
	now = now.Add(time.Second)
	q.Take(context.Background(), map[string]int{"acme": 1})
	if n := sent.n.Load(); n != 2 {
		t.Fatalf("Redis asked %d times after the second; want 2", n)
	}
}

// A caller that went away is not Redis failing: nothing is counted.
func TestCanceledRequestIsNotCounted(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	degraded := prometheus.NewCounter(prometheus.CounterOpts{Name: "degraded"})
	q := quota.New(rdb, quota.Config{Rate: 1, Burst: 1, Degraded: degraded})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, _ := q.Take(ctx, map[string]int{"acme": 1}); !ok {
		t.Fatal("a canceled request was refused")
	}
	if n := testutil.ToFloat64(degraded); n != 0 {
		t.Fatalf("a canceled request counted %g times", n)
	}
}
