package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
	"github.com/nats-io/nats.go/jetstream"
)

// Fault 10b: a coordinated crash of a 3-node R3 cluster (kill -9 of every
// node at once: a power cut), sync_interval: always, group commit on.
// Nothing acknowledged is lost, and deliveries resume once the cluster is
// back.
func TestClusterCoordinatedCrashR3(t *testing.T) {
	t.Parallel()
	const events, subs = 3000, 2
	c, s, eps := r3Stack(t, subs)
	ctx := context.Background()
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 25, Concurrency: 2, Pace: 50 * time.Millisecond,
	}).Start(ctx)
	total := events * subs
	awaitDelivered(t, total/3, 2*time.Minute, eps...)
	_, ack := consumerLoad(t, s.JS, stream.Deliveries, stream.DeliverConsumer)
	_, ackEv := consumerLoad(t, s.JS, stream.Events, stream.DispatchConsumer)
	for _, n := range c.Nodes {
		n.Kill()
	}
	crashed := time.Now()
	recentlyAcked := 0
	for _, ep := range eps {
		recentlyAcked += ep.DeliveredBetween(crashed.Add(-10*time.Second), crashed)
	}
	for _, n := range c.Nodes {
		if err := n.StartNoWait(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		n.WaitReady(n.ReadyWithin)
	}
	clusterBack := time.Since(crashed)
	defer func() {
		if t.Failed() {
			// Whether the consumers had work and pulls waiting tells a
			// deaf pull from stuck workers (docs/guarantees.md, 10b).
			for _, sc := range [][2]string{{stream.Events, stream.DispatchConsumer}, {stream.Deliveries, stream.DeliverConsumer}} {
				t.Log(consumerState(s.JS, sc[0], sc[1]))
			}
			dir := os.Getenv("CRASH_LOG_DIR")
			if dir == "" {
				return
			}
			for _, p := range append([]*harness.Service{s.Producer}, s.Deliverers...) {
				_ = os.WriteFile(filepath.Join(dir, p.Name+".log"), []byte(p.Log()), 0o644)
			}
			for _, n := range c.Nodes {
				_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), []byte(n.Log()), 0o644)
			}
		}
	}()
	// Deliveries resume within a minute of the cluster being back, or
	// had already delivered everything while its nodes became ready (then
	// a "no delivery since" would be no stall at all: it failed CI so).
	resumed, allDone := resumedAfter(t, time.Now(), 60*time.Second, load, s.Checker, eps...)
	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 2*time.Minute, 2*time.Second)
	r.Verify(t, inFlightPairs(ack, ackEv, subs)+recentlyAcked)
	result(t, "kill -9 all three nodes of an R3 cluster at once, restart them (sync_interval: always, group commit)",
		"events", res.Accepted, "pairs", r.Expected, "lost", r.Lost, "duplicated", r.Duplicates,
		"dup_bound", fmt.Sprintf("%d(tasks)+%d(events)×%d+%d(delivered in the 10s before)", ack, ackEv, subs, recentlyAcked),
		"cluster_back_after_crash", clusterBack.Round(time.Millisecond), "deliveries_resumed_after", resumed.Round(time.Millisecond),
		"all_delivered_before_cluster_ready", allDone)
}

// consumerState is a durable consumer's counts and leader, for a failure
// message.
func consumerState(js jetstream.JetStream, streamName, consumer string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, streamName, consumer)
	if err != nil {
		return fmt.Sprintf("consumer %s: %v", consumer, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Sprintf("consumer %s: %v", consumer, err)
	}
	leader := ""
	if info.Cluster != nil {
		leader = info.Cluster.Leader
	}
	return fmt.Sprintf("consumer %s: num_pending=%d num_waiting=%d num_ack_pending=%d num_redelivered=%d delivered_stream_seq=%d ack_floor_stream_seq=%d leader=%s",
		consumer, info.NumPending, info.NumWaiting, info.NumAckPending, info.NumRedelivered, info.Delivered.Stream, info.AckFloor.Stream, leader)
}
