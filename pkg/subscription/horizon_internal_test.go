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
