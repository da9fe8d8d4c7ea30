package server_test

import (
	"context"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

var subIDPattern = regexp.MustCompile(`^sub_[0-9A-HJKMNP-TV-Z]{26}$`)

// stored reads a subscription from the KV bucket (the truth).
func (e *env) stored(id string) *hooklinev1.Subscription {
	e.t.Helper()
	store, err := subscription.NewStore(context.Background(), e.js)
	if err != nil {
		e.t.Fatal(err)
	}
	sub, _, err := store.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("kv get %s: %v", id, err)
	}
	return sub
}

// cached reads a subscription the way a deliverer does, from Redis only.
func (e *env) cached(tenant, id string) (string, error) {
	return e.rdb.HGet(context.Background(), subscription.TenantKey(tenant), id).Result()
}

func TestSubscriptionLifecycle(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", map[string]any{
		"tenant": "acme", "url": "https://example.com/hooks?x=1", "event_types": []string{"order.*", "invoice.>"},
		"description": "orders", "max_in_flight": 4, "rate_limit_per_second": 2.5, "rate_limit_burst": 5, "ordered": true,
	})
	expect(t, r, http.StatusCreated)
	created := r.json(t)
	id, _ := created["id"].(string)
	secret, _ := created["secret"].(string)
	if !subIDPattern.MatchString(id) || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("created %s: want a sub_<ULID> id and a whsec_ secret", r.Body)
	}
	if _, ok := created["keys"]; ok {
		t.Fatal("the API returned the signing keys")
	}
	// Proto field order, filters readable as written.
	if !strings.HasPrefix(string(r.Body), `{"id":"sub_`) || !strings.Contains(string(r.Body), `"invoice.>"`) {
		t.Fatalf("rendering %s: want proto field order and unescaped filters", r.Body)
	}
	if r.Header.Get("Location") != "/v1/subscriptions/"+id {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
	if created["tenant"] != "acme" || created["url"] != "https://example.com/hooks?x=1" || created["description"] != "orders" ||
		created["max_in_flight"] != float64(4) || created["rate_limit_per_second"] != 2.5 || created["rate_limit_burst"] != float64(5) ||
		created["ordered"] != true || created["disabled"] != false || created["signature_scheme"] != "v1" || created["created_at"] == nil {
		t.Fatalf("created %s", r.Body)
	}
	// The truth holds the secret as its only key, and never the reveal field.
	st := e.stored(id)
	if len(st.GetKeys()) != 1 || st.GetKeys()[0].GetSecret() != secret || st.GetSecret() != "" {
		t.Fatalf("stored keys %v secret %q", st.GetKeys(), st.GetSecret())
	}
	// Written through to Redis at once (no waiting on the syncer).
	if v, err := e.cached("acme", id); err != nil || !strings.Contains(v, id) {
		t.Fatalf("not in redis right after create: %q %v", v, err)
	}

	got := e.do("GET", "/v1/subscriptions/"+id, nil)
	expect(t, got, http.StatusOK)
	g := got.json(t)
	if _, ok := g["secret"]; ok {
		t.Fatal("GET revealed the secret")
	}
	if _, ok := g["keys"]; ok {
		t.Fatal("GET returned the keys")
	}
	if g["id"] != id || g["url"] != "https://example.com/hooks?x=1" {
		t.Fatalf("GET %s", got.Body)
	}
	expect(t, e.do("GET", "/v1/subscriptions/"+id+"?tenant=acme", nil), http.StatusOK)

	// A second subscription, another tenant: lists are per tenant, sorted.
	expect(t, e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"http://example.org","event_types":["a"]}`), http.StatusCreated)
	expect(t, e.do("POST", "/v1/subscriptions", `{"tenant":"beta","url":"http://example.org","event_types":["a"]}`), http.StatusCreated)
	list := e.do("GET", "/v1/subscriptions?tenant=acme", nil)
	expect(t, list, http.StatusOK)
	var l struct {
		Subscriptions []map[string]any `json:"subscriptions"`
	}
	if err := jsonUnmarshal(list.Body, &l); err != nil || len(l.Subscriptions) != 2 {
		t.Fatalf("list %s", list.Body)
	}
	if l.Subscriptions[0]["id"] != id && l.Subscriptions[1]["id"] != id {
		t.Fatalf("list misses %s", id)
	}
	if !slices.IsSortedFunc(l.Subscriptions, func(a, b map[string]any) int { return strings.Compare(a["id"].(string), b["id"].(string)) }) {
		t.Fatal("list not sorted by id")
	}
	for _, s := range l.Subscriptions {
		if _, ok := s["keys"]; ok {
			t.Fatal("list returned keys")
		}
		if _, ok := s["secret"]; ok {
			t.Fatal("list returned a secret")
		}
	}
	empty := e.do("GET", "/v1/subscriptions?tenant=nobody", nil)
	expect(t, empty, http.StatusOK)
	if strings.TrimSpace(string(empty.Body)) != `{"subscriptions":[]}` {
		t.Fatalf("empty list %s", empty.Body)
	}

	// PATCH changes only what is present.
	p := e.do("PATCH", "/v1/subscriptions/"+id, `{"description":"renamed","event_types":["order.created"]}`)
	expect(t, p, http.StatusOK)
	pj := p.json(t)
	if pj["description"] != "renamed" || pj["url"] != "https://example.com/hooks?x=1" || pj["max_in_flight"] != float64(4) {
		t.Fatalf("patch %s", p.Body)
	}
	if st := e.stored(id); !slices.Equal(st.GetEventTypes(), []string{"order.created"}) || st.GetKeys()[0].GetSecret() != secret {
		t.Fatalf("stored after patch: %v", st)
	}

	// Disable, then re-enable.
	d := e.do("PATCH", "/v1/subscriptions/"+id, `{"disabled":true}`)
	expect(t, d, http.StatusOK)
	dj := d.json(t)
	if dj["disabled"] != true || dj["disabled_reason"] != "manual" || dj["disabled_at"] == nil {
		t.Fatalf("disable %s", d.Body)
	}
	if v, _ := e.cached("acme", id); !strings.Contains(v, `"disabled":true`) {
		t.Fatalf("disable not written through: %q", v)
	}
	en := e.do("PATCH", "/v1/subscriptions/"+id, `{"disabled":false}`)
	expect(t, en, http.StatusOK)
	ej := en.json(t)
	if ej["disabled"] != false || ej["disabled_reason"] != "" || ej["disabled_at"] != nil {
		t.Fatalf("enable %s", en.Body)
	}
	// An empty PATCH changes nothing.
	before := e.stored(id).GetUpdatedAt().AsTime()
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{}`), http.StatusOK)
	if !e.stored(id).GetUpdatedAt().AsTime().Equal(before) {
		t.Fatal("an empty PATCH wrote")
	}

	expect(t, e.do("DELETE", "/v1/subscriptions/"+id, nil), http.StatusNoContent)
	expect(t, e.do("GET", "/v1/subscriptions/"+id, nil), http.StatusNotFound)
	expect(t, e.do("DELETE", "/v1/subscriptions/"+id, nil), http.StatusNotFound)
	// The deletion is in Redis as a tombstone at once.
	if v, err := e.cached("acme", id); err != nil || !strings.HasSuffix(v, " ") {
		t.Fatalf("tombstone %q %v", v, err)
	}
}

func TestRotateSecret(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_SECRET_OVERLAP": "1h"})
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com","event_types":[">"]}`)
	expect(t, r, http.StatusCreated)
	id, first := r.json(t)["id"].(string), r.json(t)["secret"].(string)

	rot := e.do("POST", "/v1/subscriptions/"+id+"/rotate-secret", nil)
	expect(t, rot, http.StatusOK)
	rj := rot.json(t)
	second, _ := rj["secret"].(string)
	if !strings.HasPrefix(second, "whsec_") || second == first || rj["id"] != id {
		t.Fatalf("rotate %s", rot.Body)
	}
	if _, ok := rj["keys"]; ok {
		t.Fatal("rotate returned the keys")
	}
	keys := e.stored(id).GetKeys()
	if len(keys) != 2 || keys[0].GetSecret() != second || keys[1].GetSecret() != first {
		t.Fatalf("keys after rotation: want [new, old], got %d keys", len(keys))
	}
	if keys[0].GetExpiresAt() != nil {
		t.Fatal("the new key expires")
	}
	overlap := keys[1].GetExpiresAt().AsTime().Sub(keys[0].GetCreatedAt().AsTime())
	if overlap != time.Hour {
		t.Fatalf("old key expires %v after the rotation, want 1h", overlap)
	}
	// A second rotation keeps the first old key's expiry.
	expect(t, e.do("POST", "/v1/subscriptions/"+id+"/rotate-secret", nil), http.StatusOK)
	keys2 := e.stored(id).GetKeys()
	if len(keys2) != 3 || keys2[2].GetSecret() != first || !keys2[2].GetExpiresAt().AsTime().Equal(keys[1].GetExpiresAt().AsTime()) {
		t.Fatalf("second rotation changed the first old key's expiry or order")
	}
	if v, _ := e.cached("acme", id); !strings.Contains(v, keys2[0].GetSecret()) {
		t.Fatal("rotation not written through to redis")
	}
}

func TestTestEndpointPublishesOneTask(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com","event_types":["order.created"]}`)
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	before := time.Now()
	tr := e.do("POST", "/v1/subscriptions/"+id+"/test", nil)
	expect(t, tr, http.StatusAccepted)
	eventID, _ := tr.json(t)["event_id"].(string)
	if !eventIDPattern.MatchString(eventID) {
		t.Fatalf("test answer %s", tr.Body)
	}
	if n := e.msgs(stream.Deliveries); n != 1 {
		t.Fatalf("DELIVERIES holds %d messages, want 1", n)
	}
	if n := e.msgs(stream.Events); n != 0 {
		t.Fatalf("the test event went through EVENTS (%d): it must reach only this subscription", n)
	}
	m := e.lastMsg(stream.Deliveries, stream.DeliverySubject("acme", id))
	want := map[string]string{
		stream.HeaderMsgID:          stream.TaskMsgID(eventID, id),
		stream.HeaderEventID:        eventID,
		stream.HeaderTenant:         "acme",
		stream.HeaderEventType:      "hookline.test",
		stream.HeaderSubscriptionID: id,
		stream.HeaderTest:           "true",
	}
	for k, v := range want {
		if got := m.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(stream.HeaderOccurredAt))
	if err != nil || at.Before(before.Add(-time.Second)) {
		t.Errorf("Hookline-Occurred-At %q", m.Header.Get(stream.HeaderOccurredAt))
	}
	if string(m.Data) != `{"type":"hookline.test","subscription_id":"`+id+`"}` {
		t.Errorf("body %s", m.Data)
	}
	// A disabled subscription cannot be tested (the deliverer would drop it).
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, `{"disabled":true}`), http.StatusOK)
	c := e.do("POST", "/v1/subscriptions/"+id+"/test", nil)
	expect(t, c, http.StatusConflict)
	if n := e.msgs(stream.Deliveries); n != 1 {
		t.Fatalf("DELIVERIES holds %d messages after a refused test", n)
	}
}

// TestSyncerRefillsAfterFlush: the producer's own syncer brings Redis back
// after a FLUSHALL.
func TestSyncerRefillsAfterFlush(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com","event_types":["a"]}`)
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	eventually(t, "cache ready", func() bool {
		n, _ := e.rdb.Exists(context.Background(), subscription.ReadyKey).Result()
		return n == 1
	})
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "cache refilled", func() bool {
		n, _ := e.rdb.Exists(context.Background(), subscription.ReadyKey).Result()
		v, _ := e.cached("acme", id)
		return n == 1 && strings.Contains(v, id)
	})
}

// A tenant may have at most HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT
// subscriptions: the next create is a 409 that says why; another tenant is
// not affected, and deleting one makes room.
func TestSubscriptionsPerTenantAreBounded(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT": "2"})
	create := func(tenant string) response {
		return e.do("POST", "/v1/subscriptions", `{"tenant":"`+tenant+`","url":"https://example.com/h","event_types":["a.>"]}`)
	}
	first := create("acme")
	expect(t, first, http.StatusCreated)
	expect(t, create("acme"), http.StatusCreated)
	full := create("acme")
	expect(t, full, http.StatusConflict)
	if !strings.Contains(string(full.Body), "HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT") {
		t.Fatalf("409 without saying why: %s", full.Body)
	}
	expect(t, create("globex"), http.StatusCreated)
	expect(t, e.do("DELETE", "/v1/subscriptions/"+first.json(t)["id"].(string), ""), http.StatusNoContent)
	expect(t, create("acme"), http.StatusCreated)
}
