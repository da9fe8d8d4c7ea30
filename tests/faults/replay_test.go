package faults

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

// Fault 9: 100 dead letters replayed twice — two `hookctl dlq replay --all`
// at the same time, then a third once they are done — are delivered
// exactly once each.
func TestReplayDeadLettersTwice(t *testing.T) {
	t.Parallel()
	const events = 100
	// The failing phase only makes the dead letters: no breaker.
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, Env: harness.BreakerOff})
	ep, _ := s.Subscribe("acme", "down-then-up", []string{"order.*"}, harness.Fail)
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 50, Concurrency: 1,
	}).Start(context.Background())
	if res := load.Wait(); res.Err != nil {
		t.Fatal(res.Err)
	}
	before := s.Checker.Await(t, time.Minute, 2*time.Second)
	if before.DeadLettered != events || before.Delivered != 0 {
		t.Fatalf("want %d dead letters before the replay: %s", events, before)
	}
	requestsBefore := ep.Stats().Attempts

	// The endpoint is fixed; replay twice at once.
	ep.SetBehavior(harness.OK)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	outs := make([]string, 2)
	errs := make([]error, 2)
	for i := range 2 {
		wg.Go(func() {
			stdout, stderr, err := s.Hookctl(ctx, "dlq", "replay", "--all", "--rate", "0")
			outs[i], errs[i] = stdout+stderr, err
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		t.Logf("replay #%d: %v\n%s", i+1, err, outs[i])
		if err == nil {
			ok++
		}
	}
	if ok == 0 {
		t.Fatalf("neither concurrent replay succeeded")
	}
	awaitDelivered(t, events, time.Minute, ep)
	settle(t, s.JS, time.Minute)

	// Replay again: the entries left DEADLETTER once replayed.
	stdout, stderr, err := s.Hookctl(ctx, "dlq", "replay", "--all", "--rate", "0")
	t.Logf("third replay: %v\n%s%s", err, stdout, stderr)
	settle(t, s.JS, time.Minute)

	r := s.Checker.Await(t, time.Minute, 2*time.Second)
	r.Verify(t, 0)
	got := ep.Delivered()
	if len(got) != events {
		t.Errorf("%d events delivered after the replay; want %d", len(got), events)
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s delivered %d times; want exactly once", id, n)
		}
	}
	if extra := ep.Stats().Attempts - requestsBefore; extra != events {
		t.Errorf("%d requests after the replay; want %d", extra, events)
	}
	result(t, "replay 100 dead letters twice (concurrently) and a third time",
		"events", events, "redelivered", len(got), "duplicated", r.Duplicates, "lost", r.Lost,
		"concurrent_replays_ok", fmt.Sprintf("%d/2", ok))
}
