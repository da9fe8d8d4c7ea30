package deliver

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

func testLines(now *time.Time) *lines { return testLinesSized(now, 100, 150) }

// testLinesSized is testLines with perLine and total as the bounds of a
// line and of every line together.
func testLinesSized(now *time.Time, perLine, total int) *lines {
	return newLines(lineConfig{
		MaxWait: 10 * time.Second, PerLineMax: perLine, TotalMax: total, MinPerCap: 4,
		Unmeasured: 15 * time.Second, DefaultLimit: 10, DefaultCeiling: 64,
		Now: func() time.Time { return *now },
	})
}

func ok(d time.Duration) sender.Result { return sender.Result{Status: http.StatusOK, Duration: d} }

// fill joins n tasks to id's line, capped at limit, and fails the test if
// one of them is deferred: the line had room for them.
func fill(t *testing.T, ls *lines, id string, n, limit int) {
	t.Helper()
	for range n {
		if d, _, _ := ls.Join(id, &job{}, limit, 0); d > 0 {
			t.Fatal("deferred before the line was full")
		}
	}
}

// Before any attempt was measured a line holds MinPerCap × its cap; a fast
// endpoint's line holds up to PerLineMax; a slow one's what it serves in
// MaxWait; and every line together at most TotalMax.
func TestLineRoom(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name    string
		observe []sender.Result
		limit   int
		want    int
	}{
		{name: "unmeasured", limit: 10, want: 40},
		{name: "fast endpoint", observe: []sender.Result{ok(time.Millisecond)}, limit: 10, want: 100},
		{name: "1s endpoint, cap 5", observe: []sender.Result{ok(time.Second)}, limit: 5, want: 50},
		{name: "slow endpoint keeps the minimum", observe: []sender.Result{ok(10 * time.Second)}, limit: 2, want: 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ls := testLines(&now)
			for _, r := range tt.observe {
				ls.Observe("sub", false, r)
			}
			got := 0
			for {
				if d, _, _ := ls.Join("sub", &job{}, tt.limit, 0); d > 0 {
					break
				}
				got++
			}
			if got != tt.want {
				t.Fatalf("the line took %d tasks; want %d", got, tt.want)
			}
		})
	}
	t.Run("total", func(t *testing.T) {
		ls := testLines(&now)
		for _, id := range []string{"a", "b"} {
			ls.Observe(id, false, ok(time.Millisecond))
			for range 100 {
				ls.Join(id, &job{}, 10, 0)
			}
		}
		if n := ls.Len(); n != 150 {
			t.Fatalf("%d tasks in line; want the total bound 150", n)
		}
	})
}

// Tasks that find their line full are deferred one after the other at the
// line's expected pace, behind what is in line, at least a second each.
func TestLineFullDefersByExpectedWait(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("sub", false, ok(time.Second)) // cap 10 → 10 tasks/s
	fill(t, ls, "sub", 100, 10)
	// 100 in line at 10/s: the first deferred task is due after 10.1s,
	// each next one 0.1s later.
	for i := range 5 {
		d, _, _ := ls.Join("sub", &job{}, 10, 0)
		want := 10*time.Second + time.Duration(i+1)*100*time.Millisecond
		if d != want {
			t.Fatalf("deferral %d: %s; want %s", i+1, d, want)
		}
	}
	// Unmeasured, the pace is a fast endpoint's (10ms / cap), not the
	// timeout's: 40 in line, then 1s at least.
	ls3 := testLines(&now)
	var d3 time.Duration
	for range 40 + 500 {
		d3, _, _ = ls3.Join("u", &job{}, 10, 0)
	}
	if d3 < time.Second || d3 > 2*time.Second {
		t.Fatalf("the 500th overflow of an unmeasured line is deferred %s; want 1–2s", d3)
	}
	// However crowded, at most maxDeferral.
	for range 100000 {
		d3, _, _ = ls3.Join("u", &job{}, 1, 0.001)
	}
	if d3 != 15*time.Minute {
		t.Fatalf("deferred %s; want the 15m bound", d3)
	}
	// A rate limit slows the pace: 1/s.
	ls2 := testLines(&now)
	ls2.Observe("r", false, ok(time.Millisecond))
	var last time.Duration
	for range 200 {
		d, _, _ := ls2.Join("r", &job{}, 10, 1)
		last = d
	}
	if last < 100*time.Second {
		t.Fatalf("the last of 200 tasks at 1/s (10 in line) is deferred %s; want over 100s", last)
	}
}

// An attempt in flight for longer than the line's average says the
// endpoint is slower than measured: a task that finds the line full is
// deferred at least at that pace. A flood to an endpoint whose first
// answer (2s) had not come yet was deferred at a fast endpoint's pace
// (10ms / cap), so the whole flood was due again within seconds and
// deferred a second time while every other tenant waited behind the
// broker's work.
func TestLineFullDefersAtTheStalledAttemptsPace(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	fill(t, ls, "u", 40, 10)
	for range 10 {
		ls.Begin("u") // the probe and the rest of the cap, unanswered
	}
	now = now.Add(500 * time.Millisecond)
	var d time.Duration
	for range 100 {
		d, _, _ = ls.Join("u", &job{}, 10, 0)
	}
	// 40 in line and 100 deferred, 50ms apart (500ms in flight / cap 10).
	if want := 140 * 50 * time.Millisecond; d != want {
		t.Fatalf("the 100th overflow behind a probe in flight 500ms is deferred %s; want %s", d, want)
	}
	// Once it answers, the measured average is the pace again, of the
	// tasks deferred before too: the 140 reserved are 28s at 2s / cap 10,
	// and the next overflow (after 10 more in line, room 50) comes 200ms
	// behind them.
	ls.Observe("u", false, ok(2*time.Second))
	for range 10 {
		ls.Join("u", &job{}, 10, 0)
	}
	if d, _, _ = ls.Join("u", &job{}, 10, 0); d != 28200*time.Millisecond {
		t.Fatalf("the next overflow once measured at 2s is deferred %s; want 141 × 200ms", d)
	}
	// A line in flight for less than its average keeps the average.
	ls2 := testLines(&now)
	ls2.Observe("m", false, ok(time.Second))
	ls2.Begin("m")
	now = now.Add(100 * time.Millisecond)
	for range 100 { // room for 10s at 1s / cap 10
		ls2.Join("m", &job{}, 10, 0)
	}
	if d, _, _ := ls2.Join("m", &job{}, 10, 0); d != 10100*time.Millisecond {
		t.Fatalf("first overflow of a line measured at 1s with an attempt 100ms in flight is deferred %s; want 10.1s", d)
	}
}

// A measured line's attempts in flight that stopped ending count as their
// answers arriving now, each weighed as Observe weighs it (an eighth, in
// turn). One attempt 1s in flight at a fast endpoint (20ms, cap 1) whose
// line of 100 is full: its overflow is deferred at 142.5ms a task, what
// that answer will make the average, not at 1s (a full line deferred by
// minutes for one tail answer); when it ends fast, the average is the pace
// again. All ten of a cap stalled 1s (the endpoint turned slow: the
// fairness scenario's flood): 742ms, what their ten answers will make it
// (1s − 980ms × (7/8)^10), not 142.5ms as if one of them answered, so that
// the flood fanned out meanwhile is not all due again, and deferred again,
// within seconds.
func TestLineFullWeighsAStallAsTheAnswersInFlight(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("s", false, ok(20*time.Millisecond))
	fill(t, ls, "s", 100, 1)
	ls.Begin("s")
	now = now.Add(time.Second)
	if d, _, _ := ls.Join("s", &job{}, 1, 0); d != 101*142500*time.Microsecond {
		t.Fatalf("one attempt 1s in flight at a 20ms endpoint: its overflow is deferred %s; want 101 × 142.5ms", d)
	}
	ls.Observe("s", false, ok(20*time.Millisecond))
	now = now.Add(time.Hour) // past the reservation
	if d, _, _ := ls.Join("s", &job{}, 1, 0); d != 101*20*time.Millisecond {
		t.Fatalf("once the attempt answered in 20ms, the overflow is deferred %s; want 101 × 20ms", d)
	}

	all := testLines(&now)
	all.Observe("s", false, ok(20*time.Millisecond))
	fill(t, all, "s", 100, 10)
	for range 10 {
		all.Begin("s")
	}
	now = now.Add(time.Second)
	d, _, _ := all.Join("s", &job{}, 10, 0)
	if want := 101 * 74218 * time.Microsecond; d < want-101*time.Microsecond || d > want+101*time.Microsecond {
		t.Fatalf("ten attempts 1s in flight at a 20ms endpoint: the overflow is deferred %s; want 101 × 742.18ms / 10", d)
	}
}

// A line is served at what admission lets it have, which can be less than
// its cap: the tenant's share of the workers split between its busy lines,
// a destination's cap, the slots other replicas hold. A 2s endpoint (cap
// 10) whose line of 50 is full, served six at a time for six seconds,
// defers its overflow at 2s / 6 a task, 51 × 333ms, not 2s / 10 (17s, not
// 10.2s): at the cap's pace the overflow came back faster than the line
// was served, and was deferred again.
func TestLineFullDefersAtThePaceTheLineIsServed(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("s", false, ok(2*time.Second))
	fill(t, ls, "s", 50, 10)
	serveRounds(ls, &now, "s", 3, 6, 10, 2*time.Second)
	d, _, _ := ls.Join("s", &job{}, 10, 0)
	if want := 51 * 2 * time.Second / 6; d < want-want/100 || d > want+want/100 {
		t.Fatalf("the overflow of a line served six at a time is deferred %s; want about 51 × 2s / 6 = %s", d, want)
	}
}

// The pace a line is served at starts from its cap when tasks begin to
// wait in it: a subscription that had one attempt at a time in flight for
// as long as it had no backlog defers the first overflow of a burst at its
// cap's pace (51 × 2s / 10), not at the trickle's one at a time.
func TestLineServedStartsAtTheCapWhenTasksBeginToWait(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	for range 5 {
		ls.Begin("s")
		now = now.Add(2 * time.Second)
		ls.Observe("s", false, ok(2*time.Second))
	}
	fill(t, ls, "s", 50, 10)
	if d, _, _ := ls.Join("s", &job{}, 10, 0); d != 51*200*time.Millisecond {
		t.Fatalf("a burst's first overflow after a trickle is deferred %s; want 51 × 2s / 10", d)
	}
}

// The tasks deferred before are a count, priced at the pace of the
// moment: a fast line of 500 (20ms, cap 1) with its attempt 14s in flight
// defers its first overflow by about 15 minutes, what that answer would
// make its pace; once another attempt answers fast, 1s later the next
// overflow is priced at that 1s stall (about 71s: 500 in line at 142.5ms,
// and the one reserved), not behind the 15 minutes reserved.
func TestLineFullRepricesWhatItReservedWhenThePaceChanges(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLinesSized(&now, 5000, 7500) // the deliverer's defaults
	ls.Observe("s", false, ok(20*time.Millisecond))
	fill(t, ls, "s", 500, 1)
	ls.Begin("s") // the tail attempt
	now = now.Add(14 * time.Second)
	if d, _, _ := ls.Join("s", &job{}, 1, 0); d < 14*time.Minute {
		t.Fatalf("first overflow behind a 14s stall deferred %s; want about 15m", d)
	}
	ls.Begin("s")
	now = now.Add(20 * time.Millisecond)
	ls.Observe("s", false, ok(20*time.Millisecond))
	now = now.Add(time.Second)
	if d, _, _ := ls.Join("s", &job{}, 1, 0); d < 71*time.Second || d > 72*time.Second {
		t.Fatalf("next overflow, 1s after a fast answer, deferred %s; want about 71s", d)
	}
}

// An unmeasured line's stalled attempts count for at most the timeout (an
// attempt cannot take longer): an attempt whose end was never noted, an
// hour ago, paces the line at 15s / cap, not an hour / cap.
func TestLineFullBoundsAnUnmeasuredStallByTheTimeout(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Begin("u")
	now = now.Add(time.Hour)
	for range 40 {
		ls.Join("u", &job{}, 10, 0)
	}
	if d, _, _ := ls.Join("u", &job{}, 10, 0); d != 41*1500*time.Millisecond {
		t.Fatalf("overflow behind an attempt an hour in flight is deferred %s; want 41 × 15s / 10", d)
	}
}

// What a line reserves for its deferred tasks reaches no further than
// maxDeferral: an endpoint that timed out (15s, cap 10: 1.5s a task)
// while 1,000 tasks overflowed had reserved 26 minutes; 16 minutes on, its
// pace unchanged, a later burst's overflow is deferred behind its own line
// (41 × 1.5s), not by the 10 minutes left of that reservation.
func TestLineFullForgetsAReservationPastMaxDeferral(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("s", false, sender.Result{ErrorClass: sender.ClassTimeout, Duration: 15 * time.Second})
	for range 40 + 1000 {
		ls.Join("s", &job{}, 10, 0)
	}
	for ls.Pop("s") != nil {
	}
	now = now.Add(16 * time.Minute)
	for range 40 {
		ls.Join("s", &job{}, 10, 0)
	}
	if d, _, _ := ls.Join("s", &job{}, 10, 0); d != 41*1500*time.Millisecond {
		t.Fatalf("16 minutes after 1,000 tasks overflowed: the next overflow is deferred %s; want 41 × 1.5s", d)
	}
}

// DeferralIfFull, dispatch's question, says nothing and reserves nothing
// while the line has room; once it is full it defers as Join does, and
// the two share the tasks deferred before: a deferral at fan-out and the
// deliver stage's next one are spaced by the line's pace, not stacked.
func TestDeferralIfFullSharesJoinsEstimate(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("sub", false, ok(time.Second)) // cap 10 → 10 tasks/s
	if d, full := ls.DeferralIfFull("unknown", 10, 0); full || d != 0 {
		t.Fatalf("a line never seen: %s, full %v; want room", d, full)
	}
	for range 100 {
		if d, full := ls.DeferralIfFull("sub", 10, 0); full || d != 0 {
			t.Fatalf("a line with room: %s, full %v; want room", d, full)
		}
		if d, _, _ := ls.Join("sub", &job{}, 10, 0); d > 0 {
			t.Fatal("deferred before the line was full")
		}
	}
	d, full := ls.DeferralIfFull("sub", 10, 0)
	if !full || d != 10*time.Second+100*time.Millisecond {
		t.Fatalf("a full line: %s, full %v; want 10.1s", d, full)
	}
	if d, _, _ := ls.Join("sub", &job{}, 10, 0); d != 10*time.Second+200*time.Millisecond {
		t.Fatalf("the deliver stage's deferral after dispatch's: %s; want 10.2s", d)
	}
	// Every line together at TotalMax (150): a line with tasks is full
	// for dispatch as for Join, an empty one is not (its task would ask
	// admission first).
	ls.Observe("other", false, ok(time.Second))
	for range 50 {
		if d, _, _ := ls.Join("other", &job{}, 10, 0); d > 0 {
			t.Fatal("another line deferred before TotalMax")
		}
	}
	if _, full := ls.DeferralIfFull("other", 10, 0); !full {
		t.Fatal("a line with tasks while all lines hold TotalMax: room; want full")
	}
	if _, full := ls.DeferralIfFull("empty", 10, 0); full {
		t.Fatal("an empty line while all lines hold TotalMax: full; want room")
	}
}

// Arrival order: Pop returns tasks as they joined; Remove takes one out.
func TestLineOrder(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	jobs := []*job{{seq: 1}, {seq: 2}, {seq: 3}}
	for i, j := range jobs {
		if _, first, _ := ls.Join("sub", j, 10, 0); first != (i == 0) {
			t.Fatalf("join %d: first %v", i+1, first)
		}
	}
	if !ls.Remove("sub", jobs[1]) || ls.Remove("sub", jobs[1]) {
		t.Fatal("Remove: want true once, then false")
	}
	if a, b, c := ls.Pop("sub"), ls.Pop("sub"), ls.Pop("sub"); a != jobs[0] || b != jobs[2] || c != nil {
		t.Fatal("Pop out of arrival order")
	}
}

// A subscription without max_in_flight grows by one slot per fast 2xx
// while tasks wait, up to the ceiling; a 5xx, a 429, a timeout or a slow
// answer halves it, never below the default; a 404 or a cancelled attempt
// leaves it; an explicit max_in_flight is what it says.
func TestAdaptiveLimit(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Join("sub", &job{}, 10, 0) // something waits
	for range 20 {
		ls.Observe("sub", true, ok(time.Millisecond))
	}
	if n := ls.Limit("sub", 0); n != 30 {
		t.Fatalf("after 20 fast successes: limit %d; want 30", n)
	}
	for range 100 {
		ls.Observe("sub", true, ok(time.Millisecond))
	}
	if n := ls.Limit("sub", 0); n != 64 {
		t.Fatalf("limit %d; want the ceiling 64", n)
	}
	steps := []struct {
		res  sender.Result
		want int
	}{
		{sender.Result{Status: 404, Duration: time.Millisecond, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("404")}, 64},
		{sender.Result{ErrorClass: sender.ClassCanceled, Err: errors.New("canceled")}, 64},
		{sender.Result{Status: 500, Duration: time.Millisecond, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("500")}, 32},
		{sender.Result{Status: 429, Duration: time.Millisecond, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("429")}, 16},
		{ok(time.Second), 10},
		{sender.Result{ErrorClass: sender.ClassTimeout, Duration: 15 * time.Second, Err: errors.New("timeout")}, 10},
	}
	for i, s := range steps {
		ls.Observe("sub", true, s.res)
		if n := ls.Limit("sub", 0); n != s.want {
			t.Fatalf("step %d (%+v): limit %d; want %d", i+1, s.res, n, s.want)
		}
	}
	// Nothing waiting: no growth.
	ls.Empty("sub")
	ls.Observe("sub", true, ok(time.Millisecond))
	if n := ls.Limit("sub", 0); n != 10 {
		t.Fatalf("grew to %d with nothing waiting", n)
	}
	if n := ls.Limit("sub", 3); n != 3 {
		t.Fatalf("explicit max_in_flight 3: limit %d", n)
	}
}

// Trim keeps what a line may hold at its current pace and hands back the
// rest with their deferrals: an endpoint that slowed down after its tasks
// joined does not keep half of MaxAckPending waiting.
func TestLineTrim(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Observe("sub", false, ok(time.Millisecond))
	for range 100 {
		ls.Join("sub", &job{}, 10, 0)
	}
	if out := ls.Trim("sub", 10, 0); len(out) != 0 {
		t.Fatalf("trimmed %d of a line within its room", len(out))
	}
	for range 30 { // the endpoint now takes 5 s
		ls.Observe("sub", false, ok(5*time.Second))
	}
	out := ls.Trim("sub", 10, 0)
	if len(out) != 60 || ls.Len() != 40 {
		t.Fatalf("trimmed %d, %d left; want 60 deferred and 40 (4 × cap) kept", len(out), ls.Len())
	}
	for i, o := range out {
		if o.delay < time.Second || o.j == nil || (i > 0 && o.delay < out[i-1].delay) {
			t.Fatalf("overflow %d: %+v; want growing deferrals of at least 1s", i, o)
		}
	}
	// A tiny stored rate neither overflows nor defers past the bound.
	ls2 := testLines(&now)
	for range 200 {
		if d, _, _ := ls2.Join("r", &job{}, 10, 1e-300); d > maxDeferral {
			t.Fatalf("deferred %s", d)
		}
	}
}

// An endpoint measured fast that starts to hang is not fast any more once
// its attempts in flight have gone FastAttempt without one ending, before
// any slow answer is measured (the flood of make bench -only=fair: its
// first attempts from dispatch, taken for fast, held dispatch's workers
// for the endpoint's 2 s). Attempts that keep ending keep it fast.
func TestFastEndsWhenAttemptsInFlightStopEnding(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	ls.Begin("s")
	ls.Observe("s", true, ok(time.Millisecond))
	if !ls.Fast("s") {
		t.Fatal("a 1 ms endpoint is not fast")
	}
	for range 5 {
		ls.Begin("s")
	}
	now = now.Add(FastAttempt / 2)
	if !ls.Fast("s") {
		t.Fatal("attempts in flight for less than FastAttempt made it slow")
	}
	ls.Observe("s", true, ok(time.Millisecond)) // one ends: progress
	now = now.Add(FastAttempt * 3 / 4)
	if !ls.Fast("s") {
		t.Fatal("an attempt ended within FastAttempt, yet it is slow")
	}
	now = now.Add(FastAttempt)
	if ls.Fast("s") {
		t.Fatal("4 attempts in flight, none ended for longer than FastAttempt: still fast")
	}
	for range 4 {
		ls.Observe("s", true, ok(time.Millisecond))
	}
	if !ls.Fast("s") {
		t.Fatal("every attempt ended fast: not fast again")
	}
}

// A subscription not measured here is let through once, as a probe, and
// then not again until an attempt has answered: a burst to a new
// subscription sends one first attempt from dispatch, not one per worker.
func TestFastLetsAnUnmeasuredSubscriptionProbeOnce(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_700_000_000, 0)
	ls := testLines(&now)
	if !ls.Fast("new") {
		t.Fatal("an unmeasured subscription's first delivery is not let through")
	}
	if ls.Fast("new") {
		t.Fatal("a second delivery let through while the probe has not answered")
	}
	ls.Begin("new")
	ls.Observe("new", true, ok(3*time.Second)) // the probe answers, slowly
	if ls.Fast("new") {
		t.Fatal("measured slow, yet let through")
	}
}

// A line refused for want of a slot backs off: 20ms, doubled by each
// refusal in a row, at most PollMax; an admission starts it over.
func TestLineBackoff(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.cfg.PollEvery, ls.cfg.PollMax = 20*time.Millisecond, time.Second
	ls.Join("a", &job{}, 10, 0)
	var got []time.Duration
	for range 8 {
		if !ls.Claim("a") {
			t.Fatalf("line not due after its backoff (%v so far)", got)
		}
		ls.Refused("a", "dest:x:80")
		l := ls.byID["a"]
		got = append(got, l.notBefore.Sub(now))
		now = l.notBefore
	}
	want := []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backoff %v; want %v", got, want)
	}
	if !ls.Claim("a") {
		t.Fatal("line not due")
	}
	ls.Admitted("a")
	ls.Refused("a", "dest:x:80")
	if d := ls.byID["a"].notBefore.Sub(now); d != 20*time.Millisecond {
		t.Fatalf("backoff after an admission %s; want 20ms", d)
	}
}

// A freed slot wakes the line that has waited longest for its scope, once;
// a woken line refused again for the same scope (somebody else took the
// slot) keeps its place at the front; one refused for another reason
// hands the wake on; a wake that finds the line being polled makes it ask
// once more.
func TestLineWake(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	const dest = "dest:x:80"
	for _, id := range []string{"a", "b", "c"} {
		ls.Join(id, &job{}, 10, 0)
		if !ls.Claim(id) {
			t.Fatalf("%s not claimed", id)
		}
		ls.Refused(id, dest)
	}
	if ls.Claim("a") {
		t.Fatal("a claimed before its backoff")
	}
	if id := ls.Wake("tenant:acme"); id != "" {
		t.Fatalf("a tenant's slot woke %q; nobody waits for one", id)
	}
	if id := ls.Wake(dest); id != "a" {
		t.Fatalf("woke %q; want a, refused first", id)
	}
	if !ls.Claim("a") {
		t.Fatal("woken a not due at once")
	}
	// Somebody else took the slot: a stays first.
	if again, pass := ls.Refused("a", dest); again || pass != "" {
		t.Fatalf("Refused = %v, %q", again, pass)
	}
	if id := ls.Wake(dest); id != "a" {
		t.Fatalf("woke %q; want a again", id)
	}
	if !ls.Claim("a") {
		t.Fatal("woken a not due at once")
	}
	// a is refused for its own cap now: the destination's slot goes on to b.
	if _, pass := ls.Refused("a", ""); pass != dest {
		t.Fatalf("the unused wake passes %q; want %q", pass, dest)
	}
	if id := ls.Wake(dest); id != "b" {
		t.Fatalf("woke %q; want b", id)
	}
	// c is being polled when its slot frees: it asks once more.
	now = now.Add(time.Second)
	if !ls.Claim("c") {
		t.Fatal("c not due")
	}
	if id := ls.Wake(dest); id != "" {
		t.Fatalf("woke %q; c is being polled and asks again itself", id)
	}
	if again, _ := ls.Refused("c", dest); !again {
		t.Fatal("c, woken while polled, does not ask again")
	}
	// An emptied line leaves the waiters.
	ls.Pop("b")
	if id := ls.Wake(dest); id != "" {
		t.Fatalf("woke %q; b is empty and c is being polled", id)
	}
	if len(ls.waiters) != 0 {
		t.Fatalf("waiters left: %v", ls.waiters)
	}
}

// A first attempt from dispatch may wait behind a line of tasks as long
// as the line is expected to serve in the time given, at the endpoint's
// measured pace: behind hundreds when each attempt takes a millisecond,
// behind twice the cap when each takes a fifth of a second.
func TestJoinWithinBoundsTheWaitNotTheCount(t *testing.T) {
	now := time.Unix(1000, 0)
	ls := testLines(&now)
	ls.cfg.PerLineMax, ls.cfg.TotalMax = 1000, 1000
	fill := func(id string, avg time.Duration, n int) {
		ls.Observe(id, false, ok(avg))
		seedLine(t, ls, id, n, 0)
	}
	fill("fast", time.Millisecond, 300) // 300 × 0.1 ms: 30 ms of attempts ahead
	if joined, first, _ := ls.JoinWithin("fast", &job{}, 10, 0, 500*time.Millisecond); !joined || first {
		t.Fatalf("behind 300 tasks of 1 ms at a cap of 10: joined %v first %v; want joined behind them", joined, first)
	}
	fill("slow", 200*time.Millisecond, 20) // 20 × 20 ms: 400 ms ahead
	if joined, _, _ := ls.JoinWithin("slow", &job{}, 10, 0, 500*time.Millisecond); !joined {
		t.Fatal("behind twice the cap: not joined")
	}
	if joined, _, _ := ls.JoinWithin("slow", &job{}, 10, 0, 500*time.Millisecond); !joined {
		t.Fatal("behind 21 tasks of 200 ms (420 ms ahead): not joined")
	}
	fill("slow", 200*time.Millisecond, 10)
	if joined, _, _ := ls.JoinWithin("slow", &job{}, 10, 0, 500*time.Millisecond); joined {
		t.Fatal("behind 32 tasks of 200 ms (640 ms ahead): joined; want refused")
	}
}

// A tenant at its share of direct tokens, none given back for
// directTokenWait, waits for one only while the line it asks for moves:
// its tokens are then held by first attempts waiting there, which come
// back as it is served. When the line stands still (its attempts hang)
// it does not wait.
func TestDirectTenantWaitsWhileItsLineMoves(t *testing.T) {
	now := time.Unix(1000, 0)
	dt := &directTenants{max: 1, held: map[string]*tenantTokens{}, changed: make(chan struct{}), now: func() time.Time { return now }}
	if !dt.take("acme", func() bool { return false }) {
		t.Fatal("first token refused")
	}
	now = now.Add(time.Second) // none given back for longer than directTokenWait
	if dt.take("acme", func() bool { return false }) {
		t.Fatal("a token taken while the tenant holds its share")
	}
	asked := make(chan struct{})
	var once sync.Once
	got := make(chan bool)
	go func() {
		got <- dt.take("acme", func() bool { once.Do(func() { close(asked) }); return true })
	}()
	<-asked
	dt.give("acme")
	if !<-got {
		t.Fatal("the tenant's token given back did not go to the attempt waiting while its line moved")
	}
}
