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
	seedLine(t, ls, "orders", 5, 0)
	ls.Observe("orders", false, ok(5*time.Millisecond))
	if ls.Moving("orders", directTokenWait) {
		t.Fatal("a line of stored tasks alone reads as moving: no first attempt waits there to give a token back")
	}
	// The same line with a first attempt waiting in it moves.
	waiter := &job{wake: make(chan Slot, 1)}
	if joined, _, _ := ls.JoinWithin("orders", waiter, 10, 0, DirectWait/2); !joined {
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
	seedLine(t, ls, "limited", 5, 1)
	iv := ls.interval(ls.byID["limited"], 10, 1, ls.cfg.Unmeasured)
	ahead := time.Duration(len(ls.byID["limited"].q)) * iv
	if joined, _, _ := ls.JoinWithin("limited", &job{}, 10, 1, DirectWait/2); joined {
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
	seedLine(t, ls, "orders", 1, 0)
	if joined, _, _ := ls.JoinWithin("orders", &job{wake: make(chan Slot, 1)}, 10, 0, DirectWait/2); !joined {
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
	seedLine(t, ls, "orders", 100, 0)
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
	if joined, _, _ := ls.JoinWithin("orders", &job{}, 10, 0, DirectWait/2); joined {
		t.Fatal("a first attempt joined behind 100 tasks of a line none of whose attempts ended for 6 s " +
			"(its head waits for a destination slot); want refused, as behind twice the cap before")
	}
}

// A rate limit that does not bind (1,000/s against an endpoint that
// serves 10 in parallel at 1 ms: 10,000/s) makes a first attempt store
// its task behind a line that moves and is expected to be served in
// 30 ms, where the same line without the rate limit takes it. The docs
// say "with a rate limit, what the limit serves in half a second" (500
// here); capped at twice the cap (20) while the line moves, a
// rate-limited subscription's burst would go back through tasks.
func TestJoinWithinRateLimitedMovingLineIsBoundByTime(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	for _, id := range []string{"limited", "free"} {
		ls.Observe(id, false, ok(time.Millisecond)) // fast, and an attempt ended just now: the line moves
		seedLine(t, ls, id, 30, 0)
	}
	if joined, _, _ := ls.JoinWithin("free", &job{wake: make(chan Slot, 1)}, 10, 0, DirectWait/2); !joined {
		t.Fatal("setup: a first attempt did not join the moving line without a rate limit")
	}
	iv := ls.interval(ls.byID["limited"], 10, 1000, ls.cfg.Unmeasured)
	ahead := 30 * iv
	if joined, _, _ := ls.JoinWithin("limited", &job{wake: make(chan Slot, 1)}, 10, 1000, DirectWait/2); !joined {
		t.Fatalf("refused behind 30 tasks of a moving line rate-limited at 1000/s (%s ahead at %s a task, within %s); "+
			"the same line without the rate limit took it", ahead, iv, DirectWait/2)
	}
}

// A line whose head is held by a refusal with a wait of its own (an open
// circuit that reopens in 5 s: poll's Unclaim(now+ref.Wait)) is not asked
// for again before then. Direct skips admission when tasks wait (Waiting)
// and goes straight to waitInLine: a first attempt that joined this line
// (fewer than twice the cap ahead, the line "stands still") would hold
// its dispatch worker for all of DirectWait and store its task anyway. As
// the docs say, a refusal with a wait of its own stores the task at once.
func TestJoinWithinBehindAHeadHeldPastTheWait(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.Observe("orders", false, ok(5*time.Millisecond)) // measured fast
	seedLine(t, ls, "orders", 1, 0)
	now = now.Add(time.Second)
	// poll: the head refused with a wait of its own (circuit open for 5 s).
	if !ls.Claim("orders") {
		t.Fatal("setup: the line not claimable")
	}
	ls.Unclaim("orders", now.Add(5*time.Second))
	if !ls.Fast("orders") || !ls.Waiting("orders") {
		t.Fatal("setup: Direct would not reach waitInLine")
	}
	if joined, _, _ := ls.JoinWithin("orders", &job{wake: make(chan Slot, 1)}, 10, 0, DirectWait/2); joined {
		t.Fatalf("a first attempt joined a line whose head is not asked for before %s (more than DirectWait %s): "+
			"it can only time out and store its task", 5*time.Second, DirectWait)
	}
}

// A line made only of first attempts: its head was refused for a
// destination slot again and again (backed off to PollMax, 1 s by
// default), then every waiter left at DirectWait (Remove) and the line
// emptied — idle forgets its place among the scope's waiters and its
// refusals, but not its backoff (a line of tasks that empties and
// refills keeps polling Redis at its pace). The next first attempt,
// refused by admission just now, starts a new line and kicks it (a slot
// may have been given back since): held by the old backoff, Claim would
// refuse, and since the new line is among no scope's waiters a
// destination slot freed here would wake nobody: it would wait out all
// of DirectWait. A line a first attempt starts is due at once.
func TestNewLineAfterEmptyIsNotHeldByTheOldBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.cfg.PollMax = time.Second
	ls.Observe("orders", false, ok(5*time.Millisecond))
	old := &job{wake: make(chan Slot, 1)}
	if joined, _, _ := ls.JoinWithin("orders", old, 10, 0, DirectWait/2); !joined {
		t.Fatal("setup: the first attempt did not join")
	}
	for range 8 {
		if !ls.Claim("orders") {
			now = now.Add(ls.cfg.PollMax)
			if !ls.Claim("orders") {
				t.Fatal("setup: the line not claimable")
			}
		}
		ls.Refused("orders", "dest:example.com")
	}
	if !ls.Remove("orders", old) { // it waited DirectWait
		t.Fatal("setup: the waiter not removed")
	}
	now = now.Add(10 * time.Millisecond)
	j := &job{wake: make(chan Slot, 1)}
	joined, first, _ := ls.JoinWithin("orders", j, 10, 0, DirectWait/2)
	if !joined || !first {
		t.Fatalf("setup: joined %v first %v", joined, first)
	}
	if !ls.Claim("orders") { // waitInLine's kick
		t.Fatalf("the new line's kick could not claim it: held by the emptied line's backoff until %s (%s from now); "+
			"woken by a freed destination slot: %q", ls.byID["orders"].notBefore.Format(time.StampMilli),
			ls.byID["orders"].notBefore.Sub(now), ls.Wake("dest:example.com"))
	}
}

// A line moves for take only while a first attempt waits in it: each way
// out of the line (handed a slot, timed out, trimmed, emptied) counts the
// attempt out, and a line of tasks alone never moves.
func TestMovingCountsFirstAttemptsOut(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, exit := range []struct {
		name string
		take func(ls *lines, w *job)
	}{
		{"Pop", func(ls *lines, w *job) {
			for ls.Pop("orders") != w {
			}
		}},
		{"Remove", func(ls *lines, w *job) { ls.Remove("orders", w) }},
		{"Trim", func(ls *lines, w *job) {
			ls.byID["orders"].avg = time.Hour // the endpoint slowed down: room for MinPerCap × 1
			ls.Trim("orders", 1, 0)
		}},
		{"Empty", func(ls *lines, w *job) { ls.Empty("orders") }},
	} {
		ls := testLines(&now)
		ls.Observe("orders", false, ok(time.Millisecond))
		seedLine(t, ls, "orders", 5, 0)
		if ls.Moving("orders", directTokenWait) {
			t.Fatalf("%s: a line of tasks alone moves", exit.name)
		}
		w := &job{wake: make(chan Slot, 1)}
		if joined, _, _ := ls.JoinWithin("orders", w, 10, 0, DirectWait/2); !joined {
			t.Fatalf("%s: the first attempt did not join", exit.name)
		}
		if !ls.Moving("orders", directTokenWait) {
			t.Fatalf("%s: a served line with a first attempt in it does not move", exit.name)
		}
		exit.take(ls, w)
		if ls.Moving("orders", directTokenWait) {
			t.Fatalf("%s: the line still moves after its only first attempt left", exit.name)
		}
	}
}

// seedLine puts n tasks in id's line (a cap of 10, rate limit perSecond),
// failing the test if one was deferred instead.
func seedLine(t *testing.T, ls *lines, id string, n int, perSecond float64) {
	t.Helper()
	for range n {
		if d, _, _ := ls.Join(id, &job{}, 10, perSecond); d != 0 {
			t.Fatalf("seeding %s's line deferred a task by %s", id, d)
		}
	}
}
