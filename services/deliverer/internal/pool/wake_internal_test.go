package pool

import (
	"runtime"
	"testing"
	"time"
)

// A message put while no worker may take anything wakes one idle worker,
// not all of them: 32 workers wait while the one key in the queue is at
// PerKey, and 50 more of its messages come. Broadcasting every put woke
// each waiting worker for each message only for it to find nothing
// (while a flood was held to a few fan-outs, a fifth of the deliverer's
// CPU). A message that ends lets the next one in, and that worker wakes
// the next while messages wait.
func TestFairWakesOneWorkerPerMessage(t *testing.T) {
	const workers, puts = 32, 50
	q := newFairQueue(Fair{Workers: workers + 1, Buffer: 1000, PerKey: 1, KeepAlive: time.Minute, OthersWithin: time.Minute})
	now := time.Now()
	if _, ok := q.put("a", queuedMsg{}, now, now); !ok {
		t.Fatal("queue closed")
	}
	if _, key, _, ok := q.take(); !ok || key != "a" {
		t.Fatalf("take = %q, %v", key, ok)
	}
	taken := make(chan string, workers)
	for range workers {
		go func() {
			_, key, _, ok := q.take()
			if ok {
				taken <- key
			}
		}()
	}
	settled := func(wakes int) int {
		t.Helper()
		for {
			q.mu.Lock()
			w, n := q.waiters, q.idleWakes
			q.mu.Unlock()
			if w == workers && n >= wakes {
				return n
			}
			runtime.Gosched()
		}
	}
	settled(0)
	for range puts {
		if _, ok := q.put("a", queuedMsg{}, now, now); !ok {
			t.Fatal("queue closed")
		}
		settled(0) // every worker woken is back waiting
	}
	if n := settled(0); n > puts {
		t.Fatalf("%d messages put while none could be taken woke workers %d times for nothing; want at most one each", puts, n)
	}
	// The message in hand ends: one worker takes the next, and none of the
	// others is needed (PerKey 1).
	q.finish("a", false)
	select {
	case key := <-taken:
		if key != "a" {
			t.Fatalf("took %q", key)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no worker took the next message after the one in hand ended")
	}
	q.close()
}
