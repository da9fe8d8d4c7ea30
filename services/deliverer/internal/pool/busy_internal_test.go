package pool

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// queuedMsg is what the fair queue reads of a message: its size.
type queuedMsg struct{ jetstream.Msg }

func (queuedMsg) Data() []byte         { return []byte("{}") }
func (queuedMsg) Headers() nats.Header { return nil }

// The count of a key's busy messages follows every Attempting and its
// end, step by step: an attempt lets one more of the key in, its end
// counts the message busy again, so that a message finishing then lets
// none in while PerKeyBusy are busy; a message that finishes attempting
// counts as such once.
func TestFairCountsAttemptsInAndOut(t *testing.T) {
	q := newFairQueue(Fair{Workers: 8, Buffer: 100, PerKey: 7, PerKeyBusy: 2, KeepAlive: time.Minute, OthersWithin: time.Minute})
	now := time.Now()
	q.noteTaken("b") // another key shares the workers
	for range 6 {
		if _, ok := q.put("a", queuedMsg{}, now, now); !ok {
			t.Fatal("queue closed")
		}
	}
	take := func() *handling {
		t.Helper()
		if !q.mayTake("a") {
			t.Fatalf("a message of the key may not be taken with %d in hand, %d attempting", q.inHand["a"], q.attempting["a"])
		}
		if _, key, _, ok := q.take(); !ok || key != "a" {
			t.Fatalf("take = %q, %v", key, ok)
		}
		return &handling{q: q, key: "a"}
	}
	held := func(step string) {
		t.Helper()
		if q.mayTake("a") {
			t.Fatalf("%s: another message of the key may be taken with %d in hand, %d attempting (PerKeyBusy 2)", step, q.inHand["a"], q.attempting["a"])
		}
	}
	ctx := func(h *handling) context.Context { return context.WithValue(context.Background(), handlingKey{}, h) }

	h1, h2 := take(), take()
	held("two busy")
	end1 := Attempting(ctx(h1))
	end1b := Attempting(ctx(h1)) // a second attempt of the same message
	h3 := take()
	held("two busy, one attempting")
	end1()
	held("one attempt of two ended")
	end1b()
	end1b() // again: no effect
	held("both attempts ended: three busy")
	q.finish("a", h2.done())
	held("the ended attempt counts busy again")
	q.finish("a", h1.done())
	h4 := take()
	held("two busy after the first finished")

	// A message that finishes while it attempts stops counting once, and
	// an attempt's end after that changes nothing.
	end4 := Attempting(ctx(h4))
	h5 := take()
	q.finish("a", h4.done())
	end4()
	if got := q.attempting["a"]; got != 0 {
		t.Errorf("%d attempting after the only attempting message finished", got)
	}
	held("two busy after an attempting message finished")
	q.finish("a", h3.done())
	q.finish("a", h5.done())
	if q.inHand["a"] != 0 || len(q.attempting) != 0 {
		t.Errorf("in hand %d, attempting %v after every message finished", q.inHand["a"], q.attempting)
	}
}

// A key is held to PerKeyBusy while another key has messages waiting or
// in hand, or had one taken within OthersWithin, and only then.
func TestFairHoldsAKeyOnlyWhileAnotherSharesTheWorkers(t *testing.T) {
	q := newFairQueue(Fair{Workers: 8, Buffer: 100, PerKey: 7, PerKeyBusy: 1, KeepAlive: time.Minute, OthersWithin: 10 * time.Second})
	clock := time.Unix(1000, 0)
	q.now = func() time.Time { return clock }
	put := func(key string) {
		t.Helper()
		if _, ok := q.put(key, queuedMsg{}, clock, clock); !ok {
			t.Fatal("queue closed")
		}
	}
	take := func(want string) {
		t.Helper()
		if _, key, _, ok := q.take(); !ok || key != want {
			t.Fatalf("take = %q, %v; want %q", key, ok, want)
		}
	}
	may := func(step string, want bool) {
		t.Helper()
		if got := q.mayTake("a"); got != want {
			t.Errorf("%s: another message of a may be taken = %v with %d busy, want %v", step, got, q.busy("a"), want)
		}
	}
	for range 3 {
		put("a")
	}
	take("a")
	may("a alone", true)

	put("b")
	may("b waiting", false)
	take("b")
	may("b in hand", false)
	q.finish("b", false)
	may("b taken just now", false)
	clock = clock.Add(10*time.Second - time.Millisecond)
	may("b taken within OthersWithin", false)
	clock = clock.Add(time.Millisecond)
	may("b taken OthersWithin ago", true)

	// a's own takes do not hide b's: b is remembered behind them.
	put("b")
	take("b")
	q.finish("b", false)
	q.finish("a", false)
	take("a")
	clock = clock.Add(time.Second)
	may("b taken a second ago, a since", false)
	if !q.heldBack() {
		t.Error("a waits held to PerKeyBusy, but heldBack says no")
	}
	clock = clock.Add(9 * time.Second)
	may("b taken OthersWithin ago, a since", true)
	if q.heldBack() {
		t.Error("a is alone, but heldBack says it is held")
	}
}

// A key held to PerKeyBusy only because another key's message was taken
// within OthersWithin is taken once that window passes, even though
// nothing else happens meanwhile (no put, take, finish or attempt): a
// worker waiting in take must not sleep on q.cond past the window while a
// lone key's message waits.
func TestFairWakesAKeyWhenItIsLeftAlone(t *testing.T) {
	const within = 200 * time.Millisecond
	q := newFairQueue(Fair{Workers: 8, Buffer: 100, PerKey: 7, PerKeyBusy: 1, KeepAlive: time.Minute, OthersWithin: within})
	defer q.close()
	now := time.Now()
	for _, k := range []string{"a", "a", "b"} {
		if _, ok := q.put(k, queuedMsg{}, now, now); !ok {
			t.Fatal("queue closed")
		}
	}
	for _, want := range []string{"a", "b"} {
		if _, key, _, ok := q.take(); !ok || key != want {
			t.Fatalf("take = %q, %v; want %q", key, ok, want)
		}
	}
	q.finish("b", false) // b is gone: only its recent take holds a back
	q.mu.Lock()
	held := !q.mayTake("a")
	q.mu.Unlock()
	if !held {
		t.Fatal("a not held right after b was taken (setup)")
	}

	got := make(chan string, 1)
	go func() {
		_, key, _, ok := q.take()
		if ok {
			got <- key
		}
	}()
	select {
	case key := <-got:
		if key != "a" {
			t.Fatalf("took %q, want a", key)
		}
	case <-time.After(within + 2*time.Second):
		q.mu.Lock()
		may := q.mayTake("a")
		q.mu.Unlock()
		t.Fatalf("a worker still waits %v after OthersWithin passed; a may be taken now = %v (lost wakeup)", within+2*time.Second, may)
	}
}
