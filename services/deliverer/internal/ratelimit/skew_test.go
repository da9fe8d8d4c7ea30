package ratelimit_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/ratelimit"
)

// A replica whose clock is off by hours or days shares the rate with the
// others: ahead, it does not get a fresh burst the others paid for; behind,
// it is not told to wait for hours; and after it took a request, the others
// are not stalled either.
func TestSkewedReplicaKeepsTheRate(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	const perSecond, burst = 0.1, 1 // a slow rate: the requests of one check come well inside its 10s interval
	for _, skew := range healthtest.Skews {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			right := ratelimit.New(srv.Client(t), ratelimit.Config{Jitter: noJitter})
			off := ratelimit.New(srv.Client(t), ratelimit.Config{Jitter: noJitter, Now: healthtest.Skewed(skew)})
			check := func(name string, r *ratelimit.Limiter, sub string) {
				t.Helper()
				w, err := r.Take(ctx, sub, perSecond, burst)
				// The interval, give or take a millisecond: the two
				// requests read Redis' TIME, a wall clock that an NTP
				// adjustment may step back by microseconds between them
				// (a CI run saw 10.000004s). Hours of skew are what is
				// tested.
				if err != nil || w <= 0 || w > 10*time.Second+time.Millisecond {
					t.Fatalf("clock off by %s: %s replica after the burst: wait %s err %v; want a wait of at most the 10s interval", skew, name, w, err)
				}
			}
			sub := "sub_right_first_" + skew.String()
			if w, err := right.Take(ctx, sub, perSecond, burst); w != 0 || err != nil {
				t.Fatalf("first request: wait %s err %v", w, err)
			}
			check("off", off, sub)
			check("right", right, sub)

			sub = "sub_off_first_" + skew.String()
			if w, err := off.Take(ctx, sub, perSecond, burst); w != 0 || err != nil {
				t.Fatalf("clock off by %s: first request: wait %s err %v", skew, w, err)
			}
			check("right", right, sub)
			check("off", off, sub)
		})
	}
}
