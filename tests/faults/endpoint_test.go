package faults

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// attempts is the length of HOOKLINE_RETRY_SCHEDULE in harness.DefaultEnv.
const attempts = 3

// Fault 6: an endpoint slower than the attempt timeout (2s). Every attempt
// is cut at the timeout and no attempt of a task starts while another one
// of the same task is still in flight — across two replicas — until the
// task is dead-lettered after exactly the configured attempts. An endpoint
// that is slow but within the timeout gets each event exactly once.
func TestSlowEndpointNoOverlappingAttempts(t *testing.T) {
	t.Parallel()
	const events = 12
	// The breaker would serialise the attempts (one probe at a time) and
	// hide overlaps: off.
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, Env: harness.BreakerOff})
	tooSlow, tooSlowSub := s.Subscribe("acme", "too-slow", []string{"order.created"}, harness.Slow(5*time.Second))
	slow, _ := s.Subscribe("acme", "slow", []string{"order.created"}, harness.Slow(1500*time.Millisecond))
	var ids []string
	for range events {
		ids = append(ids, s.Publish("acme", "order.created", "", `{"slow":true}`))
	}
	r := s.Checker.Await(t, 2*time.Minute, 3*time.Second)
	r.Verify(t, 0)

	st := tooSlow.Stats()
	if st.MaxOverlap > 1 {
		t.Errorf("attempts of one task overlapped %d-fold (events %v)", st.MaxOverlap, st.OverlapEvents)
	}
	for _, id := range ids {
		h := tooSlow.Hits(id)
		if h == nil || h.Attempts != attempts {
			t.Errorf("%s: %v attempts at the too-slow endpoint; want %d", id, h, attempts)
			continue
		}
		if n := s.Checker.DeadLetterCount(id, tooSlowSub.ID); n != 1 {
			t.Errorf("%s: %d dead letters; want 1", id, n)
		}
		if g := slow.Hits(id); g == nil || g.Attempts != 1 || g.Delivered != 1 {
			t.Errorf("%s at the slow-but-in-time endpoint: %+v; want one attempt", id, g)
		}
	}
	if ov := slow.Stats().MaxOverlap; ov > 1 {
		t.Errorf("slow endpoint: attempts overlapped %d-fold", ov)
	}
	if r.DeadLetterReasons["attempts_exhausted"] != events {
		t.Errorf("dead letter reasons %v; want %d attempts_exhausted", r.DeadLetterReasons, events)
	}
	result(t, "endpoint slower than the attempt timeout",
		"events", events, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"max_overlap", st.MaxOverlap, "attempts_each", attempts, "dead_lettered", r.DeadLettered)
}

// Fault 8: an endpoint that always answers 500, with a short schedule:
// exactly the configured number of attempts, the same webhook-id every
// time, and one complete dead letter per event. The circuit breaker opens
// after five failures and defers the rest to one probe at a time: deferrals
// never spend an attempt.
func TestAlwaysFailingEndpoint(t *testing.T) {
	t.Parallel()
	const events = 6 // more than the 5 failures that open the breaker
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2})
	ep, sub := s.Subscribe("acme", "always-500", []string{"order.*"}, harness.Fail)
	ids := map[string]bool{}
	for i := range events {
		ids[s.Publish("acme", "order.created", "", fmt.Sprintf(`{"i":%d}`, i))] = true
	}
	r := s.Checker.Await(t, 2*time.Minute, 3*time.Second)
	r.Verify(t, 0)

	// The receiver keys attempts by webhook-id: every attempt of an event
	// carried its id, and no other id appeared.
	seen := ep.EventIDs()
	if len(seen) != events {
		t.Errorf("the endpoint saw %d distinct webhook-ids; want %d", len(seen), events)
	}
	for _, id := range seen {
		if !ids[id] {
			t.Errorf("unknown webhook-id %q", id)
		}
		h := ep.Hits(id)
		if h.Attempts != attempts {
			t.Errorf("%s: %d attempts (statuses %v); want exactly %d", id, h.Attempts, h.Statuses, attempts)
		}
		if got := h.Header.Get("webhook-id"); got != id {
			t.Errorf("%s: last attempt carried webhook-id %q", id, got)
		}
	}
	if r.DeadLettered != events || r.DeadLetterDuplicates != 0 {
		t.Errorf("want one dead letter per event: %s", r)
	}
	// Every dead letter is complete.
	dls := readDeadLetters(t, s)
	for _, dl := range dls {
		for _, k := range []string{stream.HeaderEventID, stream.HeaderSubscriptionID, stream.HeaderTenant, stream.HeaderEventType,
			stream.HeaderReason, stream.HeaderLastStatus, stream.HeaderAttempt, stream.HeaderFirstAttemptAt,
			stream.HeaderLastAttemptAt, stream.HeaderDeadLetteredAt, stream.HeaderOriginalSubject} {
			if dl.Header.Get(k) == "" {
				t.Errorf("dead letter %d has no %s", dl.Sequence, k)
			}
		}
		if got := dl.Header.Get(stream.HeaderAttempt); got != strconv.Itoa(attempts) {
			t.Errorf("dead letter %d: %s = %q; want %d", dl.Sequence, stream.HeaderAttempt, got, attempts)
		}
		if got := dl.Header.Get(stream.HeaderLastStatus); got != "500" {
			t.Errorf("dead letter %d: last status %q", dl.Sequence, got)
		}
		if dl.Header.Get(stream.HeaderSubscriptionID) != sub.ID || len(dl.Data) == 0 {
			t.Errorf("dead letter %d: subscription %q, %d bytes of data", dl.Sequence, dl.Header.Get(stream.HeaderSubscriptionID), len(dl.Data))
		}
	}
	// The open circuit (200ms) holds tasks back: in line, or deferred.
	deferred := 0.0
	for _, d := range s.Deliverers {
		deferred += d.Metric(t, `hookline_admission_refused_total{reason="circuit_open"}`) +
			d.Metric(t, `hookline_admission_refused_total{reason="probe_in_flight"}`)
	}
	if deferred == 0 {
		t.Errorf("the circuit breaker never held a task back: this test no longer covers it")
	}
	result(t, "endpoint always 500, schedule 0s,1s,1s",
		"events", events, "lost", r.Lost, "attempts_each", attempts, "dead_letters", len(dls), "duplicated", r.Duplicates,
		"deferred_by_breaker", deferred)
}
