package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

// Fault 7: poison endpoints — one that hangs after sending its headers, one
// that answers with a 1 GB body, one that resets the connection, one that
// refuses it, one that never answers — next to a healthy one. The healthy
// endpoint keeps receiving, the deliverer's memory and goroutines stay
// bounded and return to baseline, and every pair still ends delivered or
// dead-lettered.
func TestPoisonEndpointsStayBounded(t *testing.T) {
	t.Parallel()
	const events = 30
	// Without the breaker every poison endpoint gets every attempt at once:
	// the worst case for memory and goroutines.
	s := harness.NewStack(t, harness.StackOptions{Env: harness.BreakerOff})
	d := s.Deliverers[0]
	healthy, _ := s.Subscribe("acme", "healthy", []string{"order.created"}, harness.OK)
	s.Warmup("acme", "order.created", healthy)
	settle(t, s.JS, 30*time.Second)
	baseG := idleGoroutines(t, d)
	baseRSS := d.Metric(t, "process_resident_memory_bytes")

	poison := map[string]harness.Behavior{
		"hang-after-headers": harness.HangAfterHeaders,
		"huge-body":          harness.HugeBody(1 << 30),
		"reset":              harness.Reset,
		"hang":               harness.Hang,
	}
	for name, b := range poison {
		s.Subscribe("acme", name, []string{"order.created"}, b)
	}
	// Refused: nothing listens at the URL.
	refused := s.Receiver.Endpoint("refused")
	sub, err := s.API.CreateSubscription(t.Context(), "acme", harness.RefusedURL(t), []string{"order.created"})
	if err != nil {
		t.Fatal(err)
	}
	if err := refused.Bind(sub.ID, sub.Secret); err != nil {
		t.Fatal(err)
	}
	s.Checker.AddSubscription(sub.ID, "acme", []string{"order.created"}, refused)

	during := sample(d)
	start := time.Now()
	var ids []string
	for i := range events {
		ids = append(ids, s.Publish("acme", "order.created", "", fmt.Sprintf(`{"i":%d}`, i)))
	}
	// The healthy endpoint is not held up by its neighbours.
	for _, id := range ids {
		healthy.AwaitDelivered(t, id, 30*time.Second)
	}
	healthyDone := time.Since(start)
	// Poison attempts count each 2xx status line as a delivery: bound them by
	// the attempts they could make.
	r := s.Checker.Await(t, 3*time.Minute, 3*time.Second)
	maxG, maxRSS, samples := during.Stop()
	r.Verify(t, len(poison)*events*attempts)
	if st := healthy.Stats(); st.Duplicates != 0 {
		t.Errorf("healthy endpoint got %d duplicates", st.Duplicates)
	}
	settle(t, s.JS, time.Minute)
	after := awaitGoroutines(t, d, baseG+10, time.Minute)
	// Bodies are read up to a cap: a 1 GB answer costs no more than a few
	// dozen MiB of resident memory, whatever the number of attempts.
	if grew := maxRSS - baseRSS; grew > 128<<20 {
		t.Errorf("resident memory grew by %d MiB (from %d MiB)", int(grew)>>20, int(baseRSS)>>20)
	}
	if samples < 3 {
		t.Errorf("only %d metric samples while poison endpoints were served", samples)
	}
	result(t, "poison endpoints (hang after headers, 1 GB body, reset, refused, hang)",
		"events", events, "pairs", r.Expected, "lost", r.Lost, "dead_lettered", r.DeadLettered,
		"healthy_all_delivered_in", healthyDone.Round(time.Millisecond),
		"goroutines_baseline", baseG, "goroutines_max", maxG, "goroutines_after", after,
		"rss_baseline_MiB", int(baseRSS)>>20, "rss_max_MiB", int(maxRSS)>>20, "reasons", r.DeadLetterReasons)
}
