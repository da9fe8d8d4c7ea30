package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// Fault 3: restart nats-server twice under load — once with SIGTERM, once
// with kill -9 — on the same store with sync_interval: always. Nothing
// acknowledged is lost, and the producer and the deliverers resume by
// themselves within 10s of the server being back. Duplicates are bounded by
// what was in flight plus what was delivered in the 10s before the crash:
// acks are asynchronous, and a crashed server forgets those it had not yet
// applied to the consumer state, so those tasks come again after AckWait.
func TestNATSRestartUnderLoad(t *testing.T) {
	t.Parallel()
	const events, subs = 3000, 2
	const resumeWithin = 10 * time.Second
	// Group commit on: it is the setting meant for sync_interval: always,
	// and the crash must not lose what its atomic batches acknowledged.
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, Env: harness.Env{"HOOKLINE_GROUP_COMMIT": "true"}})
	var eps []*harness.Endpoint
	for i := range subs {
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.OK)
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)
	// Paced so that publishing spans both restarts.
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 25, Concurrency: 2, Pace: 50 * time.Millisecond,
	}).Start(context.Background())

	total := events * subs
	inFlight, recentlyAcked := 0, 0
	var resumes []string
	for i, at := range []float64{0.2, 0.5} {
		awaitDelivered(t, int(at*float64(total)), 2*time.Minute, eps...)
		_, ack := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
		_, ackEv := consumerLoad(t, s.JS, stream.Events, stream.DispatchConsumer)
		inFlight += inFlightPairs(ack, ackEv, subs)
		how := "SIGTERM"
		if i == 0 {
			if _, err := s.NATS.Stop(30 * time.Second); err != nil {
				t.Fatalf("stop nats: %v", err)
			}
		} else {
			how = "kill -9"
			s.NATS.Kill()
			// A crash also forgets acks the server received but had not yet
			// applied to the consumer's state: what was delivered shortly
			// before comes again (measured: the last ~5s under this load).
			now := time.Now()
			for _, ep := range eps {
				recentlyAcked += ep.DeliveredBetween(now.Add(-10*time.Second), now)
			}
		}
		s.NATS.Start()
		back := time.Now()
		producerResumed := probePublish(t, s, back)
		deliverersResumed := deliveredAfter(t, back, 30*time.Second, eps...)
		if producerResumed > resumeWithin || deliverersResumed > resumeWithin {
			t.Errorf("after %s: producer resumed in %s, deliverers in %s; want both within %s", how, producerResumed, deliverersResumed, resumeWithin)
		}
		resumes = append(resumes, fmt.Sprintf("%s:producer=%s,deliverers=%s", how, producerResumed.Round(time.Millisecond), deliverersResumed.Round(time.Millisecond)))
		t.Logf("restart #%d (%s) at %.0f%% delivered: producer resumed in %s, deliverers in %s",
			i+1, how, at*100, producerResumed.Round(time.Millisecond), deliverersResumed.Round(time.Millisecond))
	}
	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	r.Verify(t, inFlight+recentlyAcked)
	if r.DeadLettered != 0 {
		t.Errorf("healthy endpoints dead-lettered: %s", r)
	}
	// The services were never restarted.
	for _, svc := range append([]*harness.Service{s.Producer}, s.Deliverers...) {
		if !svc.Running() {
			t.Errorf("%s is not running", svc.Name)
		}
	}
	result(t, "restart nats-server ×2 (SIGTERM, kill -9), sync_interval: always",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"dup_bound", fmt.Sprintf("%d(in flight)+%d(delivered in the 10s before the kill -9)", inFlight, recentlyAcked),
		"publish_retries", res.Retries, "resumed", resumes)
}

// Fault 10: a three-node NATS cluster on loopback with R3 streams and
// sync_interval: always; the leader of the EVENTS stream is killed with
// kill -9 under load and brought back. Nothing acknowledged is lost.
func TestClusterNodeKillR3(t *testing.T) {
	t.Parallel()
	const events, subs = 3000, 2
	c, s, eps := r3Stack(t, subs)
	ctx := context.Background()
	for _, name := range []string{stream.Events, stream.Deliveries, stream.DeadLetter} {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Replicas != 3 {
			t.Fatalf("stream %s has %d replicas; want 3", name, info.Config.Replicas)
		}
	}
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 25, Concurrency: 2, Pace: 50 * time.Millisecond,
	}).Start(ctx)

	total := events * subs
	awaitDelivered(t, total/4, 2*time.Minute, eps...)
	leader := streamLeader(t, s, stream.Events)
	var victim *harness.NATS
	for _, n := range c.Nodes {
		if n.Name == leader {
			victim = n
		}
	}
	if victim == nil {
		t.Fatalf("no node is called %q (the EVENTS leader)", leader)
	}
	_, ack := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
	_, ackEv := consumerLoad(t, s.JS, stream.Events, stream.DispatchConsumer)
	sampled := delivered(eps...)
	victim.Kill()
	killed := time.Now()
	// Tasks pulled and delivered between the sample and the kill were not
	// in it, and their acks may die with the leader too: on a busy machine
	// that window held dozens of deliveries.
	window := delivered(eps...) - sampled
	resumed := deliveredAfter(t, killed, 30*time.Second, eps...)
	awaitDelivered(t, total/2, 2*time.Minute, eps...)
	victim.Start() // ready = /healthz 200: its replicas have caught up
	rejoined := time.Since(killed)

	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	r.Verify(t, inFlightPairs(ack, ackEv, subs)+window)
	newLeader := streamLeader(t, s, stream.Events)
	result(t, "kill -9 the EVENTS leader of a 3-node R3 cluster, bring it back",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"dup_bound_in_flight", fmt.Sprintf("%d(tasks)+%d(events)×%d+%d(window)", ack, ackEv, subs, window), "deliveries_resumed_after", resumed.Round(time.Millisecond),
		"node_back_and_current_after", rejoined.Round(time.Millisecond), "leader", leader+"→"+newLeader)
}

// r3Stack starts a three-node cluster on loopback and a stack on it with
// R3 streams, two deliverers and subs warmed-up subscriptions of tenant
// acme. Group commit is on, as for sync_interval: always: a crash must not
// lose what its atomic batches acknowledged.
func r3Stack(t *testing.T, subs int) (*harness.Cluster, *harness.Stack, []*harness.Endpoint) {
	t.Helper()
	c := harness.StartCluster(t, 3)
	s := harness.NewStack(t, harness.StackOptions{
		Deliverers: 2,
		NATSURL:    c.URL(),
		Env:        harness.Env{"HOOKLINE_STREAM_REPLICAS": "3", "HOOKLINE_GROUP_COMMIT": "true"},
	})
	var eps []*harness.Endpoint
	for i := range subs {
		ep, _ := s.Subscribe("acme", fmt.Sprintf("ep%d", i+1), []string{"order.*"}, harness.OK)
		eps = append(eps, ep)
	}
	s.Warmup("acme", "order.created", eps...)
	return c, s, eps
}

// probePublish publishes probe events through the producer until one is
// acknowledged and returns how long after since that was.
func probePublish(t *testing.T, s *harness.Stack, since time.Time) time.Duration {
	t.Helper()
	id := "evt_probe_" + harness.NewIDPrefix()
	s.Checker.Attempt(id, "acme", "order.created")
	harness.Eventually(t, 60*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := s.API.Publish(ctx, harness.Event{ID: id, Tenant: "acme", Type: "order.created", Data: []byte(`{"probe":true}`)})
		return err
	})
	took := time.Since(since)
	s.Checker.Accept(id, "acme", "order.created")
	return took
}

// streamLeader names the node leading a stream.
func streamLeader(t *testing.T, s *harness.Stack, name string) string {
	t.Helper()
	var leader string
	harness.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return fmt.Errorf("stream %s has no leader", name)
		}
		leader = info.Cluster.Leader
		return nil
	})
	return leader
}
