package faults

import (
	"context"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
)

type replayJob struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Total     int    `json:"total"`
	Done      int    `json:"done"`
	Failed    int    `json:"failed"`
	Gone      int    `json:"gone"`
	Remaining int    `json:"remaining"`
}

// Fault 12: an endpoint that always fails dead-letters 60 events; the
// delivery API lists them with hookctl's filters; the endpoint recovers and
// a replay job started on one producer is taken over by a second producer
// when the first is killed (kill -9) midway: each event is delivered
// exactly once.
func TestReplayJobSurvivesAKilledProducer(t *testing.T) {
	t.Parallel()
	const events = 60
	s := harness.NewStack(t, harness.StackOptions{Env: harness.BreakerOff})
	other := harness.StartProducer(t, s.Bins, "producer-2", s.Env)
	api2 := harness.NewAPI(other.URL())
	ep, sub := s.Subscribe("acme", "down-then-up", []string{"order.*"}, harness.Fail)
	load := (&harness.Load{
		API: s.API, Checker: s.Checker, Tenant: "acme",
		Types: []string{"order.created"}, Events: events, BatchSize: 20, Concurrency: 1,
	}).Start(context.Background())
	if res := load.Wait(); res.Err != nil {
		t.Fatal(res.Err)
	}
	before := s.Checker.Await(t, time.Minute, 2*time.Second)
	if before.DeadLettered != events || before.Delivered != 0 {
		t.Fatalf("want %d dead letters before the replay: %s", events, before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Listed by the API, with hookctl's filters, page by page.
	listed, eventID := 0, ""
	q := url.Values{"subscription_id": {sub.ID}, "reason": {"attempts_exhausted"}, "status": {"5xx"}, "type": {"order.*"}, "limit": {"25"}}
	for pages := 0; ; pages++ {
		var page struct {
			DeadLetters []struct {
				Seq            uint64 `json:"seq"`
				SubscriptionID string `json:"subscription_id"`
				EventID        string `json:"event_id"`
				Attempts       int    `json:"attempts"`
			} `json:"dead_letters"`
			NextCursor string `json:"next_cursor"`
		}
		if err := api2.Do(ctx, "GET", "/v1/dead-letters?"+q.Encode(), nil, &page); err != nil {
			t.Fatal(err)
		}
		for _, d := range page.DeadLetters {
			if d.SubscriptionID != sub.ID || d.Attempts != 3 {
				t.Fatalf("listed %+v", d)
			}
			if eventID == "" {
				eventID = d.EventID
			}
		}
		listed += len(page.DeadLetters)
		if page.NextCursor == "" || pages > 10 {
			break
		}
		q.Set("cursor", page.NextCursor)
	}
	if listed != events {
		t.Fatalf("the API listed %d dead letters, want %d", listed, events)
	}

	// The deliverer stored the event's delivery state.
	awaitState(t, ctx, api2, eventID, sub.ID, "dead_lettered/3")

	// The endpoint recovers; a job starts on the first producer, paced so
	// that it is midway when that producer is killed.
	ep.SetBehavior(harness.OK)
	var job replayJob
	if err := s.API.Do(ctx, "POST", "/v1/replays", map[string]any{"source": "dead_letters", "subscription_id": sub.ID, "rate": 10}, &job); err != nil {
		t.Fatal(err)
	}
	if job.State != "running" || job.Total != events {
		t.Fatalf("job %+v", job)
	}
	harness.Eventually(t, time.Minute, func() error {
		var j replayJob
		if err := api2.Do(ctx, "GET", "/v1/replays/"+job.ID, nil, &j); err != nil { // any replica answers
			return err
		}
		if j.Done < 15 {
			return fmt.Errorf("%d done", j.Done)
		}
		return nil
	})
	s.Producer.Kill()
	killedAt := time.Now()
	var final replayJob
	harness.Eventually(t, 2*time.Minute, func() error {
		if err := api2.Do(ctx, "GET", "/v1/replays/"+job.ID, nil, &final); err != nil {
			return err
		}
		if final.State == "running" {
			return fmt.Errorf("%+v", final)
		}
		return nil
	})
	if final.State != "done" || final.Done != events || final.Failed != 0 || final.Remaining != 0 {
		t.Fatalf("job after the takeover: %+v", final)
	}
	awaitDelivered(t, events, time.Minute, ep)
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
	awaitState(t, ctx, api2, eventID, sub.ID, "delivered/1")
	var left struct {
		DeadLetters []any `json:"dead_letters"`
	}
	if err := api2.Do(ctx, "GET", "/v1/dead-letters?subscription_id="+sub.ID, nil, &left); err != nil || len(left.DeadLetters) != 0 {
		t.Fatalf("dead letters left: %d %v", len(left.DeadLetters), err)
	}
	result(t, "kill -9 the producer running a replay job of 60 dead letters",
		"events", events, "redelivered", len(got), "duplicated", r.Duplicates, "lost", r.Lost,
		"takeover_s", fmt.Sprintf("%.1f", time.Since(killedAt).Seconds()))
}

// awaitState waits until GET /v1/events/{id}/deliveries shows want
// ("state/attempts") for the subscription.
func awaitState(t *testing.T, ctx context.Context, api *harness.API, eventID, subID, want string) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, func() error {
		var out struct {
			Deliveries []struct {
				SubscriptionID string `json:"subscription_id"`
				State          string `json:"state"`
				Attempts       int    `json:"attempts"`
			} `json:"deliveries"`
		}
		if err := api.Do(ctx, "GET", "/v1/events/"+eventID+"/deliveries?tenant=acme", nil, &out); err != nil {
			return err
		}
		for _, d := range out.Deliveries {
			if got := fmt.Sprintf("%s/%d", d.State, d.Attempts); d.SubscriptionID == subID && got == want {
				return nil
			}
		}
		return fmt.Errorf("deliveries of %s: %+v, want %s", eventID, out.Deliveries, want)
	})
}
