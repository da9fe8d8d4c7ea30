package inflight_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/inflight"
)

// endpointhealth.Read counts the live leases the limiter holds in Redis:
// released and expired ones are not in flight.
func TestEndpointHealthReadsTheLeases(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	clk := healthtest.NewClock()
	lim := inflight.New(rdb, inflight.Config{LeaseTTL: 20 * time.Second, Now: clk.Now, StateClock: clk.Now})
	inFlight := func() int {
		t.Helper()
		st, err := endpointhealth.ReadState(ctx, rdb, "sub_l", clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		return st.InFlight
	}
	var leases []inflight.Lease
	for range 3 {
		l, ok, err := lim.Acquire(ctx, "sub_l", 0)
		if err != nil || !ok {
			t.Fatalf("acquire: %v %v", ok, err)
		}
		leases = append(leases, l)
	}
	if n := inFlight(); n != 3 {
		t.Fatalf("%d in flight, want 3", n)
	}
	if err := lim.Release(ctx, leases[0]); err != nil {
		t.Fatal(err)
	}
	if n := inFlight(); n != 2 {
		t.Fatalf("after a release: %d in flight, want 2", n)
	}
	clk.Advance(21 * time.Second)
	if n := inFlight(); n != 0 {
		t.Fatalf("after the leases expired: %d in flight, want 0", n)
	}
}
