package server_test

import (
	"cmp"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// problemFields checks p is a problem and returns the fields it names.
func problemFields(t *testing.T, p map[string]any) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	errs, _ := p["errors"].([]any)
	for _, e := range errs {
		m, _ := e.(map[string]any)
		f, _ := m["field"].(string)
		msg, _ := m["message"].(string)
		if f == "" || msg == "" {
			t.Fatalf("malformed field error %v", e)
		}
		out[f] = true
	}
	return out
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_MAX_EVENT_BYTES": "1024"})
	sub := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com/h","event_types":["a.>"]}`)
	expect(t, sub, http.StatusCreated)
	subID := sub.json(t)["id"].(string)

	long := "https://example.com/" + strings.Repeat("a", 2048)
	tests := []struct {
		name, method, path, body string
		contentType              string // default application/json
		status                   int
		field                    string // for 422: a field the problem must name
		detail                   string // a substring of detail
	}{
		{name: "malformed json", method: "POST", path: "/v1/events", body: `{"tenant":"acme",`, status: 400, detail: "malformed JSON"},
		{name: "not json", method: "POST", path: "/v1/events", body: `tenant=acme`, status: 400, detail: "malformed JSON"},
		{name: "empty body", method: "POST", path: "/v1/events", body: ``, status: 400, detail: "empty"},
		{name: "array body", method: "POST", path: "/v1/events", body: `[1]`, status: 400, detail: "JSON object"},
		{name: "trailing data", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":1} {}`, status: 400, detail: "single JSON object"},
		{name: "unknown field", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":1,"priority":9}`, status: 400, detail: `"priority"`},
		{name: "wrong type", method: "POST", path: "/v1/events", body: `{"tenant":7,"type":"a","data":1}`, status: 400, detail: `"tenant" must be a string`},
		{name: "missing tenant", method: "POST", path: "/v1/events", body: `{"type":"a","data":1}`, status: 422, field: "tenant"},
		{name: "missing type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","data":1}`, status: 422, field: "type"},
		{name: "missing data", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a"}`, status: 422, field: "data"},
		{name: "null data", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":null}`, status: 422, field: "data"},
		{name: "bad tenant", method: "POST", path: "/v1/events", body: `{"tenant":"Acme Corp","type":"a","data":1}`, status: 422, field: "tenant"},
		{name: "tenant with dot", method: "POST", path: "/v1/events", body: `{"tenant":"a.b","type":"a","data":1}`, status: 422, field: "tenant"},
		{name: "wildcard type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"order.*","data":1}`, status: 422, field: "type"},
		{name: "empty token type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"order.","data":1}`, status: 422, field: "type"},
		{name: "reserved type", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"hookline.subscription.disabled","data":{}}`, status: 422, field: "type", detail: "Hookline's own"},
		{name: "bad id", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":1,"id":"a b"}`, status: 422, field: "id"},
		{name: "long id", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":1,"id":"` + strings.Repeat("x", 129) + `"}`, status: 422, field: "id"},
		{name: "bad occurred_at", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":1,"occurred_at":"yesterday"}`, status: 422, field: "occurred_at"},
		{name: "oversize", method: "POST", path: "/v1/events", body: `{"tenant":"acme","type":"a","data":"` + strings.Repeat("x", 1100) + `"}`, status: 413},
		{name: "wrong content type", method: "POST", path: "/v1/events", body: `{}`, contentType: "text/plain", status: 415},
		{name: "wrong method on events", method: "PUT", path: "/v1/events", status: 405},
		{name: "wrong method on sub", method: "PUT", path: "/v1/subscriptions/" + subID, body: `{}`, status: 405},
		{name: "unknown route", method: "GET", path: "/v1/nothing", status: 404},
		{name: "unknown root route", method: "GET", path: "/nothing", status: 404},
		{name: "sub missing url", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","event_types":["a"]}`, status: 422, field: "url"},
		{name: "sub ftp url", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"ftp://example.com/x","event_types":["a"]}`, status: 422, field: "url", detail: "http"},
		{name: "sub relative url", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"/hook","event_types":["a"]}`, status: 422, field: "url"},
		{name: "sub no host", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https:///hook","event_types":["a"]}`, status: 422, field: "url", detail: "host"},
		{name: "sub opaque", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https:example.com","event_types":["a"]}`, status: 422, field: "url"},
		{name: "sub userinfo", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://user:pw@example.com/","event_types":["a"]}`, status: 422, field: "url", detail: "credentials"},
		{name: "sub bad port", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com:70000/","event_types":["a"]}`, status: 422, field: "url"},
		{name: "sub url too long", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"` + long + `","event_types":["a"]}`, status: 422, field: "url", detail: "2048"},
		{name: "sub no event types", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":[]}`, status: 422, field: "event_types"},
		{name: "sub bad filter", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["ok","a.>.b"]}`, status: 422, field: "event_types[1]"},
		{name: "sub negative rate", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"rate_limit_per_second":-1}`, status: 422, field: "rate_limit_per_second"},
		{name: "sub tiny rate (overflowed a schedule)", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"rate_limit_per_second":1e-300}`, status: 422, field: "rate_limit_per_second"},
		{name: "sub rate over the operator's maximum", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"rate_limit_per_second":1e9}`, status: 422, field: "rate_limit_per_second"},
		{name: "sub max_in_flight over the operator's maximum", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"max_in_flight":4294967295}`, status: 422, field: "max_in_flight"},
		{name: "sub huge burst", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"rate_limit_burst":4294967295}`, status: 422, field: "rate_limit_burst"},
		{name: "patch max_in_flight over the operator's maximum", method: "PATCH", path: "/v1/subscriptions/" + subID, body: `{"max_in_flight":257}`, status: 422, field: "max_in_flight"},
		{name: "sub negative max_in_flight", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"max_in_flight":-1}`, status: 400, detail: "max_in_flight"},
		{name: "sub keys field", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"keys":[]}`, status: 400, detail: "keys"},
		{name: "sub unknown scheme", method: "POST", path: "/v1/subscriptions", body: `{"tenant":"acme","url":"https://example.com","event_types":["a"],"signature_scheme":"v9"}`, status: 422, field: "signature_scheme"},
		{name: "list without tenant", method: "GET", path: "/v1/subscriptions", status: 400, detail: "tenant"},
		{name: "list bad tenant", method: "GET", path: "/v1/subscriptions?tenant=A*", status: 422, field: "tenant"},
		{name: "unknown sub", method: "GET", path: "/v1/subscriptions/sub_nope", status: 404},
		{name: "unknown sub odd id", method: "GET", path: "/v1/subscriptions/a.b", status: 404},
		{name: "other tenant's sub", method: "GET", path: "/v1/subscriptions/" + subID + "?tenant=beta", status: 404},
		{name: "patch unknown sub", method: "PATCH", path: "/v1/subscriptions/sub_nope", body: `{"description":"x"}`, status: 404},
		{name: "delete unknown sub", method: "DELETE", path: "/v1/subscriptions/sub_nope", status: 404},
		{name: "rotate unknown sub", method: "POST", path: "/v1/subscriptions/sub_nope/rotate-secret", status: 404},
		{name: "test unknown sub", method: "POST", path: "/v1/subscriptions/sub_nope/test", status: 404},
		{name: "patch empty event types", method: "PATCH", path: "/v1/subscriptions/" + subID, body: `{"event_types":[]}`, status: 422, field: "event_types"},
		{name: "patch bad url", method: "PATCH", path: "/v1/subscriptions/" + subID, body: `{"url":"ftp://x"}`, status: 422, field: "url"},
		{name: "patch unknown field", method: "PATCH", path: "/v1/subscriptions/" + subID, body: `{"tenant":"other"}`, status: 400, detail: "tenant"},
		{name: "patch wrong type", method: "PATCH", path: "/v1/subscriptions/" + subID, body: `{"disabled":"yes"}`, status: 400, detail: "disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.doContentType(tt.method, tt.path, tt.body, cmp.Or(tt.contentType, "application/json"))
			expect(t, r, tt.status)
			if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json", ct)
			}
			p := r.json(t)
			if p["status"] != float64(tt.status) || p["title"] != http.StatusText(tt.status) || p["type"] == "" {
				t.Fatalf("not a complete problem: %s", r.Body)
			}
			if tt.field != "" && !problemFields(t, p)[tt.field] {
				t.Fatalf("problem does not name field %q: %s", tt.field, r.Body)
			}
			if d, _ := p["detail"].(string); !strings.Contains(d, tt.detail) {
				t.Fatalf("detail %q does not mention %q", d, tt.detail)
			}
		})
	}
	// Nothing of the above reached the stream.
	if n := e.msgs("EVENTS"); n != 0 {
		t.Fatalf("bad requests published %d events", n)
	}
	r := e.do("DELETE", "/v1/events", nil)
	if allow := r.Header.Get("Allow"); allow != "GET, HEAD, POST" {
		t.Fatalf("Allow %q, want GET, HEAD, POST", allow)
	}
	r = e.do("POST", "/v1/events/evt_1", "{}")
	if allow := r.Header.Get("Allow"); r.Status != 405 || allow != "GET, HEAD" {
		t.Fatalf("POST /v1/events/{id}: %d, Allow %q", r.Status, allow)
	}
	r = e.do("PUT", "/v1/subscriptions/"+subID, "{}")
	if allow := r.Header.Get("Allow"); allow != "DELETE, GET, HEAD, PATCH" {
		t.Fatalf("Allow %q", allow)
	}
}
