package subscription

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// A lookup's required revision comes from a request sent after the lookup
// began, and concurrent lookups share requests.
func TestHorizonRoundsStartAfterTheCall(t *testing.T) {
	var started atomic.Uint64 // rounds begun; each answers its number
	release := make(chan struct{})
	h := newHorizon(func(context.Context) (uint64, error) {
		n := started.Add(1)
		<-release
		return n, nil
	})
	ctx := context.Background()
	first := make(chan uint64)
	go func() {
		r, _ := h.Required(ctx)
		first <- r
	}()
	for started.Load() != 1 { // round 1 is in flight
		runtime.Gosched()
	}
	// These begin while round 1 is in flight: round 1 cannot cover them.
	var wg sync.WaitGroup
	got := make([]uint64, 50)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], _ = h.Required(ctx)
		}()
	}
	for h.pending() != len(got) {
		runtime.Gosched()
	}
	close(release)
	if r := <-first; r != 1 {
		t.Fatalf("first lookup got round %d", r)
	}
	wg.Wait()
	for i, r := range got {
		if r < 2 {
			t.Fatalf("lookup %d began during round 1 and was answered by it", i)
		}
	}
	if n := started.Load(); n > 3 {
		t.Fatalf("%d requests for 51 lookups: they are not shared", n)
	}
}

// pending is how many lookups wait for the next round.
func (h *Horizon) pending() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		return 0
	}
	return h.next.waiters
}

// A finished replay vouches for the bucket's last revision only when the
// leader holds nothing between what the replay applied and that revision:
// a watch read from a lagging follower must not claim what it never saw.
func TestReplayedUpTo(t *testing.T) {
	for _, tc := range []struct{ seen, floor, next, want uint64 }{
		{seen: 5, floor: 5, want: 5},
		{seen: 2, floor: 5, next: 0, want: 5}, // the newest records were deleted
		{seen: 2, floor: 5, next: 6, want: 5}, // written after the watch began
		{seen: 2, floor: 5, next: 3, want: 2}, // a follower had not applied 3
		{seen: 2, floor: 5, next: 5, want: 2},
	} {
		if got := replayedUpTo(tc.seen, tc.floor, tc.next); got != tc.want {
			t.Errorf("replayedUpTo(%d, %d, %d) = %d, want %d", tc.seen, tc.floor, tc.next, got, tc.want)
		}
	}
}
