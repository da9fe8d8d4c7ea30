package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/fixture"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// The portal's deliveries list and event story on a subscription with
// 100,000 attempt records (in messages of four, as the deliverer batches
// them under load): the first page of the list, and an event's story
// whose first attempt is the oldest record and whose last is the newest,
// found the way the portal asks (since the event's time, following
// next_cursor). The durations are logged, not asserted (docs/portal.md
// reports them).
func TestPortalReadsOnOneHundredThousandAttempts(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["order.*"]}`)
	expect(t, sub, http.StatusCreated)
	id := sub.json(t)["id"].(string)
	first := e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord_first","data":{}}`)
	expect(t, first, http.StatusAccepted)

	const n = 100_000
	start := time.Now()
	base := time.Now() // after the event was stored: its attempts follow it
	rec := func(i int, ev string, attempt uint32, outcome string) *hooklinev1.Attempt {
		return &hooklinev1.Attempt{EventId: ev, Tenant: "acme", SubscriptionId: id, EventType: "order.created", Attempt: attempt,
			StartedAt: timestamppb.New(base.Add(time.Duration(i) * time.Millisecond)), DurationSeconds: 0.05, Status: 500,
			Outcome: outcome, Error: "HTTP 500", ResponseExcerpt: "oops"}
	}
	body := func(as ...*hooklinev1.Attempt) []byte {
		var b []byte
		for _, a := range as {
			line, err := fixture.AttemptLine(a)
			if err != nil {
				t.Fatal(err)
			}
			b = append(append(b, line...), '\n')
		}
		return b
	}
	subject := "attempts.acme." + id
	for i := 0; i < n; i += 4 {
		batch := make([]*hooklinev1.Attempt, 0, 4)
		for k := range 4 {
			switch j := i + k; j {
			case 0:
				batch = append(batch, rec(j, "ord_first", 1, "retry"))
			case n - 1:
				batch = append(batch, rec(j, "ord_first", 2, "success"))
			default:
				batch = append(batch, rec(j, fmt.Sprintf("ord_%d", j), 1, "retry"))
			}
		}
		if _, err := e.js.PublishAsync(subject, body(batch...)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-ctx.Done():
		t.Fatal("attempt records not acknowledged")
	}
	t.Logf("stored %d attempt records in %d messages in %s", n, n/4, time.Since(start).Round(time.Millisecond))

	timed := func(what, path string) map[string]json.RawMessage {
		t.Helper()
		began := time.Now()
		r := e.doAs(tokAdminAcme, "GET", path, "")
		expect(t, r, http.StatusOK)
		t.Logf("%s: %s, %d bytes", what, time.Since(began).Round(100*time.Microsecond), len(r.Body))
		var m map[string]json.RawMessage
		decodeJSON(t, r.Body, &m)
		return m
	}
	// The deliveries tab: the newest 20, then the next 20.
	page := timed("deliveries, first page of 20", "/v1/subscriptions/"+id+"/attempts?limit=20")
	var cur string
	if err := json.Unmarshal(page["next_cursor"], &cur); err != nil || cur == "" {
		t.Fatalf("first page without a cursor: %v", err)
	}
	timed("deliveries, second page of 20", "/v1/subscriptions/"+id+"/attempts?limit=20&cursor="+url.QueryEscape(cur))
	timed("deliveries, filtered outcome=success (1 in 100,000)", "/v1/subscriptions/"+id+"/attempts?limit=20&outcome=success")

	// The story of ord_first.
	ev := timed("story: the event", "/v1/events/ord_first")
	var received string
	if err := json.Unmarshal(ev["received_at"], &received); err != nil {
		t.Fatal(err)
	}
	timed("story: its delivery states", "/v1/events/ord_first/deliveries")
	began := time.Now()
	var found []float64
	q := url.Values{"event_id": {"ord_first"}, "order": {"asc"}, "limit": {"100"}, "since": {received}}
	for pages := 1; ; pages++ {
		m := timed(fmt.Sprintf("story: its attempts, page %d", pages), "/v1/subscriptions/"+id+"/attempts?"+q.Encode())
		var atts []struct {
			Attempt float64 `json:"attempt"`
		}
		if err := json.Unmarshal(m["attempts"], &atts); err != nil {
			t.Fatal(err)
		}
		for _, a := range atts {
			found = append(found, a.Attempt)
		}
		var next string
		_ = json.Unmarshal(m["next_cursor"], &next)
		if next == "" {
			break
		}
		if pages == storyMaxPages {
			t.Fatalf("the story's attempts need more than %d pages", storyMaxPages)
		}
		q.Set("cursor", next)
	}
	t.Logf("story: every attempt of the event in %s", time.Since(began).Round(time.Millisecond))
	if len(found) != 2 || found[0] != 1 || found[1] != 2 {
		t.Fatalf("the story found attempts %v of ord_first, want 1 and 2 (the oldest and the newest record)", found)
	}
}

// storyMaxPages is how many pages of an event's attempts the portal's
// story reads (portal assets: STORY_PAGES).
const storyMaxPages = 10
