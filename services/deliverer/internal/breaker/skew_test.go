package breaker_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
)

// A replica whose clock is off shares the circuit's time line with the
// others: it neither probes an open circuit early (ahead) nor waits for days
// (behind), and a failure it records does not stretch the streak.
func TestSkewedReplicaKeepsTheCircuit(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, skew := range healthtest.Skews {
		t.Run(skew.String(), func(t *testing.T) {
			t.Parallel()
			right := breaker.New(srv.Client(t), breaker.Config{})
			off := breaker.New(srv.Client(t), breaker.Config{Now: healthtest.Skewed(skew)})

			sub := "sub_open_" + skew.String()
			for range breaker.DefaultFailures {
				mustFail(t, right, sub, 0)
			}
			d := mustAllow(t, off, sub)
			if d.Allow || !d.Open || d.Wait <= 0 || d.Wait > breaker.DefaultCooldown {
				t.Fatalf("clock off by %s, circuit just opened: %+v; want open, wait at most the %s cool-down", skew, d, breaker.DefaultCooldown)
			}
			snap, err := off.Snapshot(ctx, sub)
			if err != nil || snap.State != breaker.Open {
				t.Fatalf("clock off by %s: snapshot %+v %v; want open", skew, snap, err)
			}

			sub = "sub_streak_" + skew.String()
			first := mustFail(t, right, sub, 0)
			s := mustFail(t, off, sub, 0)
			if s.Opened || s.Failing() < 0 || s.Failing() > time.Minute || s.Now.Before(first.Now) {
				t.Fatalf("clock off by %s, second failure a moment after the first: %+v failing %s; want a closed circuit failing for a moment", skew, s, s.Failing())
			}
			// And the other way round: the off replica starts the streak.
			sub = "sub_start_" + skew.String()
			mustFail(t, off, sub, 0)
			if s := mustFail(t, right, sub, 0); s.Failing() < 0 || s.Failing() > time.Minute {
				t.Fatalf("clock off by %s started the streak: failing %s; want a moment", skew, s.Failing())
			}
		})
	}
}
