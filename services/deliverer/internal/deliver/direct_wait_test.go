package deliver

import (
	"sync/atomic"
	"testing"
	"time"
)

// A tenant's direct tokens are all held by first attempts of a sibling
// subscription whose endpoint hangs (none given back for far longer than
// directTokenWait). The subscription asked for has a line of stored
// tasks that the deliver stage serves (an attempt ended just now), but no
// first attempt waits in it: none of the tenant's tokens will come back
// as that line moves. take gives up (tenant_busy) at once, and does not
// keep the dispatch worker waiting — up to DirectWait per event — for a
// token only the hung sibling holds.
func TestTakeDoesNotWaitForTokensHeldByAHungSibling(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	dt := &directTenants{max: 1, held: map[string]*tenantTokens{}, changed: make(chan struct{}), now: func() time.Time { return now }}

	// The sibling's first attempt takes the tenant's only token and hangs.
	if !dt.take("acme", func() bool { return false }) {
		t.Fatal("the sibling's token refused")
	}
	now = now.Add(time.Second) // none given back since: the sibling hangs

	// orders: a line of stored tasks (no first attempt waits in it), served
	// by the deliver stage — one of its attempts ended just now.
	for range 5 {
		if d, _ := ls.Join("orders", &job{}, 10, 0); d != 0 {
			t.Fatalf("seeding orders' line deferred a task by %s", d)
		}
	}
	ls.Observe("orders", false, ok(5*time.Millisecond))
	if ls.Moving("orders", directTokenWait) {
		t.Fatal("a line of stored tasks alone reads as moving: no first attempt waits there to give a token back")
	}
	// The same line with a first attempt waiting in it moves.
	waiter := &job{wake: make(chan Slot, 1)}
	if joined, _ := ls.JoinWithin("orders", waiter, 10, 0, DirectWait/2); !joined {
		t.Fatal("setup: the first attempt did not join orders' line")
	}
	if !ls.Moving("orders", directTokenWait) {
		t.Fatal("a served line with a first attempt waiting in it does not read as moving")
	}
	if !ls.Remove("orders", waiter) {
		t.Fatal("setup: the first attempt not removed")
	}

	var asks atomic.Int32
	var stop atomic.Bool
	again := make(chan struct{})
	got := make(chan bool, 1)
	go func() {
		got <- dt.take("acme", func() bool {
			if asks.Add(1) == 2 {
				close(again)
			}
			return !stop.Load() && ls.Moving("orders", directTokenWait)
		})
	}()
	select {
	case took := <-got:
		if took {
			t.Fatal("a token taken while the sibling holds the tenant's share")
		}
	case <-again:
		// It waited directTokenWait and asks again: it keeps waiting for
		// the sibling's token, as long as orders' tasks are served.
		stop.Store(true)
		dt.give("acme") // end the wait
		<-got
		t.Fatal("a first attempt to orders kept waiting for a direct token held by its sibling's hung attempt, " +
			"because orders' line moves through stored tasks (no first attempt waits there to give one back)")
	}
}

// A rate-limited subscription's line is served at its rate: behind 5
// tasks at 1/s the wait is about 5 s, ten times the half of DirectWait
// that JoinWithin bounds it by. A floor of twice the cap would ignore the
// rate limit: a first attempt would join, hold its dispatch worker for
// all of DirectWait and then store its task anyway.
func TestJoinWithinHonoursTheRateLimit(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.Observe("limited", false, ok(5*time.Millisecond)) // a fast endpoint
	for range 5 {
		if d, _ := ls.Join("limited", &job{}, 10, 1); d != 0 {
			t.Fatalf("seeding the line deferred a task by %s", d)
		}
	}
	iv := ls.interval(ls.byID["limited"], 10, 1, ls.cfg.Unmeasured)
	ahead := time.Duration(len(ls.byID["limited"].q)) * iv
	if joined, _ := ls.JoinWithin("limited", &job{}, 10, 1, DirectWait/2); joined {
		t.Fatalf("joined behind 5 tasks at 1/s (%s ahead at the line's own pace of %s a task); want refused: more than %s",
			ahead, iv, DirectWait/2)
	}
}

// Moving means an attempt of the line ended within the window: an
// attempt that only began (Begin, which also marks progress when none
// was in flight) does not make a line whose endpoint has just started to
// hang — no attempt ended for a second — read as moving.
func TestMovingMeansAnAttemptEnded(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.Observe("orders", false, ok(5*time.Millisecond))
	if d, _ := ls.Join("orders", &job{}, 10, 0); d != 0 {
		t.Fatalf("seeding the line deferred a task by %s", d)
	}
	if joined, _ := ls.JoinWithin("orders", &job{wake: make(chan Slot, 1)}, 10, 0, DirectWait/2); !joined {
		t.Fatal("setup: a first attempt did not join the line")
	}
	if !ls.Moving("orders", directTokenWait) {
		t.Fatal("setup: the line does not move just after an attempt ended")
	}
	now = now.Add(time.Second) // no attempt ended since
	ls.Begin("orders")         // the head's attempt is sent, and hangs
	if ls.Moving("orders", directTokenWait) {
		t.Fatal("Moving: true for a line none of whose attempts ended for a second (an attempt only began)")
	}
}

// A line that stands still — its head refused for a shared slot (the
// destination's cap, held by another subscription to the same host), no
// attempt of it in flight or ended for seconds — is still taken to move
// at avg/cap, its last measured pace: a first attempt would join behind
// 100 tasks (Fast lets it through: nothing in flight), hold its dispatch
// worker for all of DirectWait and store its task anyway. It is refused
// behind twice the cap, as before any pace was known.
func TestJoinWithinBehindALineThatStandsStill(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.Observe("orders", false, ok(5*time.Millisecond)) // measured fast
	for range 100 {
		if d, _ := ls.Join("orders", &job{}, 10, 0); d != 0 {
			t.Fatalf("seeding the line deferred a task by %s", d)
		}
	}
	// Its head is refused for want of a destination slot, again and again.
	for range 6 {
		if !ls.Claim("orders") {
			now = now.Add(time.Second)
			if !ls.Claim("orders") {
				t.Fatal("setup: the line not claimable")
			}
		}
		ls.Refused("orders", "dest:example.com")
		now = now.Add(time.Second)
	}
	if !ls.Fast("orders") {
		t.Fatal("setup: orders not fast: no first attempt would be made")
	}
	if ls.Moving("orders", directTokenWait) {
		t.Fatal("setup: the line moves")
	}
	if joined, _ := ls.JoinWithin("orders", &job{}, 10, 0, DirectWait/2); joined {
		t.Fatal("a first attempt joined behind 100 tasks of a line none of whose attempts ended for 6 s " +
			"(its head waits for a destination slot); want refused, as behind twice the cap before")
	}
}
