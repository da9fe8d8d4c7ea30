package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// A burst to one subscription created with defaults (in-flight cap 10),
// whose endpoint answers in a millisecond: deliveries over the cap wait in
// the subscription's line instead of bouncing through scheduled retries.
// Every event arrives exactly once, a task is deferred at most about
// once, and most deliveries are made from dispatch without storing a task
// (a burst that went through tasks, by chance, stored about one per
// delivery: see docs/performance.md, "A burst behind a line of tasks").
func TestBurstToADefaultSubscriptionQueues(t *testing.T) {
	t.Parallel()
	const events = 20000
	s := harness.NewStack(t, harness.StackOptions{})
	ep, _ := s.Subscribe("acme", "burst", []string{"order.created"}, harness.Slow(time.Millisecond))
	s.Warmup("acme", "order.created", ep)
	before, err := s.Deliverers[0].Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	firstSeq := lastSeq(t, s, stream.Deliveries)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	const publishers = 8
	for p := range publishers {
		g.Go(func() error {
			for i := p; i < events; i += publishers {
				id := fmt.Sprintf("evt_burst_%05d", i)
				if _, err := harness.PublishNATS(gctx, s.JS, s.Checker, "acme", "order.created", id, []byte(`{"n":1}`)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	r := s.Checker.Await(t, 3*time.Minute, 2*time.Second)
	r.Verify(t, 0)
	if st := ep.Stats(); st.Duplicates != 0 {
		t.Fatalf("%d duplicates", st.Duplicates)
	}

	after, err := s.Deliverers[0].Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	delta := func(name string) float64 { return after[name] - before[name] }
	deferred := delta("hookline_tasks_deferred_total")
	parked := delta("hookline_admission_parked_total")
	stored := float64(lastSeq(t, s, stream.Deliveries)-firstSeq) / events
	t.Logf("burst of %d: %.0f tasks waited in line, %.0f deferred; DELIVERIES stored %.2f messages per delivery",
		events, parked, deferred, stored)
	if parked == 0 {
		t.Fatal("no task waited in line: the burst never reached the cap, so the test proves nothing")
	}
	// Bouncing deferred each task many times (stored messages per delivery
	// grew with the burst). Waiting in line defers only what found its line
	// full (the line holds what the endpoint serves within 10 s at its
	// measured pace: on a quiet machine almost nothing, on one loaded by
	// the rest of the suite about half), each task about once: one stored
	// task per delivery plus two messages (schedule, fired copy) per
	// deferral.
	if deferred > events {
		t.Errorf("%.0f deferrals for %d events; want at most one per event", deferred, events)
	}
	if want := 1 + 2*deferred/events + 0.1; stored > want {
		t.Errorf("DELIVERIES stored %.2f messages per delivery; want at most %.2f (one per task and two per deferral)", stored, want)
	}
	// Measured: 0.00 per delivery, on a quiet machine and beside two busy
	// loops; a quarter leaves room for a loaded CI machine's pauses.
	if stored > 0.25 {
		t.Errorf("DELIVERIES stored %.2f messages per delivery; want at most 0.25: most deliveries made from dispatch after a wait in line, without a task", stored)
	}
}

// lastSeq is the last sequence of a stream.
func lastSeq(t *testing.T, s *harness.Stack, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}
