package deferrals_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/deferrals"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Deferrals counted in memory reach Redis on a flush, per subscription
// and reason, and add up across flushes.
func TestFlushStoresTheCountsPerSubscriptionAndReason(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	c := deferrals.New(rdb, prometheus.NewRegistry())
	for range 3 {
		c.Deferred("sub_1", "rate_limited")
	}
	c.Deferred("sub_1", "circuit_open")
	c.Deferred("sub_2", "rate_limited")
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	c.Deferred("sub_1", "rate_limited")
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, err := endpointhealth.ReadDeferrals(ctx, rdb, "sub_1", now.Add(-time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 5 || got.ByReason["rate_limited"] != 4 || got.ByReason["circuit_open"] != 1 {
		t.Fatalf("sub_1: %+v, want 4 rate_limited and 1 circuit_open", got)
	}
	other, err := endpointhealth.ReadDeferrals(ctx, rdb, "sub_2", now.Add(-time.Hour), now)
	if err != nil || other.Total != 1 {
		t.Fatalf("sub_2: %+v, %v, want 1", other, err)
	}
}

// With Redis gone a flush fails, its counts are dropped and counted as
// such, and what is held does not grow from one flush to the next.
func TestFailedFlushDropsAndCounts(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	reg := prometheus.NewRegistry()
	c := deferrals.New(rdb, reg)
	srv.Stop()
	for range 7 {
		c.Deferred("sub_1", "rate_limited")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Flush(ctx); err == nil {
		t.Fatal("a flush to a stopped Redis succeeded")
	}
	if err := c.Flush(ctx); err != nil {
		t.Fatalf("a second flush with nothing held: %v (the failed counts were kept)", err)
	}
	if n, err := testutil.GatherAndCount(reg, "hookline_deferral_counts_dropped_total"); err != nil || n != 1 {
		t.Fatalf("metric: %d, %v", n, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if v := mfs[0].GetMetric()[0].GetCounter().GetValue(); v != 7 {
		t.Fatalf("dropped %v, want 7", v)
	}
}

// Run flushes what was counted before it stops.
func TestRunFlushesOnStop(t *testing.T) {
	rdb := redistest.Start(t).Client(t)
	c := deferrals.New(rdb, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx, 5*time.Second, func(err error) { t.Error(err) }); close(done) }()
	c.Deferred("sub_1", "line_full")
	cancel()
	<-done
	now := time.Now()
	got, err := endpointhealth.ReadDeferrals(context.Background(), rdb, "sub_1", now.Add(-time.Hour), now)
	if err != nil || got.ByReason["line_full"] != 1 {
		t.Fatalf("after Run stopped: %+v, %v, want line_full 1", got, err)
	}
}
