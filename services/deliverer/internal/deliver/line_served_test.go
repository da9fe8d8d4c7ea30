package deliver

import (
	"testing"
	"time"
)

// What a line's deferrals are priced at when the attempts it is served
// with change: attempts begun since it stalled, a hold, a cap that grows,
// a line that empties for a moment. Found by a review of the served pace.

// serveRounds serves l's line rounds times, n attempts at a time, each
// taking d: every task served is taken from the line and a new one joins
// (a flood keeps the line full). The clock moves d a round.
func serveRounds(ls *lines, now *time.Time, id string, rounds, n, limit int, d time.Duration) {
	for range rounds {
		for range n {
			ls.Pop(id)
			ls.Join(id, &job{}, limit, 0)
			ls.Begin(id)
		}
		*now = now.Add(d)
		for range n {
			ls.Observe(id, false, ok(d))
		}
	}
}

// Attempts begun long after the last end have not stalled as long as the
// others and do not count as stalled. Before, every attempt in flight did:
// a 20ms endpoint (cap 10, line of 5,000) with one tail attempt 1s in
// flight and nine more admitted 10ms before (slots another replica or the
// tenant's other lines gave back, answering within 20ms) was priced at
// 742ms an attempt instead of 142.5ms, its overflow deferred about 14
// minutes instead of 2.8: more attempts in flight, a 5× longer deferral.
func TestLineStallIgnoresAttemptsJustBegun(t *testing.T) {
	t.Parallel()
	defer1 := func(fresh int) time.Duration {
		now := time.Unix(1_700_000_000, 0)
		ls := testLinesSized(&now, 5000, 7500)
		ls.Observe("s", false, ok(20*time.Millisecond))
		fill(t, ls, "s", 5000, 10)
		serveRounds(ls, &now, "s", 50, 10, 10, 20*time.Millisecond) // 1s at the cap
		ls.Begin("s")                                               // the tail
		now = now.Add(990 * time.Millisecond)
		for range fresh {
			ls.Begin("s")
		}
		now = now.Add(10 * time.Millisecond)
		d, _, _ := ls.Join("s", &job{}, 10, 0)
		return d
	}
	alone, withFresh := defer1(0), defer1(9)
	t.Logf("tail alone: %s; tail and 9 attempts begun 10ms ago: %s", alone, withFresh)
	if withFresh > alone {
		t.Fatalf("nine attempts begun 10ms ago at a 20ms endpoint lengthen the overflow's deferral from %s to %s; want no longer", alone, withFresh)
	}
}

// Time with nothing in flight does not move served. Before, a line with
// nothing in flight here for a few seconds while its head was held (a
// Retry-After, a half-open circuit's probe, admission errors) was priced
// at one attempt at a time for its whole backlog: a 200ms endpoint served
// at its cap (10) with a line of 500, held 5s, deferred its overflow
// 501 × 200ms = 100s; once the hold ends the line takes 500 × 20ms = 10s.
func TestLineHeldIsNotPricedOneAtATime(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLinesSized(&now, 5000, 7500)
	ls.Observe("s", false, ok(200*time.Millisecond))
	fill(t, ls, "s", 500, 10)
	serveRounds(ls, &now, "s", 10, 10, 10, 200*time.Millisecond) // 2s at the cap
	now = now.Add(5 * time.Second)                               // held, nothing in flight
	d, _, _ := ls.Join("s", &job{}, 10, 0)
	t.Logf("overflow after a 5s hold deferred %s (501 × 20ms = 10s)", d)
	if limit := 30 * time.Second; d > limit {
		t.Fatalf("after a 5s hold the overflow of a line served at its cap is deferred %s; want at most %s (2 × (hold + 500 × 20ms))", d, limit)
	}
}

// served moves with a cap that grows. Before, it followed a growing
// adaptive limit a second late: a 100ms endpoint without max_in_flight
// whose limit grew 10 → 20 → 40 → 64 as it drained a burst had its
// overflow priced at what it had a second before, not at the 64 it is
// served with.
func TestLineServedFollowsAGrowingCap(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLinesSized(&now, 5000, 7500)
	ls.Observe("s", true, ok(100*time.Millisecond))
	for range 400 { // 10s at 100ms / 10 (room 1,000 at the cap)
		ls.Join("s", &job{}, ls.Limit("s", 0), 0)
	}
	for range 5 {
		n := ls.Limit("s", 0)
		for range n {
			ls.Pop("s")
			ls.Join("s", &job{}, n, 0)
			ls.Begin("s")
		}
		now = now.Add(100 * time.Millisecond)
		for range n {
			ls.Observe("s", true, ok(100*time.Millisecond))
		}
	}
	limit := ls.Limit("s", 0)
	if limit != 64 {
		t.Fatalf("limit %d; want 64", limit)
	}
	for {
		if d, _, _ := ls.Join("s", &job{}, limit, 0); d > 0 {
			break
		}
	}
	d, _, _ := ls.Join("s", &job{}, limit, 0)
	want := time.Duration(ls.Len()+2) * 100 * time.Millisecond / 64
	t.Logf("limit %d, %d in line: overflow deferred %s (at 100ms / 64: %s)", limit, ls.Len(), d, want)
	if d > want*3/2 {
		t.Fatalf("a line served 64 at a time (limit grown from 10) defers its overflow by %s; want about %s", d, want)
	}
}

// A line that empties for a moment keeps the share it was served at.
// Before, it started again at its cap: a 2s endpoint (cap 10) served three
// at a time for 10s (tenant share, other replicas) whose last task was
// taken and a new one joined a moment later was priced at 2s / 10 again,
// 3.3× too fast, and its overflow came back before its turn to be
// deferred again.
func TestLineEmptiedForAMomentKeepsItsShare(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("s", false, ok(2*time.Second))
	fill(t, ls, "s", 50, 10)
	serveRounds(ls, &now, "s", 5, 3, 10, 2*time.Second)
	for ls.Pop("s") != nil { // the line drains for a moment
	}
	now = now.Add(time.Millisecond)
	fill(t, ls, "s", 50, 10)
	d, _, _ := ls.Join("s", &job{}, 10, 0)
	want := 51 * 2 * time.Second / 3
	t.Logf("overflow deferred %s; served three at a time: %s", d, want)
	if d < want*2/3 {
		t.Fatalf("a line served three at a time, emptied for 1ms, defers its overflow by %s; want about %s", d, want)
	}
}
