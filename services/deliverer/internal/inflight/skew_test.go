package inflight_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/inflight"
)

// A replica whose clock is off by hours or days neither takes the slots of
// the others (ahead: their leases look expired to it), nor has its own
// slots taken (behind: its leases look expired to them), nor holds a slot
// past the lease's time when it never gives it back.
func TestSkewedReplicaKeepsTheCap(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	ctx := context.Background()
	const limit = 2 // the subscription's max_in_flight
	for _, skew := range healthtest.Skews {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			right := inflight.New(srv.Client(t), inflight.Config{})
			off := inflight.New(srv.Client(t), inflight.Config{Now: healthtest.Skewed(skew)})
			sub := "sub_" + skew.String()

			if _, ok, err := off.Acquire(ctx, sub, limit); !ok || err != nil {
				t.Fatalf("clock off by %s: first slot: ok %v err %v", skew, ok, err)
			}
			if _, ok, err := right.Acquire(ctx, sub, limit); !ok || err != nil {
				t.Fatalf("clock off by %s: second slot: ok %v err %v", skew, ok, err)
			}
			for name, r := range map[string]*inflight.Limiter{"right": right, "off": off} {
				if _, ok, err := r.Acquire(ctx, sub, limit); ok || err != nil {
					t.Fatalf("clock off by %s: the %s replica got a third slot past the cap of %d (err %v)", skew, name, limit, err)
				}
			}
			for name, r := range map[string]*inflight.Limiter{"right": right, "off": off} {
				if n, err := r.InFlight(ctx, sub); n != limit || err != nil {
					t.Fatalf("clock off by %s: the %s replica counts %d in flight (%v); want %d", skew, name, n, err, limit)
				}
			}
			// Every lease ends within LeaseTTL (one minute by default) of
			// Redis' time, whoever took it.
			leases, err := rdb.ZRangeWithScores(ctx, inflight.Key(sub), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			now, err := rdb.Time(ctx).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range leases {
				if end := time.UnixMilli(int64(l.Score)); end.After(now.Add(time.Minute)) || end.Before(now) {
					t.Fatalf("clock off by %s: a lease ends at %s, Redis' time is %s; want within the one-minute lease", skew, end, now)
				}
			}
		})
	}
}
