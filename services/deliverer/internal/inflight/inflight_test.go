package inflight_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/inflight"
	"github.com/hookline/hookline/services/deliverer/internal/redisdown"
	"github.com/prometheus/client_golang/prometheus"
)

func TestAcquireCapsAcrossReplicas(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	tests := []struct {
		name       string
		defaultMax int
		max        uint32
		wantCap    int
	}{
		{name: "default cap", defaultMax: 0, max: 0, wantCap: inflight.DefaultMax},
		{name: "operator default", defaultMax: 3, max: 0, wantCap: 3},
		{name: "subscription override", defaultMax: 3, max: 5, wantCap: 5},
		{name: "override of one", defaultMax: 10, max: 1, wantCap: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			clk := healthtest.NewClock()
			cfg := inflight.Config{DefaultMax: tt.defaultMax, LeaseTTL: 20 * time.Second, Now: clk.Now, StateClock: clk.Now}
			// Two replicas share one Redis.
			a := inflight.New(srv.Client(t), cfg)
			b := inflight.New(srv.Client(t), cfg)
			sub := "sub_" + t.Name()
			var leases []inflight.Lease
			for i := range tt.wantCap {
				lim := a
				if i%2 == 1 {
					lim = b
				}
				l, ok, err := lim.Acquire(ctx, sub, tt.max)
				if err != nil || !ok {
					t.Fatalf("acquire %d of %d: ok %v err %v", i+1, tt.wantCap, ok, err)
				}
				leases = append(leases, l)
			}
			for _, lim := range []*inflight.Limiter{a, b} {
				if _, ok, err := lim.Acquire(ctx, sub, tt.max); err != nil || ok {
					t.Fatalf("acquire over the cap: ok %v err %v; want full", ok, err)
				}
			}
			if n, err := a.InFlight(ctx, sub); err != nil || n != tt.wantCap {
				t.Fatalf("InFlight = %d, %v; want %d", n, err, tt.wantCap)
			}
			if err := b.Release(ctx, leases[0]); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := a.Acquire(ctx, sub, tt.max); err != nil || !ok {
				t.Fatalf("acquire after a release: ok %v err %v; want a slot", ok, err)
			}
			// Another subscription is not affected.
			if _, ok, err := a.Acquire(ctx, sub+"_other", tt.max); err != nil || !ok {
				t.Fatalf("other subscription: ok %v err %v", ok, err)
			}
		})
	}
}

func TestLeasesOfACrashedReplicaExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	clk := healthtest.NewClock()
	cfg := inflight.Config{DefaultMax: 2, LeaseTTL: 20 * time.Second, Now: clk.Now, StateClock: clk.Now}
	crashed := inflight.New(srv.Client(t), cfg)
	for range 2 {
		if _, ok, err := crashed.Acquire(ctx, "sub_a", 0); err != nil || !ok {
			t.Fatalf("acquire: %v %v", ok, err)
		}
	}
	survivor := inflight.New(srv.Client(t), cfg)
	clk.Advance(cfg.LeaseTTL - time.Millisecond)
	if _, ok, _ := survivor.Acquire(ctx, "sub_a", 0); ok {
		t.Fatal("a slot was free before the crashed replica's leases expired")
	}
	clk.Advance(time.Millisecond)
	for i := range 2 {
		if _, ok, err := survivor.Acquire(ctx, "sub_a", 0); err != nil || !ok {
			t.Fatalf("acquire %d after expiry: %v %v", i+1, ok, err)
		}
	}
	if ttl := srv.Client(t).PTTL(ctx, inflight.Key("sub_a")).Val(); ttl <= 0 {
		t.Fatalf("lease set has no expiry (PTTL %s): an idle subscription would keep its key forever", ttl)
	}
}

func TestConcurrentAcquireNeverExceedsCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	lims := []*inflight.Limiter{
		inflight.New(srv.Client(t), inflight.Config{LeaseTTL: time.Minute}),
		inflight.New(srv.Client(t), inflight.Config{LeaseTTL: time.Minute}),
	}
	const workers, limit = 40, 7
	var got atomic.Int32
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			if _, ok, err := lims[i%2].Acquire(ctx, "sub_c", limit); err == nil && ok {
				got.Add(1)
			}
		})
	}
	wg.Wait()
	if got.Load() != limit {
		t.Fatalf("%d of %d concurrent acquires succeeded; want exactly the cap %d", got.Load(), workers, limit)
	}
}

func TestRedisDownCountsLocally(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := healthtest.FailFastClient(t, srv)
	reg := prometheus.NewRegistry()
	clk := healthtest.NewClock()
	cfg := inflight.Config{DefaultMax: 2, RedisRetry: time.Second, Now: clk.Now, Degraded: redisdown.NewMetrics(reg)}
	lim := inflight.New(rdb, cfg)
	srv.Stop()

	var leases []inflight.Lease
	for i := range 2 {
		l, ok, err := lim.Acquire(ctx, "sub_d", 0)
		if !ok || err == nil {
			t.Fatalf("acquire %d with redis down: ok %v err %v; want a local slot and the redis error", i+1, ok, err)
		}
		leases = append(leases, l)
	}
	if _, ok, _ := lim.Acquire(ctx, "sub_d", 0); ok {
		t.Fatal("local count let a third attempt past a cap of 2")
	}
	if err := lim.Release(ctx, leases[0]); err != nil {
		t.Fatalf("release a local lease: %v", err)
	}
	if _, ok, _ := lim.Acquire(ctx, "sub_d", 0); !ok {
		t.Fatal("no local slot after a release")
	}
	if n := healthtest.Counter(t, reg, "hookline_admission_degraded_total", redisdown.InFlight); n != 4 {
		t.Fatalf("hookline_admission_degraded_total{component=in_flight} = %g; want 4 (one per decision)", n)
	}

	// Redis is back: after RedisRetry the limiter uses it again.
	srv.Restart(t)
	clk.Advance(cfg.RedisRetry)
	if _, ok, err := lim.Acquire(ctx, "sub_d", 0); !ok || err != nil {
		t.Fatalf("acquire with redis back: ok %v err %v", ok, err)
	}
	if n, err := lim.InFlight(ctx, "sub_d"); err != nil || n != 1 {
		t.Fatalf("redis holds %d leases (%v); want the one taken after recovery", n, err)
	}
}

func TestReleaseOfZeroLeaseIsANoop(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := inflight.New(srv.Client(t), inflight.Config{})
	if err := lim.Release(context.Background(), inflight.Lease{}); err != nil {
		t.Fatalf("release zero lease: %v", err)
	}
}

func TestDeadlineIsARedisFailureCancelIsNot(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	lim := inflight.New(srv.Client(t), inflight.Config{DefaultMax: 1})

	expired, cancel := context.WithTimeout(context.Background(), -time.Second)
	defer cancel()
	if _, ok, err := lim.Acquire(expired, "sub_deadline", 0); !ok || err == nil {
		t.Fatalf("deadline passed: ok %v err %v; want a local slot and the error", ok, err)
	}

	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	lim2 := inflight.New(srv.Client(t), inflight.Config{DefaultMax: 1})
	if _, ok, err := lim2.Acquire(canceled, "sub_cancel", 0); ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("caller gone: ok %v err %v; want no slot and context.Canceled", ok, err)
	}
}

// The local fall-back counts the leases this process took through Redis:
// one replica never exceeds the cap, Redis or not.
func TestLocalFallbackCountsRedisLeasesOfThisProcess(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	rdb := healthtest.FailFastClient(t, srv)
	lim := inflight.New(rdb, inflight.Config{DefaultMax: 2})
	var leases []inflight.Lease
	for range 2 {
		l, ok, err := lim.Acquire(ctx, "sub_mixed", 0)
		if !ok || err != nil {
			t.Fatalf("acquire through redis: ok %v err %v", ok, err)
		}
		leases = append(leases, l)
	}
	srv.Stop()
	if _, ok, _ := lim.Acquire(ctx, "sub_mixed", 0); ok {
		t.Fatal("with redis down, a third slot was granted next to two redis leases of this process")
	}
	_ = lim.Release(ctx, leases[0]) // redis is down: the ZREM fails, the local count drops
	if _, ok, _ := lim.Acquire(ctx, "sub_mixed", 0); !ok {
		t.Fatal("no local slot after releasing one of this process's leases")
	}
}
