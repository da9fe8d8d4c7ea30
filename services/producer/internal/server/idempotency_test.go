package server_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// doKey sends a JSON request with an Idempotency-Key ("" for none) and a
// bearer token ("" for none) to base.
func doKey(t *testing.T, base, token, key, method, path, body string) response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return response{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

func replayed(r response) bool { return r.Header.Get("Idempotent-Replayed") == "true" }

// The same key and body answer the first answer again — the same
// generated id, 202, marked replayed — and store one event; whitespace
// does not make another body.
func TestIdempotencyKeyReplaysTheFirstAnswer(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	body := `{"tenant":"acme","type":"order.created","data":{"n":1}}`
	first := doKey(t, e.base, "", "order-1-attempt", "POST", "/v1/events", body)
	expect(t, first, http.StatusAccepted)
	if replayed(first) {
		t.Fatal("the first answer is marked replayed")
	}
	second := doKey(t, e.base, "", "order-1-attempt", "POST", "/v1/events", "{ \"tenant\": \"acme\",\n \"type\":\"order.created\", \"data\": {\"n\": 1} }")
	expect(t, second, http.StatusAccepted)
	if !replayed(second) || string(second.Body) != string(first.Body) {
		t.Fatalf("retry: %s (replayed %v), want the first answer %s again, replayed", second.Body, replayed(second), first.Body)
	}
	if id := first.json(t)["id"].(string); !eventIDPattern.MatchString(id) {
		t.Fatalf("id %q", id)
	}
	if n := e.msgs(stream.Events); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", n)
	}
	// Without a key the same body is a new event (a generated id).
	expect(t, e.do("POST", "/v1/events", body), http.StatusAccepted)
	if n := e.msgs(stream.Events); n != 2 {
		t.Fatalf("EVENTS holds %d messages, want 2", n)
	}

	batch := `{"events":[{"tenant":"acme","type":"a","data":1},{"tenant":"acme","type":"b","data":2}]}`
	b1 := doKey(t, e.base, "", "batch-7", "POST", "/v1/events/batch", batch)
	b2 := doKey(t, e.base, "", "batch-7", "POST", "/v1/events/batch", batch)
	expect(t, b1, http.StatusAccepted)
	expect(t, b2, http.StatusAccepted)
	if !replayed(b2) || string(b1.Body) != string(b2.Body) {
		t.Fatalf("batch retry %s, want %s replayed", b2.Body, b1.Body)
	}
	if n := e.msgs(stream.Events); n != 4 {
		t.Fatalf("EVENTS holds %d messages, want 4", n)
	}
}

// The same key with another body, or on another endpoint, is a 422 that
// says so, and nothing is published.
func TestIdempotencyKeyReusedForAnotherRequest(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	expect(t, doKey(t, e.base, "", "k1", "POST", "/v1/events", `{"tenant":"acme","type":"a","data":1}`), http.StatusAccepted)
	for _, tt := range []struct{ path, body string }{
		{"/v1/events", `{"tenant":"acme","type":"a","data":2}`},
		{"/v1/events/batch", `{"events":[{"tenant":"acme","type":"a","data":1}]}`},
	} {
		r := doKey(t, e.base, "", "k1", "POST", tt.path, tt.body)
		expect(t, r, http.StatusUnprocessableEntity)
		if p := r.json(t); p["type"] != "urn:hookline:problem:idempotency-key-reused" || !strings.Contains(p["detail"].(string), "different request") {
			t.Fatalf("%s: %s", tt.path, r.Body)
		}
	}
	if n := e.msgs(stream.Events); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", n)
	}
}

// Keys are scoped per tenant: tenant B's request with tenant A's key is
// its own request (no 422, no replay of A's answer), with unbound and
// tenant-bound tokens alike.
func TestIdempotencyKeysAreScopedPerTenant(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens() + ",globex-ci:" + auth.HashToken("tok-publish-globex-77") + ":publish:globex"})
	a := doKey(t, e.base, tokPublishAcme, "shared-key", "POST", "/v1/events", `{"tenant":"acme","type":"a","data":1}`)
	b := doKey(t, e.base, "tok-publish-globex-77", "shared-key", "POST", "/v1/events", `{"tenant":"globex","type":"a","data":1}`)
	c := doKey(t, e.base, tokAdmin, "shared-key", "POST", "/v1/events", `{"tenant":"initech","type":"b","data":2}`)
	for _, r := range []response{a, b, c} {
		expect(t, r, http.StatusAccepted)
		if replayed(r) {
			t.Fatalf("%s replayed another tenant's answer", r.Body)
		}
	}
	if a.json(t)["id"] == b.json(t)["id"] || b.json(t)["id"] == c.json(t)["id"] {
		t.Fatalf("ids %s %s %s: tenants share an answer", a.Body, b.Body, c.Body)
	}
	if n := e.msgs(stream.Events); n != 3 {
		t.Fatalf("EVENTS holds %d messages, want one per tenant", n)
	}
	// Each tenant's retry gets its own answer back.
	again := doKey(t, e.base, "tok-publish-globex-77", "shared-key", "POST", "/v1/events", `{"tenant":"globex","type":"a","data":1}`)
	if !replayed(again) || string(again.Body) != string(b.Body) {
		t.Fatalf("globex retry %s, want %s", again.Body, b.Body)
	}
}

// Concurrent identical requests on two producer replicas store one event
// and all answer it: one ran it, the others replayed its answer.
func TestConcurrentIdenticalRequestsPublishOnce(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	other := startOn(t, e.nats.URL(), e.redis.Addr, nil)
	other.awaitReady()
	// Concurrent dials leave connections that never sent a request, which
	// hold a server's Shutdown: close them before the producers stop.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	const n = 24
	for round := range 3 {
		key := fmt.Sprintf("concurrent-%d", round)
		body := fmt.Sprintf(`{"tenant":"acme","type":"order.created","data":{"round":%d}}`, round)
		answers := make([]response, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			base := e.base
			if i%2 == 1 {
				base = other.base
			}
			wg.Go(func() {
				<-start
				answers[i] = doKey(t, base, "", key, "POST", "/v1/events", body)
			})
		}
		close(start)
		wg.Wait()
		ran := 0
		for _, r := range answers {
			expect(t, r, http.StatusAccepted)
			if string(r.Body) != string(answers[0].Body) {
				t.Fatalf("answers differ: %s and %s", r.Body, answers[0].Body)
			}
			if !replayed(r) {
				ran++
			}
		}
		if ran != 1 {
			t.Fatalf("round %d: %d requests ran, want 1", round, ran)
		}
	}
	if got := e.msgs(stream.Events); got != 3 {
		t.Fatalf("EVENTS holds %d messages, want one per round", got)
	}
}

// A key outlives the producer that answered it: another producer started
// afterwards on the same NATS replays the answer.
func TestIdempotencyKeySurvivesARestart(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	first := startOn(t, ns.URL(), redistest.Start(t).Addr, nil)
	first.awaitReady()
	body := `{"tenant":"acme","type":"a","data":1}`
	a := doKey(t, first.base, "", "restart-key", "POST", "/v1/events", body)
	expect(t, a, http.StatusAccepted)
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	second := startOn(t, ns.URL(), redistest.Start(t).Addr, nil)
	second.awaitReady()
	b := doKey(t, second.base, "", "restart-key", "POST", "/v1/events", body)
	expect(t, b, http.StatusAccepted)
	if !replayed(b) || string(a.Body) != string(b.Body) {
		t.Fatalf("after a restart: %s, want %s replayed", b.Body, a.Body)
	}
	if msgs := natstest.Messages(t, js, stream.Events); len(msgs) != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", len(msgs))
	}
}

// A request that fails releases its key: the retry runs again. A
// subscription's answer, secret included, is replayed, and stored sealed.
func TestIdempotentSubscriptionCreate(t *testing.T) {
	t.Parallel()
	key, _ := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT": "1", "HOOKLINE_SECRET_KEY": key})
	blocker := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com/a","event_types":["a"]}`)
	expect(t, blocker, http.StatusCreated)
	body := `{"tenant":"acme","url":"https://example.com/b","event_types":["b"]}`
	full := doKey(t, e.base, "", "sub-b", "POST", "/v1/subscriptions", body)
	if full.Status/100 == 2 {
		t.Fatalf("a second subscription passed the limit of 1: %s", full.Body)
	}
	expect(t, e.do("DELETE", "/v1/subscriptions/"+blocker.json(t)["id"].(string), nil), http.StatusNoContent)
	created := doKey(t, e.base, "", "sub-b", "POST", "/v1/subscriptions", body)
	expect(t, created, http.StatusCreated)
	if replayed(created) {
		t.Fatal("the failed first request's answer was kept")
	}
	again := doKey(t, e.base, "", "sub-b", "POST", "/v1/subscriptions", body)
	expect(t, again, http.StatusCreated)
	if !replayed(again) || string(again.Body) != string(created.Body) || again.Header.Get("Location") != created.Header.Get("Location") {
		t.Fatalf("retry %s %v, want %s", again.Body, again.Header, created.Body)
	}
	if !strings.Contains(string(again.Body), `"secret":"whsec_`) {
		t.Fatalf("the replayed answer lost the secret: %s", again.Body)
	}
	kv, err := e.js.KeyValue(context.Background(), stream.IdempotencyBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for k := range keys.Keys() {
		v, err := kv.Get(context.Background(), k)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(v.Value()), "whsec_") || strings.Contains(string(v.Value()), "example.com") {
			t.Fatalf("stored in clear: %s", v.Value())
		}
	}
}

// Creating a replay job twice with one key starts one job.
func TestIdempotentReplayJob(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	fixture.Replayer(t, e.nats)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: "evt_1", Tenant: "acme",
		SubscriptionId: "sub_A", EventType: "a", LastStatus: 503}); err != nil {
		t.Fatal(err)
	}
	body := `{"source":"dead_letters","tenant":"acme"}`
	a := doKey(t, e.base, "", "job-1", "POST", "/v1/replays", body)
	b := doKey(t, e.base, "", "job-1", "POST", "/v1/replays", body)
	expect(t, a, http.StatusAccepted)
	expect(t, b, http.StatusAccepted)
	if !replayed(b) || a.json(t)["id"] != b.json(t)["id"] || b.Header.Get("Location") == "" {
		t.Fatalf("second create %s (%v), want job %v replayed", b.Body, b.Header, a.json(t)["id"])
	}
	kv, err := e.js.KeyValue(ctx, stream.ReplayJobsBucket)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs := 0
	for range keys.Keys() {
		jobs++
	}
	if jobs != 1 {
		t.Fatalf("%d jobs stored, want 1", jobs)
	}
}

func TestIdempotencyKeyHeaderChecked(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	body := `{"tenant":"acme","type":"a","data":1}`
	for name, key := range map[string]string{
		"too long":     strings.Repeat("k", 256),
		"control char": "a\tb",
		"not ASCII":    "clé",
	} {
		r := doKey(t, e.base, "", key, "POST", "/v1/events", body)
		expect(t, r, http.StatusBadRequest)
		if !strings.Contains(r.json(t)["detail"].(string), "Idempotency-Key") {
			t.Fatalf("%s: %s", name, r.Body)
		}
	}
	req, _ := http.NewRequest("POST", e.base+"/v1/events", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("Idempotency-Key", "a")
	req.Header.Add("Idempotency-Key", "b")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("two keys: %d", resp.StatusCode)
	}
	if n := e.msgs(stream.Events); n != 0 {
		t.Fatalf("EVENTS holds %d messages after refused requests", n)
	}
	// 255 characters is the limit, not over it.
	expect(t, doKey(t, e.base, "", strings.Repeat("k", 255), "POST", "/v1/events", body), http.StatusAccepted)
}

// batchOf is a POST /v1/events/batch body of n events of acme; id(i) is
// the id of event i ("" for a generated one).
func batchOf(n int, id func(i int) string) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"tenant":"acme","type":"order.created","data":{"n":%d}`, i)
		if v := id(i); v != "" {
			fmt.Fprintf(&b, `,"id":%q`, v)
		}
		b.WriteByte('}')
	}
	b.WriteString("]}")
	return b.String()
}

// A batch of 10,000 events (the largest HOOKLINE_MAX_BATCH allows) with
// an Idempotency-Key: its answer is stored and replayed like a small
// one's, and the events are stored once. A batch whose record cannot fit
// the store (10,000 client ids of 128 random characters: incompressible)
// is refused before anything is published, with a 413 that says why and
// what to do.
func TestIdempotencyKeyOnTheLargestBatch(t *testing.T) {
	t.Parallel()
	// The largest batch the configuration allows: what the test is about;
	// answers sealed at rest as production runs them (a third larger). The
	// default publish timeout (5 s; the test env's 2 s) is for one batch
	// of the default size: 10,000 events on a loaded 2-core machine took
	// longer once, and the test is about the idempotency record, not speed.
	key, _ := sealingKey(t)
	e := start(t, map[string]string{"HOOKLINE_MAX_BATCH": "10000", "HOOKLINE_SECRET_KEY": key, "HOOKLINE_PUBLISH_TIMEOUT": "30s"})
	const n = 10000
	body := batchOf(n, func(int) string { return "" })
	first := doKey(t, e.base, "", "big-batch-1", "POST", "/v1/events/batch", body)
	expect(t, first, http.StatusAccepted)
	second := doKey(t, e.base, "", "big-batch-1", "POST", "/v1/events/batch", body)
	expect(t, second, http.StatusAccepted)
	if !replayed(second) || string(second.Body) != string(first.Body) {
		t.Fatalf("retry of the large batch: replayed %v, %d bytes, want the first answer (%d bytes) replayed", replayed(second), len(second.Body), len(first.Body))
	}
	if got := e.msgs(stream.Events); got != n {
		t.Fatalf("EVENTS holds %d messages, want %d", got, n)
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"
	random := func(int) string {
		b := make([]byte, 128)
		for i := range b {
			b[i] = alphabet[rnd.IntN(len(alphabet))]
		}
		return string(b)
	}
	huge := doKey(t, e.base, "", "big-batch-2", "POST", "/v1/events/batch", batchOf(n, random))
	expect(t, huge, http.StatusRequestEntityTooLarge)
	if p := huge.json(t); !strings.Contains(p["detail"].(string), "Idempotency-Key") || !strings.Contains(p["detail"].(string), "without the key") {
		t.Fatalf("refusal %s: want a detail naming the Idempotency-Key and what to do", huge.Body)
	}
	if got := e.msgs(stream.Events); got != n {
		t.Fatalf("EVENTS holds %d messages after the refusal, want %d (nothing published)", got, n)
	}
}
