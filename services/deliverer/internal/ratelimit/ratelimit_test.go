package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/ratelimit"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// noJitter makes waits exact: the spread is tested on its own.
func noJitter(time.Duration) time.Duration { return 0 }

func TestTakeAllowsBurstThenSpacesRequests(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name      string
		perSecond float64
		burst     uint32
		wantBurst int
		wantWait  time.Duration // after the burst
	}{
		{name: "2/s burst 3", perSecond: 2, burst: 3, wantBurst: 3, wantWait: 500 * time.Millisecond},
		{name: "10/s default burst", perSecond: 10, burst: 0, wantBurst: 10, wantWait: 100 * time.Millisecond},
		{name: "0.5/s burst 1", perSecond: 0.5, burst: 1, wantBurst: 1, wantWait: 2 * time.Second},
		{name: "0.5/s default burst is 1", perSecond: 0.5, burst: 0, wantBurst: 1, wantWait: 2 * time.Second},
		{name: "3/s burst 1", perSecond: 3, burst: 1, wantBurst: 1, wantWait: 333334 * time.Microsecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := healthtest.NewClock()
			cfg := ratelimit.Config{Now: clk.Now, StateClock: clk.Now, Jitter: noJitter}
			replicas := []*ratelimit.Limiter{ratelimit.New(srv.Client(t), cfg), ratelimit.New(srv.Client(t), cfg)}
			sub := "sub_" + t.Name()
			for i := range tt.wantBurst {
				if w, err := replicas[i%2].Take(ctx, sub, tt.perSecond, tt.burst); w != 0 || err != nil {
					t.Fatalf("request %d of the burst: wait %s err %v", i+1, w, err)
				}
			}
			for _, r := range replicas {
				w, err := r.Take(ctx, sub, tt.perSecond, tt.burst)
				if err != nil || w < tt.wantWait-time.Millisecond || w > tt.wantWait+time.Millisecond {
					t.Fatalf("request after the burst: wait %s err %v; want %s", w, err, tt.wantWait)
				}
			}
			clk.Advance(tt.wantWait)
			if w, err := replicas[1].Take(ctx, sub, tt.perSecond, tt.burst); w != 0 || err != nil {
				t.Fatalf("request after waiting: wait %s err %v; want allowed", w, err)
			}
			if w, _ := replicas[0].Take(ctx, sub, tt.perSecond, tt.burst); w == 0 {
				t.Fatal("a second request right after the wait was allowed")
			}
		})
	}
}

// Two replicas ask greedily every 20ms of 20 simulated seconds: together they
// are allowed no more than rate × window + burst, and not much less.
func TestTwoReplicasShareTheRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := healthtest.NewClock()
	cfg := ratelimit.Config{Now: clk.Now, StateClock: clk.Now, Jitter: noJitter}
	replicas := []*ratelimit.Limiter{ratelimit.New(srv.Client(t), cfg), ratelimit.New(srv.Client(t), cfg)}
	const perSecond, burst, window = 5.0, 4, 20 * time.Second
	allowed := 0
	for step := time.Duration(0); step < window; step += 20 * time.Millisecond {
		for _, r := range replicas {
			if w, err := r.Take(ctx, "sub_shared", perSecond, burst); err != nil {
				t.Fatal(err)
			} else if w == 0 {
				allowed++
			}
		}
		clk.Advance(20 * time.Millisecond)
	}
	limit := int(perSecond*window.Seconds()) + burst
	if allowed > limit || allowed < limit-2 {
		t.Fatalf("allowed %d over %s at %g/s burst %d; want at most %d and at least %d", allowed, window, perSecond, burst, limit, limit-2)
	}
}

func TestZeroRateIsUnlimited(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := ratelimit.New(srv.Client(t), ratelimit.Config{})
	for range 100 {
		if w, err := lim.Take(context.Background(), "sub_free", 0, 0); w != 0 || err != nil {
			t.Fatalf("unlimited subscription: wait %s err %v", w, err)
		}
	}
	if n := srv.Client(t).Exists(context.Background(), ratelimit.Key("sub_free")).Val(); n != 0 {
		t.Fatal("an unlimited subscription wrote rate-limit state")
	}
}

// A backlog turned away at once is spread over the time it needs to drain.
func TestDenialsSpreadTheWait(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := healthtest.NewClock()
	// The jitter takes its whole range, so the wait shows the spread.
	lim := ratelimit.New(srv.Client(t), ratelimit.Config{
		Now:        clk.Now,
		StateClock: clk.Now,
		MaxSpread:  30 * time.Second,
		Jitter:     func(n time.Duration) time.Duration { return n },
	})
	const perSecond = 10 // 100ms interval
	if w, _ := lim.Take(ctx, "sub_backlog", perSecond, 1); w != 0 {
		t.Fatalf("first request waits %s", w)
	}
	var last time.Duration
	for i := range 500 {
		w, err := lim.Take(ctx, "sub_backlog", perSecond, 1)
		if err != nil {
			t.Fatal(err)
		}
		if i == 9 && w != 100*time.Millisecond+10*100*time.Millisecond {
			t.Fatalf("10th denial waits %s; want 100ms to the next slot + 10 × 100ms spread", w)
		}
		last = w
	}
	if last != 100*time.Millisecond+30*time.Second {
		t.Fatalf("500th denial waits %s; want 100ms + the 30s cap", last)
	}
	// The denial count is per second: a second later it starts again.
	clk.Advance(time.Second)
	_, _ = lim.Take(ctx, "sub_backlog", perSecond, 1) // allowed: a second passed
	if w, _ := lim.Take(ctx, "sub_backlog", perSecond, 1); w != 200*time.Millisecond {
		t.Fatalf("first denial of a new second waits %s; want 100ms + 1 × 100ms spread", w)
	}
}

func TestRedisDownFallsBackToLocalLimit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := healthtest.FailFastClient(t, srv)
	clk := healthtest.NewClock()
	core, logs := observer.New(zap.WarnLevel)
	reg := prometheus.NewRegistry()
	cfg := ratelimit.Config{Now: clk.Now, Jitter: noJitter, RedisRetry: time.Second, Log: zap.New(core), Degraded: redisdown.NewMetrics(reg)}
	lim := ratelimit.New(rdb, cfg)
	srv.Stop()

	const perSecond, burst = 2.0, 2
	allowed := 0
	// Ten simulated seconds of greedy requests every 50ms.
	for step := time.Duration(0); step < 10*time.Second; step += 50 * time.Millisecond {
		w, err := lim.Take(ctx, "sub_down", perSecond, burst)
		if err != nil {
			t.Fatalf("Take with redis down returned %v; want a local decision", err)
		}
		if w == 0 {
			allowed++
		}
		clk.Advance(50 * time.Millisecond)
	}
	if want := int(perSecond*10) + burst; allowed > want || allowed < want-1 {
		t.Fatalf("local limiter allowed %d in 10s at %g/s burst %d; want about %d", allowed, perSecond, burst, want)
	}
	if n := logs.FilterMessageSnippet("deciding without redis").Len(); n != 1 {
		t.Fatalf("%d degraded warnings in 10s; want 1 (at most one per 30s)", n)
	}
	if v := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.RateLimit); v != 200 {
		t.Fatalf("hookline_admission_degraded_total{component=rate_limit} = %g; want 200 (every decision of the ten seconds)", v)
	}

	srv.Restart(t)
	clk.Advance(cfg.RedisRetry)
	if w, err := lim.Take(ctx, "sub_down", perSecond, burst); err != nil || w != 0 {
		t.Fatalf("Take with redis back: wait %s err %v", w, err)
	}
	if v := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.RateLimit); v != 200 {
		t.Fatalf("hookline_admission_degraded_total{component=rate_limit} = %g after recovery; want still 200", v)
	}
	if n := srv.Client(t).Exists(ctx, ratelimit.Key("sub_down")).Val(); n != 1 {
		t.Fatal("after recovery the limit state is not in redis")
	}
}
