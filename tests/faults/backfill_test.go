package faults

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

// A subscription that was disabled while 10 of 20 events were published
// is re-enabled and back-filled from EVENTS with mode missing (POST
// /v1/replays, source events): it receives exactly the events it had not
// received, so each of the 20 exactly once.
func TestBackfillMissingSendsExactlyWhatWasMissed(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{Env: harness.BreakerOff})
	ep, sub := s.Subscribe("acme", "sometimes-off", []string{"order.*"}, harness.OK)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now().Add(-time.Second).UTC()
	var ids []string
	for i := range 10 {
		ids = append(ids, s.Publish("acme", "order.created", fmt.Sprintf("evt_bf_a%d", i), `{"n":1}`))
	}
	awaitDelivered(t, 10, time.Minute, ep)
	if _, err := s.API.UpdateSubscription(ctx, sub.ID, map[string]any{"disabled": true}); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		ids = append(ids, s.Publish("acme", "order.created", fmt.Sprintf("evt_bf_b%d", i), `{"n":2}`))
	}
	settle(t, s.JS, time.Minute)
	before := ep.Delivered()
	if _, err := s.API.UpdateSubscription(ctx, sub.ID, map[string]any{"disabled": false}); err != nil {
		t.Fatal(err)
	}
	var job replayJob
	body := map[string]any{"source": "events", "subscription_id": sub.ID, "mode": "missing", "since": start.Format(time.RFC3339)}
	if err := s.API.Do(ctx, "POST", "/v1/replays", body, &job); err != nil {
		t.Fatal(err)
	}
	var final struct {
		replayJob
		Skipped int `json:"skipped"`
	}
	harness.Eventually(t, time.Minute, func() error {
		if err := s.API.Do(ctx, "GET", "/v1/replays/"+job.ID, nil, &final); err != nil {
			return err
		}
		if final.State == "running" {
			return fmt.Errorf("%+v", final)
		}
		return nil
	})
	missed := 20 - len(before)
	if final.State != "done" || final.Total != 20 || final.Done != missed || final.Skipped != len(before) {
		t.Fatalf("back-fill job %+v; %d events had been delivered before", final, len(before))
	}
	awaitDelivered(t, 20, time.Minute, ep)
	settle(t, s.JS, time.Minute)
	got := ep.Delivered()
	for _, id := range ids {
		if got[id] != 1 {
			t.Errorf("%s delivered %d times; want exactly once", id, got[id])
		}
	}
	if len(got) != 20 {
		t.Errorf("%d events delivered, want 20", len(got))
	}
	result(t, "re-enabled subscription back-filled from EVENTS (mode missing)",
		"events", 20, "missed_while_disabled", missed, "backfilled", final.Done, "skipped", final.Skipped)
}
