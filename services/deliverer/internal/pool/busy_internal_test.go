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
	q := newFairQueue(Fair{Workers: 8, Buffer: 100, PerKey: 7, PerKeyBusy: 2, KeepAlive: time.Minute})
	now := time.Now()
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
