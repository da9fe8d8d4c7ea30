package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/deliverystate"
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
		{tokAdminAcme, `{"source":"events"}`, 422, "subscription_id"},
		{tokAdminAcme, `{"source":"events","subscription_id":"sub_A","type":"a"}`, 422, "an events job takes"},
		{tokAdminAcme, `{"source":"dead_letters","mode":"all"}`, 422, "mode"},
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
	m := string(e.do("GET", "/metrics", nil).Body)
	for _, want := range []string{`hookline_replay_jobs_total{state="done"} 1`, `hookline_replay_jobs_total{state="cancelled"} 1`, `hookline_replay_entries_total{result="failed"} 0`} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	var replayed float64
	for _, l := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(l, `hookline_replay_entries_total{result="replayed"} `); ok {
			replayed, _ = strconv.ParseFloat(v, 64)
		}
	}
	if replayed < 10 {
		t.Errorf("hookline_replay_entries_total{result=replayed} = %v, want at least the 10 of the finished job", replayed)
	}
}

// TestBackfillAPI: a replay job of source events sends a subscription the
// events of its types it has not got (mode missing) or all of them (mode
// all), once per job, through a deliverer's back-fill service.
func TestBackfillAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	fixture.Replayer(t, e.nats)
	var ids []string
	for i := range 8 {
		typ := "order.created"
		if i%4 == 3 {
			typ = "invoice.paid"
		}
		r := e.doAs(tokAdmin, "POST", "/v1/events", fmt.Sprintf(`{"tenant":"acme","type":%q,"data":{"n":%d}}`, typ, i))
		expect(t, r, http.StatusAccepted)
		if typ == "order.created" {
			ids = append(ids, r.json(t)["id"].(string))
		}
	}
	sub := e.doAs(tokAdminAcme, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/new","event_types":["order.*"]}`)
	expect(t, sub, http.StatusCreated)
	subID := sub.json(t)["id"].(string)
	// Two of the six order events reached it already (as a deliverer records).
	w := deliverystate.NewWriter(e.js)
	for _, id := range ids[:2] {
		if err := w.Put("acme", id, deliverystate.State{SubscriptionID: subID, State: deliverystate.Delivered, Attempts: 1, LastStatus: 200}); err != nil {
			t.Fatal(err)
		}
	}
	<-e.js.PublishAsyncComplete()

	dry := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+subID+`","dry_run":true}`)
	expect(t, dry, http.StatusOK)
	if d := dry.json(t); d["count"] != float64(4) || len(d["events"].([]any)) != 4 {
		t.Fatalf("dry run (missing): %s", dry.Body)
	}
	dryAll := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+subID+`","mode":"all","dry_run":true}`)
	expect(t, dryAll, http.StatusOK)
	if d := dryAll.json(t); d["count"] != float64(6) {
		t.Fatalf("dry run (all): %s", dryAll.Body)
	}

	run := func(body string) map[string]any {
		t.Helper()
		r := e.doAs(tokAdminAcme, "POST", "/v1/replays", body)
		expect(t, r, http.StatusAccepted)
		id := r.json(t)["id"].(string)
		var final map[string]any
		eventually(t, "the job done", func() bool {
			g := e.doAs(tokAdminAcme, "GET", "/v1/replays/"+id, "")
			expect(t, g, http.StatusOK)
			final = g.json(t)
			return final["state"] != "running"
		})
		return final
	}
	taskEvents := func() map[string]int {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		tasks, err := fixture.Tasks(ctx, e.js)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]int{}
		for _, task := range tasks {
			if task.Subject != "deliveries.acme."+subID || !strings.Contains(task.Header.Get("Nats-Msg-Id"), ":backfill:") {
				t.Fatalf("task %s %v", task.Subject, task.Header)
			}
			out[task.Header.Get(stream.HeaderEventID)]++
		}
		return out
	}
	j := run(`{"source":"events","subscription_id":"` + subID + `"}`)
	if j["state"] != "done" || j["done"] != float64(4) || j["skipped"] != float64(2) || j["total"] != float64(6) || j["mode"] != "missing" {
		t.Fatalf("missing job: %v", j)
	}
	got := taskEvents()
	if len(got) != 4 || got[ids[0]] != 0 || got[ids[1]] != 0 || got[ids[2]] != 1 || got[ids[5]] != 1 {
		t.Fatalf("missing job sent %v (events %v)", got, ids)
	}
	j = run(`{"source":"events","subscription_id":"` + subID + `","mode":"all"}`)
	if j["done"] != float64(6) {
		t.Fatalf("all job: %v", j)
	}
	if got := taskEvents(); len(got) != 6 || got[ids[0]] != 1 || got[ids[2]] != 2 {
		t.Fatalf("after the all job: %v", got)
	}

	// Another tenant's subscription is not found; a disabled one is refused.
	g := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://globex.example/","event_types":[">"]}`)
	expect(t, g, http.StatusCreated)
	gid := g.json(t)["id"].(string)
	expect(t, e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+gid+`"}`), http.StatusNotFound)
	expect(t, e.doAs(tokAdmin, "PATCH", "/v1/subscriptions/"+gid, `{"disabled":true}`), http.StatusOK)
	expect(t, e.doAs(tokAdmin, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+gid+`"}`), http.StatusConflict)
	expect(t, e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+subID+`","mode":"some"}`), http.StatusUnprocessableEntity)
}
