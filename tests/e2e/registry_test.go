package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// settled waits until the deliverer has nothing pending nor in flight:
// every task dispatched so far has been attempted.
func settled(t *testing.T, s *harness.Stack) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		for _, c := range []struct{ stream, consumer string }{
			{stream.Events, stream.DispatchConsumer},
			{stream.Deliveries, stream.DeliverConsumer},
		} {
			cons, err := s.JS.Consumer(ctx, c.stream, c.consumer)
			if err != nil {
				return err
			}
			info, err := cons.Info(ctx)
			if err != nil {
				return err
			}
			if info.NumPending != 0 || info.NumAckPending != 0 {
				return fmt.Errorf("%s: %d pending, %d in flight", c.consumer, info.NumPending, info.NumAckPending)
			}
		}
		return nil
	})
}

// A subscription's update, disable, re-enable and delete take effect without
// restarting anything. A marker subscription receives every event, so once
// it has one and the consumers are idle, the event has been dispatched
// everywhere it was going to be.
func TestSubscriptionChangesTakeEffectWithoutRestart(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	ctx := context.Background()
	marker := s.Receiver.Endpoint("marker")
	msub, err := s.API.CreateSubscription(ctx, "acme", marker.URL, []string{">"})
	if err != nil {
		t.Fatal(err)
	}
	if err := marker.Bind(msub.ID, msub.Secret); err != nil {
		t.Fatal(err)
	}
	ep := s.Receiver.Endpoint("changing")
	sub, err := s.API.CreateSubscription(ctx, "acme", ep.URL, []string{"order.created"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ep.Bind(sub.ID, sub.Secret); err != nil {
		t.Fatal(err)
	}
	moved := s.Receiver.Endpoint("moved")
	if err := moved.Bind(sub.ID, sub.Secret); err != nil {
		t.Fatal(err)
	}

	// publish sends one event and waits until it has been dispatched and
	// attempted everywhere.
	publish := func(typ string) string {
		t.Helper()
		id := s.Publish("acme", typ, "", `{"k":1}`)
		marker.AwaitDelivered(t, id, 30*time.Second)
		settled(t, s)
		return id
	}
	got := func(ep *harness.Endpoint, id string) bool { return ep.Hits(id) != nil }

	steps := []struct {
		name   string
		patch  map[string]any // nil: delete
		typ    string
		at     *harness.Endpoint
		wanted bool
	}{
		{name: "type not subscribed", typ: "order.updated", at: ep, wanted: false},
		{name: "widen the filter", patch: map[string]any{"event_types": []string{"order.*"}}, typ: "order.updated", at: ep, wanted: true},
		{name: "change the URL", patch: map[string]any{"url": moved.URL}, typ: "order.updated", at: moved, wanted: true},
		{name: "disable", patch: map[string]any{"disabled": true}, typ: "order.created", at: moved, wanted: false},
		{name: "re-enable", patch: map[string]any{"disabled": false}, typ: "order.created", at: moved, wanted: true},
		{name: "delete", typ: "order.created", at: moved, wanted: false},
	}
	for _, st := range steps {
		switch {
		case st.name == "delete":
			if err := s.API.DeleteSubscription(ctx, sub.ID); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		case st.patch != nil:
			if _, err := s.API.UpdateSubscription(ctx, sub.ID, st.patch); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		// The contract: deliverers see a change within one second. Events
		// are published until one goes the new way, for at most 5s.
		var id string
		start := time.Now()
		harness.Eventually(t, 5*time.Second, func() error {
			id = publish(st.typ)
			if got(st.at, id) != st.wanted {
				return fmt.Errorf("%s: event %s reached %s: %v; want %v", st.name, id, st.at.Name, !st.wanted, st.wanted)
			}
			return nil
		})
		t.Logf("%s: took effect within %s", st.name, time.Since(start).Round(time.Millisecond))
		if st.wanted && !got(st.at, id) {
			t.Fatalf("%s: not delivered", st.name)
		}
	}
	// Nothing reached the old URL after the move, nor any endpoint twice.
	for _, e := range []*harness.Endpoint{ep, moved, marker} {
		if st := e.Stats(); st.Duplicates != 0 || len(st.BadSignatures) != 0 {
			t.Errorf("%s: %d duplicates, bad signatures %v", e.Name, st.Duplicates, st.BadSignatures)
		}
	}
}

// FLUSHALL on Redis while events flow loses nothing: the cache refills from
// the KV registry.
func TestRedisFlushAllLosesNothing(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	a, _ := s.Subscribe("acme", "a", []string{"order.*"}, harness.OK)
	b, _ := s.Subscribe("acme", "b", []string{"order.created"}, harness.OK)
	s.Warmup("acme", "order.created", a, b)

	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created", "order.updated"}, Events: 1000, BatchSize: 10, Concurrency: 2,
		Pace: 50 * time.Millisecond,
	}).Start(context.Background())
	rdb := s.Redis.Client(t)
	flushes := 0
	harness.Eventually(t, 60*time.Second, func() error {
		// Flush three times while the load runs, each after more deliveries.
		if a.Stats().Delivered > (flushes+1)*200 && flushes < 3 {
			if err := rdb.FlushAll(context.Background()).Err(); err != nil {
				return err
			}
			flushes++
		}
		if flushes < 3 {
			return fmt.Errorf("%d flushes so far", flushes)
		}
		return nil
	})
	res := load.Wait()
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	r := s.Checker.Await(t, 60*time.Second, time.Second)
	r.Verify(t, 0)
	if r.DeadLettered != 0 {
		t.Fatalf("healthy endpoints dead-lettered: %s", r)
	}
	t.Logf("FLUSHALL ×%d during %d events: %s", flushes, res.Accepted, r)
}
