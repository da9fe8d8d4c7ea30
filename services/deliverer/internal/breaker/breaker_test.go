package breaker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redisdown"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
)

// pair is two replicas sharing one Redis and one clock, which moves the
// circuit's time too (the state clock).
func pair(t *testing.T, srv *redistest.Server, cfg breaker.Config) (*healthtest.Clock, *breaker.Breaker, *breaker.Breaker) {
	t.Helper()
	clk := healthtest.NewClock()
	cfg.Now, cfg.StateClock = clk.Now, clk.Now
	return clk, breaker.New(srv.Client(t), cfg), breaker.New(srv.Client(t), cfg)
}

func mustAllow(t *testing.T, b *breaker.Breaker, sub string) breaker.Decision {
	t.Helper()
	d, err := b.Allow(context.Background(), sub)
	if err != nil {
		t.Fatalf("allow: %v", err)
	}
	return d
}

func mustFail(t *testing.T, b *breaker.Breaker, sub string, pause time.Duration) breaker.Streak {
	t.Helper()
	s, err := b.Failure(context.Background(), sub, pause)
	if err != nil {
		t.Fatalf("failure: %v", err)
	}
	return s
}

func TestOpensAfterConsecutiveFailures(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name        string
		failures    int
		successAt   int // a success after this many failures (0: none)
		wantOpen    bool
		wantStreak  int
		wantOpenAtN int
	}{
		{name: "below threshold", failures: 4, wantOpen: false, wantStreak: 4},
		{name: "at threshold", failures: 5, wantOpen: true, wantStreak: 5, wantOpenAtN: 5},
		{name: "success resets the count", failures: 8, successAt: 4, wantOpen: false, wantStreak: 4},
		{name: "success then five more", failures: 9, successAt: 4, wantOpen: true, wantStreak: 5, wantOpenAtN: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, a, b := pair(t, srv, breaker.Config{Failures: 5, Cooldown: 30 * time.Second})
			sub := "sub_" + t.Name()
			var last breaker.Streak
			openedAt := 0
			for i := 1; i <= tt.failures; i++ {
				r := a
				if i%2 == 0 {
					r = b // failures from both replicas count together
				}
				last = mustFail(t, r, sub, 0)
				if last.Opened && openedAt == 0 {
					openedAt = i
				}
				if i == tt.successAt {
					if _, err := b.Success(context.Background(), sub); err != nil {
						t.Fatal(err)
					}
				}
			}
			d := mustAllow(t, b, sub)
			if d.Open != tt.wantOpen || d.Allow == tt.wantOpen {
				t.Fatalf("after %d failures: decision %+v; want open=%v", tt.failures, d, tt.wantOpen)
			}
			if !tt.wantOpen && d.Failures != tt.wantStreak {
				t.Fatalf("closed circuit reports %d failures in a row; want %d", d.Failures, tt.wantStreak)
			}
			if tt.wantOpen && d.Wait != 30*time.Second {
				t.Fatalf("open circuit waits %s; want the 30s cool-down", d.Wait)
			}
			if last.Failures != tt.wantStreak || openedAt != tt.wantOpenAtN {
				t.Fatalf("streak %d opened at failure %d; want %d and %d", last.Failures, openedAt, tt.wantStreak, tt.wantOpenAtN)
			}
		})
	}
}

func TestHalfOpenLetsOneProbeThrough(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name      string
		probeOK   bool
		wantState breaker.State
		wantWait  time.Duration // of the next Allow after the probe
	}{
		{name: "probe succeeds and closes", probeOK: true, wantState: breaker.Closed},
		{name: "probe fails and doubles the cool-down", probeOK: false, wantState: breaker.Open, wantWait: 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk, a, b := pair(t, srv, breaker.Config{Failures: 2, Cooldown: 10 * time.Second})
			sub := "sub_" + t.Name()
			mustFail(t, a, sub, 0)
			if s := mustFail(t, b, sub, 0); !s.Opened {
				t.Fatal("second failure did not open the circuit")
			}
			clk.Advance(10 * time.Second)
			probe := mustAllow(t, a, sub)
			if !probe.Allow || probe.Probe == "" {
				t.Fatalf("first attempt after the cool-down: %+v; want the probe", probe)
			}
			other := mustAllow(t, b, sub)
			if other.Allow || other.Open || other.Wait <= 0 {
				t.Fatalf("attempt while the probe is in flight: %+v; want a short wait", other)
			}
			if tt.probeOK {
				if closed, err := a.Success(ctx, sub); err != nil || !closed {
					t.Fatalf("probe success: closed %v err %v", closed, err)
				}
			} else if s := mustFail(t, a, sub, 0); !s.Opened {
				t.Fatal("failed probe did not reopen the circuit")
			}
			snap, err := b.Snapshot(ctx, sub)
			if err != nil || snap.State != tt.wantState {
				t.Fatalf("state %+v %v; want %s", snap, err, tt.wantState)
			}
			d := mustAllow(t, b, sub)
			if d.Wait != tt.wantWait || d.Allow != (tt.wantWait == 0) {
				t.Fatalf("after the probe: %+v; want wait %s", d, tt.wantWait)
			}
		})
	}
}

func TestCooldownGrowsToItsCap(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clk, a, _ := pair(t, srv, breaker.Config{Failures: 1, Cooldown: 10 * time.Second, MaxCooldown: 50 * time.Second})
	want := []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 50 * time.Second, 50 * time.Second}
	for i, w := range want {
		s := mustFail(t, a, "sub_grow", 0)
		if !s.Opened || s.OpenUntil.Sub(s.Now) != w {
			t.Fatalf("opening %d: %+v; want open for %s", i+1, s, w)
		}
		clk.Advance(w) // half-open: the next failure is a failed probe
	}
}

func TestConcurrentHalfOpenHasOneProbe(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clk, a, b := pair(t, srv, breaker.Config{Failures: 1, Cooldown: time.Second})
	mustFail(t, a, "sub_race", 0)
	clk.Advance(time.Second)
	var probes atomic.Int32
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Go(func() {
			r := a
			if i%2 == 1 {
				r = b
			}
			if d, err := r.Allow(context.Background(), "sub_race"); err == nil && d.Probe != "" {
				probes.Add(1)
			}
		})
	}
	wg.Wait()
	if probes.Load() != 1 {
		t.Fatalf("%d probes in half-open; want exactly 1", probes.Load())
	}
}

func TestProbeLeaseIsReleasedOrExpires(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	clk, a, b := pair(t, srv, breaker.Config{Failures: 1, Cooldown: time.Second, ProbeTTL: 100 * time.Millisecond})
	mustFail(t, a, "sub_lease", 0)
	clk.Advance(time.Second)

	// Given back: the next caller probes at once.
	d := mustAllow(t, a, "sub_lease")
	if err := a.ReleaseProbe(ctx, "sub_lease", "not-the-token"); err != nil {
		t.Fatal(err)
	}
	if mustAllow(t, b, "sub_lease").Probe != "" {
		t.Fatal("a wrong token released the probe lease")
	}
	if err := a.ReleaseProbe(ctx, "sub_lease", d.Probe); err != nil {
		t.Fatal(err)
	}
	if mustAllow(t, b, "sub_lease").Probe == "" {
		t.Fatal("no probe after the lease was given back")
	}

	// Never given back (its holder crashed): it expires after ProbeTTL.
	deadline := time.Now().Add(5 * time.Second)
	for mustAllow(t, a, "sub_lease").Probe == "" {
		if time.Now().After(deadline) {
			t.Fatal("the crashed holder's probe lease never expired")
		}
		time.Sleep(20 * time.Millisecond) // polling for the lease's expiry
	}
}

func TestRetryAfterPausesTheCircuit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	clk, a, b := pair(t, srv, breaker.Config{Failures: 5, Cooldown: 10 * time.Second})
	s := mustFail(t, a, "sub_pause", 90*time.Second)
	if s.Opened || s.OpenUntil.Sub(s.Now) != 90*time.Second {
		t.Fatalf("Retry-After 90s: %+v; want paused 90s without an opening", s)
	}
	if d := mustAllow(t, b, "sub_pause"); !d.Open || d.Wait != 90*time.Second {
		t.Fatalf("other replica during the pause: %+v; want open for 90s", d)
	}
	// A shorter Retry-After does not shorten the pause.
	mustFail(t, b, "sub_pause", 5*time.Second)
	clk.Advance(60 * time.Second)
	if d := mustAllow(t, a, "sub_pause"); d.Wait != 30*time.Second {
		t.Fatalf("after 60s: %+v; want 30s left", d)
	}
	clk.Advance(30 * time.Second)
	if d := mustAllow(t, a, "sub_pause"); d.Probe == "" {
		t.Fatalf("after the pause: %+v; want a probe", d)
	}
}

func TestStreakRemembersItsStart(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	clk, a, b := pair(t, srv, breaker.Config{Failures: 100})
	first := mustFail(t, a, "sub_streak", 0)
	clk.Advance(3 * time.Hour)
	later := mustFail(t, b, "sub_streak", 0)
	if !later.Since.Equal(first.Since) || later.Failing() != 3*time.Hour {
		t.Fatalf("streak since %s failing %s; want since %s, failing 3h", later.Since, later.Failing(), first.Since)
	}
	if _, err := a.Success(ctx, "sub_streak"); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	again := mustFail(t, a, "sub_streak", 0)
	if again.Failing() != 0 || again.Failures != 1 {
		t.Fatalf("after a success the streak did not restart: %+v", again)
	}
	ttl := srv.Client(t).PTTL(ctx, breaker.Key("sub_streak")).Val()
	if ttl <= 0 {
		t.Fatalf("breaker state has no expiry (PTTL %s)", ttl)
	}
}

func TestRedisDownTakesTheCircuitAsClosed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := healthtest.FailFastClient(t, srv)
	clk := healthtest.NewClock()
	b := breaker.New(rdb, breaker.Config{Failures: 1, Now: clk.Now, RedisRetry: time.Second})
	if _, err := b.Failure(context.Background(), "sub_down", 0); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	d, err := b.Allow(context.Background(), "sub_down")
	if !d.Allow || err == nil {
		t.Fatalf("redis down: %+v %v; want allowed with the error", d, err)
	}
	d, err = b.Allow(context.Background(), "sub_down")
	if !d.Allow || !errors.Is(err, redisdown.ErrSkipped) {
		t.Fatalf("redis down, second call: %+v %v; want allowed without trying redis", d, err)
	}
}
