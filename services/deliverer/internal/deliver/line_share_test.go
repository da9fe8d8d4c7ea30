package deliver

import (
	"testing"
	"time"
)

// shareLines are lines of up to 100 tasks each and total together, on a
// stopped clock.
func shareLines(total int) *lines {
	now := time.Unix(1_700_000_000, 0)
	return testLinesSized(&now, 100, total)
}

// tenantJob is a stored task of tenant.
func tenantJob(tenant string) *job {
	j := &job{}
	j.t.Tenant = tenant
	return j
}

// When one tenant's lines hold every line's room (TotalMax), another
// tenant's task still joins its line: the last task of the first tenant's
// longest line gives it its place, and is deferred at that line's pace.
// Before, every task of the other tenant that had to wait for a slot was
// deferred by at least a second while the flood held TotalMax (until the
// flood's lines were trimmed, MaxWait after they stalled).
func TestLinesShareTheirRoomBetweenTenants(t *testing.T) {
	t.Parallel()
	ls := shareLines(10)
	for range 6 {
		if d, _, _ := ls.Join("a1", tenantJob("acme"), 10, 0); d > 0 {
			t.Fatal("acme's task deferred before TotalMax")
		}
	}
	for range 4 {
		if d, _, _ := ls.Join("a2", tenantJob("acme"), 10, 0); d > 0 {
			t.Fatal("acme's task deferred before TotalMax")
		}
	}
	a1Tail := ls.byID["a1"].q[5]
	// acme alone holds all of TotalMax: its next task is deferred.
	wantDeferred(t, ls, "a2", "acme", "acme's 11th task")

	d, first, ev := ls.Join("g", tenantJob("globex"), 10, 0)
	if d != 0 || !first {
		t.Fatalf("globex's task with acme holding TotalMax: deferral %v, first %v; want it to join its line first", d, first)
	}
	if ev == nil || ev.j != a1Tail {
		t.Fatalf("evicted %+v; want the last task of acme's longest line", ev)
	}
	if ev.delay < time.Second {
		t.Fatalf("evicted task deferred by %v; want at least a second", ev.delay)
	}
	if n, total := len(ls.byID["a1"].q), ls.Len(); n != 5 || total != 10 {
		t.Fatalf("after the eviction a1 holds %d, every line %d; want 5 and 10", n, total)
	}

	// globex may take up to its share (half of TotalMax, two tenants) ...
	for i := 2; i <= 5; i++ {
		if d, _, ev := ls.Join("g", tenantJob("globex"), 10, 0); d != 0 || ev == nil {
			t.Fatalf("globex's task %d: deferral %v, evicted %v; want joined in acme's place", i, d, ev)
		}
	}
	// ... and no more.
	wantDeferred(t, ls, "g", "globex", "globex's 6th task (over its share)")
	if got := ls.held["acme"]; got != 5 {
		t.Fatalf("acme holds %d; want its share, 5", got)
	}
	// Neither tenant is over its share now: acme's next task waits.
	wantDeferred(t, ls, "a1", "acme", "acme's task at its share")
}

// Dispatch does not defer a task at fan-out for want of every line's room
// when its tenant holds less than its share: the deliver stage makes room
// for it (Join).
func TestLinesDeferralIfFullLeavesATenantUnderItsShare(t *testing.T) {
	t.Parallel()
	ls := shareLines(10)
	fillAs(t, ls, "a1", "acme", 9)
	fillAs(t, ls, "g", "globex", 1)
	if d, full := ls.DeferralIfFull("g", 10, 0); full {
		t.Fatalf("globex's line (1 of its share of 5) deferred at fan-out by %v; want room", d)
	}
	if _, full := ls.DeferralIfFull("a1", 10, 0); !full {
		t.Fatal("acme's line (9, over its share of 5) has room at fan-out; want full")
	}
}

// A line's head (which its poller may be admitting) and first attempts
// from dispatch (no stored task to defer) are never taken out for another
// tenant.
func TestLinesEvictNeitherAHeadNorAFirstAttemptFromDispatch(t *testing.T) {
	t.Parallel()
	ls := shareLines(3)
	fillAs(t, ls, "a1", "acme", 1)
	for range 2 {
		if joined, _, _ := ls.JoinWithin("a2", directJobAs("acme"), 10, 0, time.Second); !joined {
			t.Fatal("first attempt from dispatch not let into its line")
		}
	}
	wantDeferred(t, ls, "g", "globex", "globex's task")
}

// A first attempt from dispatch of a tenant under its share waits in its
// line at TotalMax too, in another tenant's place, instead of its delivery
// being stored as a task (which the deliver stage would then place the
// same way).
func TestLinesFirstAttemptFromDispatchTakesAPlaceAtTotalMax(t *testing.T) {
	t.Parallel()
	ls := shareLines(4)
	fillAs(t, ls, "a1", "acme", 4)
	ls.Observe("g", false, ok(5*time.Millisecond))
	joined, first, ev := ls.JoinWithin("g", directJobAs("globex"), 10, 0, time.Second)
	if !joined || !first || ev == nil {
		t.Fatalf("globex's first attempt at TotalMax: joined %v, first %v, evicted %+v; want it in its line in acme's place", joined, first, ev)
	}
	if n := len(ls.byID["a1"].q); n != 3 {
		t.Fatalf("acme's line holds %d; want 3", n)
	}
}

// directJobAs is a first attempt from dispatch of tenant (a wake channel,
// no stored message).
func directJobAs(tenant string) *job {
	j := tenantJob(tenant)
	j.wake = make(chan Slot, 1)
	return j
}

// The tenant holding the most has a stored task that may give its place
// (the second of line a2), but its longest line (a1) holds only its head
// and first attempts from dispatch behind it. Found by a review: looking
// at the longest line alone, globex's task (1 of its share of 3) was
// deferred while acme held 5 of TotalMax 6.
func TestLinesEvictLooksPastALongestLineWithNothingToTake(t *testing.T) {
	t.Parallel()
	ls := shareLines(6)
	fillAs(t, ls, "a1", "acme", 1)
	for range 2 {
		if joined, _, _ := ls.JoinWithin("a1", directJobAs("acme"), 10, 0, time.Second); !joined {
			t.Fatal("first attempt from dispatch not let into its line")
		}
	}
	fillAs(t, ls, "a2", "acme", 2)
	fillAs(t, ls, "g", "globex", 1)
	takeable := ls.byID["a2"].q[1]
	d, _, ev := ls.Join("g", tenantJob("globex"), 10, 0)
	if d != 0 || ev == nil || ev.j != takeable {
		t.Fatalf("globex (1 of its share of 3) against acme holding 5 of 6: deferral %v, evicted %+v; want it joined in place of a2's last task", d, ev)
	}
}

// When no task may give its place (acme's are all the heads of their
// lines), dispatch's DeferralIfFull says the line of a tenant under its
// share is full, as Join will find it. Found by a review: it said there
// was room, dispatch stored the task and the deliver stage deferred it at
// once, two stores where deferring at fan-out makes one.
func TestLinesDeferralIfFullAgreesWithJoinAtTotalMax(t *testing.T) {
	t.Parallel()
	ls := shareLines(6)
	for _, id := range []string{"a1", "a2", "a3", "a4", "a5"} {
		fillAs(t, ls, id, "acme", 1)
	}
	fillAs(t, ls, "g", "globex", 1)
	_, full := ls.DeferralIfFull("g", 10, 0)
	d, _, _ := ls.Join("g", tenantJob("globex"), 10, 0)
	if !full && d > 0 {
		t.Fatalf("DeferralIfFull said globex's line has room, then Join deferred its task by %v (nothing of acme's may be taken)", d)
	}
}

// The tenant holding the most has an ordered subscription's line (each
// task the head of its ordering key) and a plain one: a plain task gives
// its place, not a key's head, whose deferral holds its whole key
// (holdOrdered: followers waiting in key lines are deferred with it when
// it is longer than MaxWait). Found by a review: the last of the longest
// line was taken, a key's head.
func TestLinesEvictPrefersATaskThatHeadsNoOrderingKey(t *testing.T) {
	t.Parallel()
	ls := shareLines(8)
	for range 4 {
		j := tenantJob("acme")
		j.head = true
		if d, _, _ := ls.Join("ordered", j, 10, 0); d > 0 {
			t.Fatal("deferred before TotalMax")
		}
	}
	fillAs(t, ls, "plain", "acme", 3)
	fillAs(t, ls, "g", "globex", 1)
	_, _, ev := ls.Join("g", tenantJob("globex"), 10, 0)
	if ev == nil {
		t.Fatal("nothing taken for globex")
	}
	if ev.j.head {
		t.Fatalf("took an ordering key's head (its key held with it); want the plain line's last task")
	}
}

// wantDeferred joins a task of tenant to id's line and fails the test
// unless it is deferred, nothing taken in its place.
func wantDeferred(t *testing.T, ls *lines, id, tenant, what string) {
	t.Helper()
	if d, _, ev := ls.Join(id, tenantJob(tenant), 10, 0); d < time.Second || ev != nil {
		t.Fatalf("%s: deferral %v, evicted %+v; want deferred, nothing taken", what, d, ev)
	}
}

// fillAs is fill with tenant's tasks.
func fillAs(t *testing.T, ls *lines, id, tenant string, n int) {
	t.Helper()
	for range n {
		if d, _, _ := ls.Join(id, tenantJob(tenant), 10, 0); d > 0 {
			t.Fatal("deferred before the line was full")
		}
	}
}

// The tasks of ordered subscriptions waiting for an earlier event of their
// key count toward every line's bound: lines, key lines and the stage's
// queue together fit in the consumer's MaxAckPending. Before, the lines
// took TotalMax besides whatever key lines held (key lines counted the
// lines, not the other way round), so together they could hold more than
// the window, and the consumer then handed the stage no task at all,
// whoever's it was, until they drained.
func TestLinesCountKeyLinesTowardTotalMax(t *testing.T) {
	t.Parallel()
	ls := shareLines(5)
	ls.cfg.Others = func() int { return 3 }
	fillAs(t, ls, "s", "acme", 2)
	if d, _, _ := ls.Join("s", tenantJob("acme"), 10, 0); d < time.Second {
		t.Fatalf("with 3 tasks in key lines and 2 in line (TotalMax 5), the next task was let in (deferral %v); want it deferred", d)
	}
	if _, full := ls.DeferralIfFull("s", 10, 0); !full {
		t.Fatal("DeferralIfFull: room; want full")
	}
}
