package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestReplayAPI: dry run, a job that replays a tenant's dead letters once
// each (through a deliverer's replay service), its progress, cancel of a
// finished job, bad requests, and tenant-bound tokens on every replay
// endpoint.
func TestReplayAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	fixture.Replayer(t, e.nats)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 15 {
		tenant, sub := "acme", "sub_A"
		if i%3 == 2 {
			tenant, sub = "globex", "sub_G"
		}
		if _, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: fmt.Sprintf("evt_%d", i), Tenant: tenant,
			SubscriptionId: sub, EventType: "order.created", LastStatus: 503}); err != nil {
			t.Fatal(err)
		}
	}

	dry := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"dead_letters","status":"5xx","dry_run":true}`)
	expect(t, dry, http.StatusOK)
	if d := dry.json(t); d["count"] != float64(10) || len(d["sample"].([]any)) != 10 || strings.Contains(string(dry.Body), "globex") {
		t.Fatalf("dry run: %s", dry.Body)
	}
	if n, _ := fixture.Count(ctx, e.js, stream.DeadLetter, "deadletter.>"); n != 15 {
		t.Fatalf("a dry run changed DEADLETTER: %d left", n)
	}

	for _, tt := range []struct {
		token, body string
		status      int
		detail      string
	}{
		{tokAdminAcme, `{"source":"dead_letters","tenant":"globex"}`, 403, "globex"},
		{tokAdminAcme, `{"status":"5xx"}`, 422, "source"},
		{tokAdminAcme, `{"source":"events"}`, 422, "not supported yet"},
		{tokAdminAcme, `{"source":"dead_letters","reason":"nope"}`, 422, "reason"},
		{tokAdminAcme, `{"source":"dead_letters","since":"yesterday"}`, 422, "RFC 3339"},
		{tokAdminAcme, `{"source":"dead_letters","rate":-1}`, 422, "rate"},
		{tokAdminAcme, `{"source":"dead_letters","surprise":1}`, 400, "surprise"},
		{tokPublishAcme, `{"source":"dead_letters"}`, 403, "admin"},
	} {
		r := e.doAs(tt.token, "POST", "/v1/replays", tt.body)
		expect(t, r, tt.status)
		if !strings.Contains(string(r.Body), tt.detail) || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s, want a problem mentioning %q", tt.body, r.Body, tt.detail)
		}
	}

	created := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"dead_letters","subscription_id":"sub_A"}`)
	expect(t, created, http.StatusAccepted)
	job := created.json(t)
	id := job["id"].(string)
	if job["state"] != "running" || job["total"] != float64(10) || created.Header.Get("Location") != "/v1/replays/"+id {
		t.Fatalf("created: %s %v", created.Body, created.Header)
	}
	var final map[string]any
	eventually(t, "the job done", func() bool {
		r := e.doAs(tokAdminAcme, "GET", "/v1/replays/"+id, "")
		expect(t, r, http.StatusOK)
		final = r.json(t)
		return final["state"] != "running"
	})
	if final["state"] != "done" || final["done"] != float64(10) || final["remaining"] != float64(0) || final["failed"] != float64(0) {
		t.Fatalf("finished: %v", final)
	}
	tasks, err := fixture.Tasks(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if len(tasks) != 10 {
		t.Fatalf("%d tasks published, want 10", len(tasks))
	}
	for _, task := range tasks {
		if task.Subject != "deliveries.acme.sub_A" {
			t.Fatalf("task on %s", task.Subject)
		}
	}
	if n, _ := fixture.Count(ctx, e.js, stream.DeadLetter, "deadletter.>"); n != 5 {
		t.Fatalf("%d dead letters left, want globex's 5", n)
	}
	r := e.doAs(tokAdminAcme, "DELETE", "/v1/replays/"+id, "")
	expect(t, r, http.StatusConflict)

	// Another tenant's job is not found for a bound token.
	g := e.doAs(tokAdmin, "POST", "/v1/replays", `{"source":"dead_letters","tenant":"globex","rate":1}`)
	expect(t, g, http.StatusAccepted)
	gid := g.json(t)["id"].(string)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/replays/"+gid, ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "DELETE", "/v1/replays/"+gid, ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/replays/rpl_nope", ""), http.StatusNotFound)
	c := e.doAs(tokAdmin, "DELETE", "/v1/replays/"+gid, "")
	expect(t, c, http.StatusOK)
	if c.json(t)["state"] != "cancelled" {
		t.Fatalf("cancel: %s", c.Body)
	}
}
