package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/fixture"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// walk follows next_cursor from path (which has a query string) as token
// and returns every item of key across the pages, failing on a page over
// limit.
func (e *env) walk(token, path, key string, limit int) []map[string]any {
	e.t.Helper()
	var all []map[string]any
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 500 {
			e.t.Fatalf("%s: no end after %d pages", path, pages)
		}
		p := path
		if cursor != "" {
			p += "&cursor=" + url.QueryEscape(cursor)
		}
		r := e.doAs(token, "GET", p, "")
		expect(e.t, r, http.StatusOK)
		var page map[string]json.RawMessage
		if err := json.Unmarshal(r.Body, &page); err != nil {
			e.t.Fatal(err)
		}
		var items []map[string]any
		if err := json.Unmarshal(page[key], &items); err != nil {
			e.t.Fatalf("%s: %v: %s", p, err, r.Body)
		}
		if len(items) > limit {
			e.t.Fatalf("%s: page of %d, limit %d", p, len(items), limit)
		}
		all = append(all, items...)
		nc, ok := page["next_cursor"]
		if !ok {
			return all
		}
		if err := json.Unmarshal(nc, &cursor); err != nil || cursor == "" {
			e.t.Fatalf("next_cursor %s", nc)
		}
	}
}

func seqs(items []map[string]any) []uint64 {
	out := make([]uint64, len(items))
	for i, it := range items {
		out[i] = uint64(it["seq"].(float64))
	}
	return out
}

type dlSpec struct {
	tenant, sub, typ, reason string
	status                   int32
}

// TestDeadLetterAPI: listing pages (both orders), hookctl's filters, one
// entry with its data, purge, bad filters and cursors, and tenant-bound
// tokens on every dead-letter endpoint.
func TestDeadLetterAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := time.Now().Add(-time.Hour).UTC()
	var specs []dlSpec
	var all []uint64
	bySeq := map[uint64]dlSpec{}
	for i := range 40 {
		s := dlSpec{tenant: "acme", sub: "sub_A", typ: "order.created", reason: "attempts_exhausted", status: 500}
		if i%4 == 1 {
			s.tenant, s.sub = "globex", "sub_G"
		}
		if i%3 == 0 {
			s.typ = "invoice.paid.eu"
		}
		if i%5 == 0 {
			s.reason, s.status = "gone", 410
		}
		seq, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: fmt.Sprintf("evt_%d", i), Tenant: s.tenant,
			SubscriptionId: s.sub, EventType: s.typ, Reason: s.reason, LastStatus: s.status,
			DeadLetteredAt: timestamppb.New(base.Add(time.Duration(i) * time.Second))})
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, s)
		all = append(all, seq)
		bySeq[seq] = s
	}
	want := func(keep func(dlSpec) bool, desc bool) []uint64 {
		var out []uint64
		for _, seq := range all {
			if keep(bySeq[seq]) {
				out = append(out, seq)
			}
		}
		if desc {
			slices.Reverse(out)
		}
		return out
	}
	every := func(dlSpec) bool { return true }

	for _, tc := range []struct {
		name, query string
		keep        func(dlSpec) bool
		desc        bool
	}{
		{"all newest first", "limit=7", every, true},
		{"all oldest first", "limit=7&order=asc", every, false},
		{"subscription", "limit=3&subscription_id=sub_G", func(s dlSpec) bool { return s.sub == "sub_G" }, true},
		{"tenant", "limit=100&tenant=acme", func(s dlSpec) bool { return s.tenant == "acme" }, true},
		{"reason", "limit=4&reason=gone", func(s dlSpec) bool { return s.reason == "gone" }, true},
		{"status class", "limit=4&status=5xx&order=asc", func(s dlSpec) bool { return s.status/100 == 5 }, false},
		{"type filter", "limit=5&type=invoice.>", func(s dlSpec) bool { return s.typ == "invoice.paid.eu" }, true},
		{"since until", "limit=5&since=" + base.Add(10*time.Second).Format(time.RFC3339) + "&until=" + base.Add(20*time.Second).Format(time.RFC3339),
			func(s dlSpec) bool { i := slices.Index(specs, s); _ = i; return true }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			items := e.walk(tokAdmin, "/v1/dead-letters?"+tc.query, "dead_letters", 100)
			got := seqs(items)
			exp := want(tc.keep, tc.desc)
			if tc.name == "since until" {
				exp = slices.Clone(all[10:20])
				slices.Reverse(exp)
			}
			if !slices.Equal(got, exp) {
				t.Fatalf("got %v, want %v", got, exp)
			}
		})
	}

	// One entry: every field, the data.
	one := e.doAs(tokAdmin, "GET", fmt.Sprintf("/v1/dead-letters/%d", all[0]), "")
	expect(t, one, http.StatusOK)
	m := one.json(t)
	if m["event_id"] != "evt_0" || m["reason"] != "gone" || m["last_status"] != float64(410) || m["subscription_id"] != "sub_A" ||
		fmt.Sprint(m["data"]) != "map[event:evt_0]" || m["dead_lettered_at"] == nil {
		t.Fatalf("dead letter: %s", one.Body)
	}

	// Bad filters and cursors: 400 saying what.
	for _, tt := range []struct{ query, detail string }{
		{"reason=nope", "not a dead-letter reason"},
		{"status=7xx", "query parameter status"},
		{"type=order..x", "query parameter type"},
		{"since=yesterday", "RFC 3339"},
		{"since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since must be before until"},
		{"limit=0", "limit must be"},
		{"order=up", "order must be"},
		{"cursor=%21", "not a cursor this API returned"},
		{"cursor=" + url.QueryEscape(encodeCursor("at", "desc", 5)), "another listing"},
		{"cursor=" + url.QueryEscape(encodeCursor("dl", "asc", 5)), "order=asc"},
		{"bogus=1", "unknown query parameter bogus"},
		{"reason=gone&reason=gone", "given 2 times"},
		{"subscription_id=a.b", "subscription_id"},
	} {
		r := e.doAs(tokAdmin, "GET", "/v1/dead-letters?"+tt.query, "")
		expect(t, r, http.StatusBadRequest)
		if p := r.json(t); !strings.Contains(fmt.Sprint(p["detail"]), tt.detail) || r.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s: %s, want detail with %q", tt.query, r.Body, tt.detail)
		}
	}
	expect(t, e.doAs(tokAdmin, "GET", "/v1/dead-letters/abc", ""), http.StatusBadRequest)
	expect(t, e.doAs(tokAdmin, "GET", "/v1/dead-letters/999999", ""), http.StatusNotFound)

	// Tenant-bound tokens: only their tenant, on every endpoint.
	globexSeq := want(func(s dlSpec) bool { return s.tenant == "globex" }, false)[0]
	acmeSeq := want(func(s dlSpec) bool { return s.tenant == "acme" }, false)[1]
	items := e.walk(tokAdminAcme, "/v1/dead-letters?limit=9", "dead_letters", 9)
	if !slices.Equal(seqs(items), want(func(s dlSpec) bool { return s.tenant == "acme" }, true)) {
		t.Fatalf("acme token listed %v", seqs(items))
	}
	if got := e.walk(tokAdminAcme, "/v1/dead-letters?subscription_id=sub_G", "dead_letters", 100); len(got) != 0 {
		t.Fatalf("acme token listed globex's subscription: %v", got)
	}
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/dead-letters?tenant=globex", ""), http.StatusForbidden)
	expect(t, e.doAs(tokAdminAcme, "GET", fmt.Sprintf("/v1/dead-letters/%d", globexSeq), ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "DELETE", fmt.Sprintf("/v1/dead-letters/%d", globexSeq), ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdmin, "GET", fmt.Sprintf("/v1/dead-letters/%d", globexSeq), ""), http.StatusOK)
	expect(t, e.doAs(tokPublishAcme, "GET", "/v1/dead-letters", ""), http.StatusForbidden)
	expect(t, e.doAs("", "GET", "/v1/dead-letters", ""), http.StatusUnauthorized)

	// Purge: 204, then gone.
	expect(t, e.doAs(tokAdminAcme, "DELETE", fmt.Sprintf("/v1/dead-letters/%d", acmeSeq), ""), http.StatusNoContent)
	expect(t, e.doAs(tokAdminAcme, "GET", fmt.Sprintf("/v1/dead-letters/%d", acmeSeq), ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "DELETE", fmt.Sprintf("/v1/dead-letters/%d", acmeSeq), ""), http.StatusNotFound)
	if got := len(e.walk(tokAdmin, "/v1/dead-letters?limit=500", "dead_letters", 500)); got != len(all)-1 {
		t.Fatalf("after one purge %d listed, want %d", got, len(all)-1)
	}
}

// encodeCursor builds a stream cursor as the API does (the format is the
// API's business: tests only use it to check refusals).
func encodeCursor(listing, order string, seq uint64) string {
	return b64(fmt.Sprintf("s1:%s:%s:%d:0", listing, order, seq))
}

// TestAttemptsAPI: records of batched messages are listed one by one
// across pages, filtered, and never to another tenant's token.
func TestAttemptsAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acme := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":[">"]}`)
	expect(t, acme, http.StatusCreated)
	acmeID := acme.json(t)["id"].(string)
	globex := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://globex.example/h","event_types":[">"]}`)
	expect(t, globex, http.StatusCreated)
	globexID := globex.json(t)["id"].(string)

	start := time.Now().Add(-time.Hour)
	type key struct {
		event   string
		attempt uint32
	}
	var order []key // oldest first
	n := 0
	for msg := range 12 {
		var batch []*hooklinev1.Attempt
		for k := range 1 + msg%3 {
			n++
			a := &hooklinev1.Attempt{EventId: fmt.Sprintf("evt_%d", msg), Tenant: "acme", SubscriptionId: acmeID, EventType: "order.created",
				Attempt: uint32(k + 1), StartedAt: timestamppb.New(start.Add(time.Duration(n) * time.Second)), Status: 500, Outcome: "retry"}
			if k == 2 {
				a.Status, a.Outcome = 200, "success"
			}
			batch = append(batch, a)
			order = append(order, key{a.EventId, a.Attempt})
		}
		if _, err := fixture.Attempts(ctx, e.js, batch...); err != nil {
			t.Fatal(err)
		}
		if _, err := fixture.Attempt(ctx, e.js, &hooklinev1.Attempt{EventId: "evt_g", Tenant: "globex", SubscriptionId: globexID,
			Attempt: 1, StartedAt: timestamppb.New(start), Status: 503, Outcome: "retry"}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(items []map[string]any) []key {
		out := make([]key, len(items))
		for i, it := range items {
			out[i] = key{it["event_id"].(string), uint32(it["attempt"].(float64))}
		}
		return out
	}
	rev := slices.Clone(order)
	slices.Reverse(rev)
	path := "/v1/subscriptions/" + acmeID + "/attempts?"
	if got := keys(e.walk(tokAdmin, path+"limit=2", "attempts", 2)); !slices.Equal(got, rev) {
		t.Fatalf("newest first by 2: %v, want %v", got, rev)
	}
	if got := keys(e.walk(tokAdminAcme, path+"limit=5&order=asc", "attempts", 5)); !slices.Equal(got, order) {
		t.Fatalf("oldest first by 5: %v, want %v", got, order)
	}
	if got := keys(e.walk(tokAdmin, path+"outcome=success", "attempts", 100)); len(got) != 4 {
		t.Fatalf("successes: %v", got)
	}
	if got := keys(e.walk(tokAdmin, path+"status=5xx&event_id=evt_5&order=asc", "attempts", 100)); !slices.Equal(got, []key{{"evt_5", 1}, {"evt_5", 2}}) {
		t.Fatalf("evt_5 5xx: %v", got)
	}
	since := start.Add(3 * time.Second).UTC().Format(time.RFC3339)
	until := start.Add(6 * time.Second).UTC().Format(time.RFC3339)
	if got := keys(e.walk(tokAdmin, path+"order=asc&since="+since+"&until="+until, "attempts", 100)); !slices.Equal(got, order[2:5]) {
		t.Fatalf("window: %v, want %v", got, order[2:5])
	}
	for _, q := range []string{"outcome=won", "status=x", "event_id=a%20b", "since=now", "limit=501"} {
		expect(t, e.doAs(tokAdmin, "GET", path+q, ""), http.StatusBadRequest)
	}
	// Another tenant's subscription is not found for a bound token.
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+globexID+"/attempts", ""), http.StatusNotFound)
	if got := e.walk(tokAdmin, "/v1/subscriptions/"+globexID+"/attempts?limit=100", "attempts", 100); len(got) != 12 {
		t.Fatalf("globex attempts: %d", len(got))
	}
	expect(t, e.doAs(tokPublishAcme, "GET", path, ""), http.StatusForbidden)
	// A deleted subscription keeps its history (under the caller's tenant).
	expect(t, e.doAs(tokAdmin, "DELETE", "/v1/subscriptions/"+globexID, ""), http.StatusNoContent)
	if got := e.walk(tokAdmin, "/v1/subscriptions/"+globexID+"/attempts?limit=100", "attempts", 100); len(got) != 12 {
		t.Fatalf("deleted subscription's attempts: %d", len(got))
	}
	if got := e.walk(tokAdminAcme, "/v1/subscriptions/"+globexID+"/attempts?limit=100", "attempts", 100); len(got) != 0 {
		t.Fatalf("acme token read globex's history: %v", got)
	}
}

// TestEventsAPI: the event log by page and by id (generated, chosen,
// evt_seq_), with the subscriptions it matches; tenant-bound tokens see
// only their tenant's.
func TestEventsAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h?api_key=s3cret","event_types":["order.*"]}`)
	expect(t, sub, http.StatusCreated)
	subID := sub.json(t)["id"].(string)
	var acmeIDs []string
	for i := range 15 {
		typ := "order.created"
		if i%3 == 0 {
			typ = "invoice.paid"
		}
		body := fmt.Sprintf(`{"tenant":"acme","type":%q,"data":{"n":%d}}`, typ, i)
		if i == 4 {
			body = `{"tenant":"acme","type":"order.created","id":"ord_4_created","data":{"n":4},"ordering_key":"o4"}`
		}
		r := e.doAs(tokAdmin, "POST", "/v1/events", body)
		expect(t, r, http.StatusAccepted)
		acmeIDs = append(acmeIDs, r.json(t)["id"].(string))
		expect(t, e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"globex","type":"order.created","id":"ord_4_created","data":{}}`), http.StatusAccepted)
	}
	ids := func(items []map[string]any) []string {
		out := make([]string, len(items))
		for i, it := range items {
			out[i] = it["id"].(string)
		}
		return out
	}
	rev := slices.Clone(acmeIDs)
	slices.Reverse(rev)
	if got := ids(e.walk(tokAdmin, "/v1/events?tenant=acme&limit=4", "events", 4)); !slices.Equal(got, rev) {
		t.Fatalf("acme events: %v, want %v", got, rev)
	}
	if got := ids(e.walk(tokAdminAcme, "/v1/events?limit=6&order=asc", "events", 6)); !slices.Equal(got, acmeIDs) {
		t.Fatalf("acme token's events: %v", got)
	}
	if got := e.walk(tokAdmin, "/v1/events?tenant=acme&type=invoice.*", "events", 100); len(got) != 5 {
		t.Fatalf("invoices: %d", len(got))
	}
	if got := e.walk(tokAdmin, "/v1/events?limit=500", "events", 500); len(got) != 16 { // globex's 15 publishes of one id are one event
		t.Fatalf("every tenant: %d", len(got))
	}
	if got := e.walk(tokAdmin, "/v1/events?tenant=acme&since="+time.Now().Add(time.Minute).UTC().Format(time.RFC3339), "events", 100); len(got) != 0 {
		t.Fatalf("future since: %v", got)
	}

	// By id: generated (a ULID), chosen; data and matching subscriptions.
	for _, id := range []string{acmeIDs[1], "ord_4_created"} {
		r := e.doAs(tokAdminAcme, "GET", "/v1/events/"+id, "")
		expect(t, r, http.StatusOK)
		var ev struct {
			ID, Tenant, Type string
			Data             map[string]any
			OrderingKey      string `json:"ordering_key"`
			Subscriptions    []map[string]any
		}
		if err := json.Unmarshal(r.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.ID != id || ev.Tenant != "acme" || ev.Type != "order.created" || ev.Data["n"] == nil ||
			len(ev.Subscriptions) != 1 || ev.Subscriptions[0]["id"] != subID || strings.Contains(string(r.Body), "s3cret") {
			t.Fatalf("event %s: %s", id, r.Body)
		}
		if id == "ord_4_created" && ev.OrderingKey != "o4" {
			t.Fatalf("ordering key: %s", r.Body)
		}
	}
	// The unbound admin names the tenant; the same id of globex is globex's.
	r := e.doAs(tokAdmin, "GET", "/v1/events/ord_4_created?tenant=globex", "")
	expect(t, r, http.StatusOK)
	if r.json(t)["tenant"] != "globex" {
		t.Fatalf("globex's event: %s", r.Body)
	}
	expect(t, e.doAs(tokAdmin, "GET", "/v1/events/ord_4_created", ""), http.StatusBadRequest)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/events/ord_4_created?tenant=globex", ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/events?tenant=globex", ""), http.StatusForbidden)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/events/nope_never", ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV", ""), http.StatusNotFound)
	// A publish token publishes; it does not read the log.
	expect(t, e.doAs(tokPublishAcme, "GET", "/v1/events", ""), http.StatusForbidden)
	expect(t, e.doAs(tokPublishAcme, "GET", "/v1/events/"+acmeIDs[0], ""), http.StatusForbidden)
	for _, q := range []string{"type=a..b", "since=x", "tenant=Bad!", "order=sideways"} {
		expect(t, e.doAs(tokAdmin, "GET", "/v1/events?"+q, ""), http.StatusBadRequest)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestEventDeliveriesAPI: per subscription, the state the deliverers
// stored (delivered, retrying, dead_lettered with its reason), pending for
// a matching subscription without one, nothing for a subscription created
// after the event; 404 for another tenant's token.
func TestEventDeliveriesAPI(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	var subs []string
	for i := range 4 {
		r := e.doAs(tokAdmin, "POST", "/v1/subscriptions", fmt.Sprintf(`{"tenant":"acme","url":"https://acme.example/%d","event_types":["order.*"]}`, i))
		expect(t, r, http.StatusCreated)
		subs = append(subs, r.json(t)["id"].(string))
	}
	ev := e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord.7","data":{}}`)
	expect(t, ev, http.StatusAccepted)
	late := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/late","event_types":["order.*"]}`)
	expect(t, late, http.StatusCreated)
	// What the deliverers store (pkg/deliverystate, as staterec writes it).
	w := deliverystate.NewWriter(e.js)
	now := time.Now().UTC()
	for i, s := range []deliverystate.State{
		{SubscriptionID: subs[0], State: deliverystate.Delivered, Attempts: 1, LastStatus: 200, LastAttemptAt: &now},
		{SubscriptionID: subs[1], State: deliverystate.Retrying, Attempts: 2, LastStatus: 503, LastAttemptAt: &now},
		{SubscriptionID: subs[2], State: deliverystate.DeadLettered, Attempts: 3, LastStatus: 500, Reason: "attempts_exhausted", LastAttemptAt: &now},
	} {
		if err := w.Put("acme", "ord.7", s); err != nil {
			t.Fatal(i, err)
		}
	}
	// Another event whose id extends this one's is not mixed in.
	if err := w.Put("acme", "ord.7.x", deliverystate.State{SubscriptionID: subs[3], State: deliverystate.Delivered}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.js.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("states not stored")
	}
	r := e.doAs(tokAdminAcme, "GET", "/v1/events/ord.7/deliveries", "")
	expect(t, r, http.StatusOK)
	var out struct {
		EventID    string `json:"event_id"`
		Deliveries []struct {
			SubscriptionID string `json:"subscription_id"`
			State          string `json:"state"`
			Attempts       int    `json:"attempts"`
			LastStatus     int    `json:"last_status"`
			Reason         string `json:"reason"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range out.Deliveries {
		got[d.SubscriptionID] = fmt.Sprintf("%s/%d/%d/%s", d.State, d.Attempts, d.LastStatus, d.Reason)
	}
	want := map[string]string{subs[0]: "delivered/1/200/", subs[1]: "retrying/2/503/", subs[2]: "dead_lettered/3/500/attempts_exhausted", subs[3]: "pending/0/0/"}
	if out.EventID != "ord.7" || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries %s\nwant %v", r.Body, want)
	}
	expect(t, e.doAs(tokAdmin, "GET", "/v1/events/ord.7/deliveries?tenant=globex", ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "GET", "/v1/events/ord.7/deliveries?tenant=globex", ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdmin, "GET", "/v1/events/ord.7/deliveries", ""), http.StatusBadRequest)
	expect(t, e.doAs(tokPublishAcme, "GET", "/v1/events/ord.7/deliveries", ""), http.StatusForbidden)
}

// TestEventDeliveriesFromBatches: the deliverers store the states of
// events EVENTS stored close together in one message; the API answers
// from those as from the states stored alone (the older format, still
// read), the newer state of a subscription winning.
func TestEventDeliveriesFromBatches(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	var subs []string
	for i := range 3 {
		r := e.doAs(tokAdmin, "POST", "/v1/subscriptions", fmt.Sprintf(`{"tenant":"acme","url":"https://acme.example/%d","event_types":["order.*"]}`, i))
		expect(t, r, http.StatusCreated)
		subs = append(subs, r.json(t)["id"].(string))
	}
	expect(t, e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord.8","data":{}}`), http.StatusAccepted)
	ctx := context.Background()
	ev, err := eventlog.Find(ctx, e.js, "acme", "ord.8")
	if err != nil {
		t.Fatal(err)
	}
	alone := deliverystate.NewWriter(e.js)
	batched := deliverystate.NewBatchWriter(e.js, deliverystate.BatchConfig{Linger: time.Hour}) // only Flush stores
	put := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// subs[0]: delivered at once, in a batch with another event's state.
	put(batched.PutStored("acme", "ord.8", ev.ReceivedAt, deliverystate.State{SubscriptionID: subs[0], State: deliverystate.Delivered, Attempts: 1, LastStatus: 200}))
	put(batched.PutStored("acme", "ord.8.x", ev.ReceivedAt, deliverystate.State{SubscriptionID: subs[1], State: deliverystate.DeadLettered, Attempts: 1, Reason: "gone"}))
	// subs[1]: retrying stored alone (a deliverer before batches), then
	// delivered in a batch.
	put(alone.Put("acme", "ord.8", deliverystate.State{SubscriptionID: subs[1], State: deliverystate.Retrying, Attempts: 1, LastStatus: 503}))
	put(batched.PutStored("acme", "ord.8", ev.ReceivedAt, deliverystate.State{SubscriptionID: subs[1], State: deliverystate.Delivered, Attempts: 2, LastStatus: 200}))
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := batched.Flush(fctx); err != nil {
		t.Fatal(err)
	}
	r := e.doAs(tokAdminAcme, "GET", "/v1/events/ord.8/deliveries", "")
	expect(t, r, http.StatusOK)
	var out struct {
		Deliveries []struct {
			SubscriptionID string `json:"subscription_id"`
			State          string `json:"state"`
			Attempts       int    `json:"attempts"`
			LastStatus     int    `json:"last_status"`
		} `json:"deliveries"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, d := range out.Deliveries {
		got[d.SubscriptionID] = fmt.Sprintf("%s/%d/%d", d.State, d.Attempts, d.LastStatus)
	}
	want := map[string]string{subs[0]: "delivered/1/200", subs[1]: "delivered/2/200", subs[2]: "pending/0/0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("deliveries %s\nwant %v", r.Body, want)
	}
}

// An event's answer shows, for each subscription it goes to, the headers
// an attempt sends: the standard and Hookline ones with their values, the
// signature and each custom header (an Authorization among them) only as
// REDACTED, never a secret.
func TestEventShowsTheRequestHeadersWithoutSecrets(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["order.*"],`+
		`"headers":{"x-api-key":"k3y-s3cret","Authorization":"Bearer t0ken-s3cret"}}`)
	expect(t, sub, http.StatusCreated)
	subID := sub.json(t)["id"].(string)
	expect(t, e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord_9","data":{},"ordering_key":"o9","occurred_at":"2026-12-01T10:00:00Z"}`), http.StatusAccepted)
	r := e.doAs(tokAdminAcme, "GET", "/v1/events/ord_9", "")
	expect(t, r, http.StatusOK)
	for _, secret := range []string{"k3y-s3cret", "t0ken-s3cret", "whsec_"} {
		if strings.Contains(string(r.Body), secret) {
			t.Fatalf("the event's answer shows %q: %s", secret, r.Body)
		}
	}
	var ev struct {
		Subscriptions []struct {
			ID             string                               `json:"id"`
			RequestHeaders []struct{ Name, Value, Note string } `json:"request_headers"`
		}
	}
	decodeJSON(t, r.Body, &ev)
	if len(ev.Subscriptions) != 1 || ev.Subscriptions[0].ID != subID {
		t.Fatalf("subscriptions: %s", r.Body)
	}
	got := map[string]string{}
	for _, h := range ev.Subscriptions[0].RequestHeaders {
		got[h.Name] = h.Value
	}
	want := map[string]string{
		"Content-Type": "application/json", "Webhook-Id": "ord_9", "Webhook-Timestamp": "", "Webhook-Signature": "REDACTED",
		"Hookline-Event-Type": "order.created", "Hookline-Occurred-At": "2026-12-01T10:00:00Z", "Hookline-Attempt": "1",
		"Hookline-Subscription-Id": subID, "Hookline-Ordering-Key": "o9", "Hookline-Ordering-Sequence": "",
		"X-Api-Key": "REDACTED", "Authorization": "REDACTED", "User-Agent": "Hookline/<version>",
	}
	if !maps.Equal(got, want) {
		t.Fatalf("request headers %v, want %v", got, want)
	}
}
