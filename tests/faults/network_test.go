package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// Fault 4: the network between the deliverer and NATS is cut for 30s — a
// silent partition (harness.Proxy.Blackhole: no reset, no FIN, bytes held)
// while events keep arriving through the producer. Nothing is lost, the
// deliverer recovers by itself, and its goroutines return to the baseline.
func TestNetworkPartitionDelivererNATS(t *testing.T) {
	t.Parallel()
	const events, subs = 2000, 2
	const partition = 30 * time.Second
	n := harness.StartNATS(t)
	proxy := harness.NewProxy(t, n.Addr())
	s := harness.NewStack(t, harness.StackOptions{NATSURL: n.URL(), DelivererNATSURL: proxy.URL()})
	d := s.Deliverers[0]
	var eps []*harness.Endpoint
	for i := range subs {
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.OK)
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)
	settle(t, s.JS, 30*time.Second)
	baseline := idleGoroutines(t, d)

	// ~45s of publishing: before, during and after the partition.
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 10, Concurrency: 1, Pace: 220 * time.Millisecond,
	}).Start(context.Background())
	awaitDelivered(t, events*subs/8, time.Minute, eps...)
	_, inFlight := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
	_, inFlightEv := consumerLoad(t, s.JS, stream.Events, stream.DispatchConsumer)
	during := sample(d)
	proxy.Blackhole()
	cut := time.Now()
	deliveredAtCut := delivered(eps...)
	// The fault lasts 30s; the deliverer must stay up all along.
	harness.Eventually(t, partition+5*time.Second, func() error {
		if !d.Running() {
			return fmt.Errorf("deliverer exited during the partition")
		}
		if time.Since(cut) < partition {
			return fmt.Errorf("partition in progress")
		}
		return nil
	})
	maxG, maxRSS, _ := during.Stop()
	deliveredDuring := delivered(eps...) - deliveredAtCut
	proxy.Heal()
	healed := time.Now()
	recovered := deliveredAfter(t, healed, time.Minute, eps...)

	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	// A silent partition breaks no connection: JetStream redelivers every
	// unacknowledged task each AckWait into the dead connection, and when it
	// heals the deliverer receives — and sends — every copy. So each task in
	// flight at the cut, or pulled into the black hole (one pull batch, 64),
	// may come once more per AckWait of partition.
	const ackWait = 7 * time.Second
	copies := int(partition/ackWait) + 1
	dupBound := (inFlightPairs(inFlight, inFlightEv, subs) + 64) * copies
	r.Verify(t, dupBound)
	settle(t, s.JS, time.Minute)
	limit := baseline + 10
	after := awaitGoroutines(t, d, limit, time.Minute)
	result(t, "deliverer↔NATS partitioned 30s (black hole)",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"dup_bound", fmt.Sprintf("(%d in flight + 64 pulled) × %d AckWaits", inFlight+inFlightEv, copies), "delivered_during_partition", deliveredDuring,
		"first_delivery_after_heal", recovered.Round(time.Millisecond),
		"goroutines_baseline", baseline, "goroutines_max_during", maxG, "goroutines_after", after,
		"rss_max_MiB", int(maxRSS/(1<<20)))
}

// Fault 5: Redis FLUSHALL, then Redis down for 20s, while events flow.
// Deliveries continue or wait; nothing is acknowledged without being
// delivered; nothing is lost once Redis is back (empty).
func TestRedisFlushAllThenDown(t *testing.T) {
	t.Parallel()
	const events, subs = 2000, 2
	const down = 20 * time.Second
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2})
	var eps []*harness.Endpoint
	for i := range subs {
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.OK)
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)
	// ~40s of publishing.
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 10, Concurrency: 1, Pace: 200 * time.Millisecond,
	}).Start(context.Background())

	awaitDelivered(t, events*subs/10, time.Minute, eps...)
	if err := s.Redis.Client(t).FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	awaitDelivered(t, events*subs/5, time.Minute, eps...)
	s.Redis.Stop()
	stopped := time.Now()
	deliveredAtStop := delivered(eps...)
	harness.Eventually(t, down+5*time.Second, func() error {
		for _, svc := range append([]*harness.Service{s.Producer}, s.Deliverers...) {
			if !svc.Running() {
				return fmt.Errorf("%s exited while Redis was down", svc.Name)
			}
		}
		if time.Since(stopped) < down {
			return fmt.Errorf("redis down")
		}
		return nil
	})
	deliveredWhileDown := delivered(eps...) - deliveredAtStop
	s.Redis.Restart(t) // an empty Redis on the same address
	back := time.Now()
	recovered := deliveredAfter(t, back, time.Minute, eps...)

	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	r.Verify(t, 0)
	if r.DeadLettered != 0 {
		t.Errorf("healthy endpoints dead-lettered: %s", r)
	}
	result(t, "Redis FLUSHALL, then Redis down 20s",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"delivered_while_down", deliveredWhileDown, "first_delivery_after_redis_back", recovered.Round(time.Millisecond),
		"publish_retries", res.Retries)
}
