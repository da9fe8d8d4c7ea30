package server_test

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
)

var eventIDPattern = regexp.MustCompile(`^evt_[0-9A-HJKMNP-TV-Z]{26}$`)

func TestPublishEventKeepsBodyAndHeaders(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	// Odd spacing, key order and unicode must survive byte for byte.
	data := `{"z": 1,   "a" : [1, 2.50, "é\u00e9"], "n": null}`
	body := `{"tenant":"acme","type":"order.created","occurred_at":"2026-01-02T03:04:05.123456789+02:00","data":` + data + `}`
	r := e.do("POST", "/v1/events", body)
	expect(t, r, http.StatusAccepted)
	got := r.json(t)
	id, _ := got["id"].(string)
	if !eventIDPattern.MatchString(id) || got["duplicate"] != false {
		t.Fatalf("answer %s: want a generated evt_<ULID> id and duplicate false", r.Body)
	}
	m := e.lastMsg(stream.Events, "events.acme.order.created")
	if string(m.Data) != data {
		t.Fatalf("stored body %q, want %q", m.Data, data)
	}
	if want := "acme:" + id; m.Header.Get(stream.HeaderMsgID) != want {
		t.Fatalf("Nats-Msg-Id %q, want %q (scoped to the tenant)", m.Header.Get(stream.HeaderMsgID), want)
	}
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(stream.HeaderOccurredAt))
	want := time.Date(2026, 1, 2, 1, 4, 5, 123456789, time.UTC)
	if err != nil || !at.Equal(want) {
		t.Fatalf("Hookline-Occurred-At %q (%v), want %v", m.Header.Get(stream.HeaderOccurredAt), err, want)
	}
}

func TestPublishEventDefaultsOccurredAt(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	before := time.Now()
	expect(t, e.do("POST", "/v1/events", `{"tenant":"acme","type":"ping","data":"x"}`), http.StatusAccepted)
	m := e.lastMsg(stream.Events, "events.acme.ping")
	at, err := time.Parse(time.RFC3339Nano, m.Header.Get(stream.HeaderOccurredAt))
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Fatalf("default occurred_at %q (%v) is not the accept time", m.Header.Get(stream.HeaderOccurredAt), err)
	}
	if string(m.Data) != `"x"` {
		t.Fatalf("body %q", m.Data)
	}
}

func TestPublishEventSameIDStoredOnce(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	body := `{"tenant":"acme","type":"order.created","id":"order-42.created","data":{"n":1}}`
	first := e.do("POST", "/v1/events", body)
	expect(t, first, http.StatusAccepted)
	second := e.do("POST", "/v1/events", body)
	expect(t, second, http.StatusAccepted)
	if got := first.json(t); got["id"] != "order-42.created" || got["duplicate"] != false {
		t.Fatalf("first: %s", first.Body)
	}
	if got := second.json(t); got["id"] != "order-42.created" || got["duplicate"] != true {
		t.Fatalf("second: %s", second.Body)
	}
	if n := e.msgs(stream.Events); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want 1", n)
	}
}

// One tenant's event id neither suppresses nor reveals another's: the same
// id from a second tenant is a new event, stored and not "duplicate".
func TestSameIDFromAnotherTenantIsNotADuplicate(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	for _, tenant := range []string{"acme", "globex"} {
		r := e.do("POST", "/v1/events", `{"tenant":"`+tenant+`","type":"order.created","id":"ord_42_created","data":{}}`)
		expect(t, r, http.StatusAccepted)
		if got := r.json(t); got["duplicate"] != false {
			t.Fatalf("%s: %s; want duplicate false", tenant, r.Body)
		}
	}
	if n := e.msgs(stream.Events); n != 2 {
		t.Fatalf("EVENTS holds %d messages, want one per tenant", n)
	}
}

func TestPublishBatch(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_MAX_BATCH": "4"})
	r := e.do("POST", "/v1/events/batch", `{"events":[
		{"tenant":"acme","type":"order.created","data":{"i":0},"id":"b-0"},
		{"tenant":"acme","type":"order.paid","data":[1]},
		{"tenant":"acme","type":"invoice.sent","data":true,"id":"b-0"}]}`)
	expect(t, r, http.StatusAccepted)
	var got struct {
		Events []struct {
			ID        string `json:"id"`
			Duplicate bool   `json:"duplicate"`
		} `json:"events"`
	}
	if err := jsonUnmarshal(r.Body, &got); err != nil || len(got.Events) != 3 {
		t.Fatalf("answer %s (%v)", r.Body, err)
	}
	if got.Events[0].ID != "b-0" || got.Events[0].Duplicate || !eventIDPattern.MatchString(got.Events[1].ID) {
		t.Fatalf("answer %s", r.Body)
	}
	// The third reuses the first's id: stored once.
	if !got.Events[2].Duplicate {
		t.Fatalf("same id in one batch not deduplicated: %s", r.Body)
	}
	if n := e.msgs(stream.Events); n != 2 {
		t.Fatalf("EVENTS holds %d messages, want 2", n)
	}
	if m := e.lastMsg(stream.Events, "events.acme.order.paid"); string(m.Data) != "[1]" || m.Header.Get(stream.HeaderMsgID) != "acme:"+got.Events[1].ID {
		t.Fatalf("second event stored as %q id %q", m.Data, m.Header.Get(stream.HeaderMsgID))
	}

	// One bad event: 422 naming it, and nothing of the batch published.
	bad := e.do("POST", "/v1/events/batch", `{"events":[
		{"tenant":"acme","type":"ok.one","data":1},
		{"tenant":"acme","type":"bad..type","data":1},
		{"tenant":"acme","type":"ok.two"}]}`)
	expect(t, bad, http.StatusUnprocessableEntity)
	p := bad.json(t)
	fields := problemFields(t, p)
	if !fields["events[1].type"] || !fields["events[2].data"] || len(fields) != 2 {
		t.Fatalf("errors %v, want events[1].type and events[2].data", fields)
	}
	if n := e.msgs(stream.Events); n != 2 {
		t.Fatalf("a rejected batch published something: %d messages", n)
	}

	tooMany := `{"events":[` + strings.Repeat(`{"tenant":"a","type":"t","data":1},`, 4) + `{"tenant":"a","type":"t","data":1}]}`
	r = e.do("POST", "/v1/events/batch", tooMany)
	expect(t, r, http.StatusUnprocessableEntity)
	if f := problemFields(t, r.json(t)); !f["events"] {
		t.Fatalf("too many events: %s", r.Body)
	}
	expect(t, e.do("POST", "/v1/events/batch", `{"events":[]}`), http.StatusUnprocessableEntity)
}

func TestPublishBatchLarge(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range 500 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"tenant":"acme","type":"load.test","id":"load-%d","data":{"i":%d}}`, i, i)
	}
	b.WriteString(`]}`)
	expect(t, e.do("POST", "/v1/events/batch", b.String()), http.StatusAccepted)
	if n := e.msgs(stream.Events); n != 500 {
		t.Fatalf("EVENTS holds %d messages, want 500", n)
	}
}

func TestPublishWithNATSDown(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	for _, tc := range []struct{ path, body string }{
		{"/v1/events", `{"tenant":"acme","type":"ping","data":1}`},
		{"/v1/events/batch", `{"events":[{"tenant":"acme","type":"ping","data":1}]}`},
	} {
		r := e.do("POST", tc.path, tc.body)
		expect(t, r, http.StatusServiceUnavailable)
		p := r.json(t)
		ids, _ := p["ids"].([]any)
		if p["type"] != "urn:hookline:problem:unavailable" || len(ids) != 1 || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %s", tc.path, r.Body)
		}
	}
	eventually(t, "readyz 503", func() bool {
		return e.do("GET", "/readyz", nil).Status == http.StatusServiceUnavailable
	})
	expect(t, e.do("GET", "/livez", nil), http.StatusOK)
}
