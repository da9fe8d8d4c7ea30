package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// Fault 1: kill -9 a deliverer three times while 10,000 events × 3
// subscriptions flow through two replicas. Nothing is lost; duplicates are
// at most what was in flight (acknowledgement pending) at the kills.
func TestKill9DelivererUnderLoad(t *testing.T) {
	const events, subs = killEvents, 3
	// nats-server itself never crashes here: its default fsync interval
	// (2–3× faster on this machine) changes nothing this test checks.
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, DefaultSync: true})
	var eps []*harness.Endpoint
	for i := range subs {
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.OK)
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)

	start := time.Now()
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created", "order.updated"}, Events: events, BatchSize: 250, Concurrency: 2,
	}).Start(context.Background())

	total := events * subs
	inFlightAtKills := 0
	var restarts []time.Duration
	for i, at := range []float64{0.2, 0.45, 0.7} {
		awaitDelivered(t, int(at*float64(total)), 3*time.Minute, eps...)
		victim := s.Deliverers[i%2]
		_, ackPending := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
		_, dispatchPending := consumerLoad(t, s.JS, stream.Events, stream.DispatchConsumer)
		inFlightAtKills += inFlightPairs(ackPending, dispatchPending, subs)
		victim.Kill()
		killed := time.Now()
		victim.Start()
		restarts = append(restarts, time.Since(killed).Round(time.Millisecond))
		t.Logf("kill #%d of %s at %.0f%% delivered: %d tasks and %d events unacknowledged; back in %s",
			i+1, victim.Name, at*100, ackPending, dispatchPending, time.Since(killed).Round(time.Millisecond))
	}
	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 3*time.Minute, 2*time.Second)
	elapsed := time.Since(start)
	r.Verify(t, inFlightAtKills)
	if r.DeadLettered != 0 {
		t.Errorf("healthy endpoints dead-lettered: %s", r)
	}
	result(t, "kill -9 a deliverer ×3 (2 replicas)",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"dup_bound_in_flight", inFlightAtKills, "restart", restarts, "total", elapsed.Round(time.Second),
		"throughput_per_s", int(float64(r.Expected)/elapsed.Seconds()))
}

// Fault 2: SIGTERM under load. Each replica exits within the grace period
// with status 0, finishing what it holds: nothing lost, nothing duplicated.
func TestSIGTERMUnderLoad(t *testing.T) {
	t.Parallel()
	const events, subs = 2000, 2
	const grace = 10 * time.Second // HOOKLINE_SHUTDOWN_TIMEOUT
	// AckWait is the production default (60s) here: a SIGTERM must not
	// duplicate anything, and with 7s an overloaded nats-server (2 cores
	// shared by the suite) can apply an ack later than AckWait and
	// redeliver what was delivered — a different fault.
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, DefaultSync: true, Env: harness.Env{"HOOKLINE_ACK_WAIT": "60s"}})
	var eps []*harness.Endpoint
	for i := range subs {
		// A little latency keeps attempts in flight at the signal.
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.Slow(20*time.Millisecond))
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 100, Concurrency: 2,
	}).Start(context.Background())

	total := events * subs
	var exits []time.Duration
	for i, at := range []float64{0.25, 0.6} {
		awaitDelivered(t, int(at*float64(total)), 2*time.Minute, eps...)
		d := s.Deliverers[i%2]
		_, inFlight := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
		took, err := d.Stop(grace + 5*time.Second)
		if err != nil {
			t.Fatalf("SIGTERM %s: %v", d.Name, err)
		}
		if took > grace {
			t.Errorf("%s took %s to exit; grace is %s", d.Name, took, grace)
		}
		exits = append(exits, took.Round(time.Millisecond))
		t.Logf("SIGTERM #%d to %s with %d tasks in flight: exited 0 in %s", i+1, d.Name, inFlight, took.Round(time.Millisecond))
		d.Start()
	}
	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	r.Verify(t, 0)
	result(t, "SIGTERM a deliverer ×2 under load",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates, "exit_after", exits)
}
