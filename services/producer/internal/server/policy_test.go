package server_test

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// fieldMessages maps the field of each error of a 422 to its message.
func fieldMessages(t *testing.T, r response) map[string]string {
	t.Helper()
	var p struct {
		Errors []struct {
			Field   string `json:"field"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.Body, &p); err != nil {
		t.Fatalf("%s: %v", r.Body, err)
	}
	out := map[string]string{}
	for _, e := range p.Errors {
		out[e.Field] = e.Message
	}
	return out
}

func newSub(extra map[string]any) map[string]any {
	m := map[string]any{"tenant": "acme", "url": "https://example.com/hook", "event_types": []string{"order.*"}}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

// Invalid delivery policies are refused with 422 and the reason, on a
// subscription (create and update) and in a tenant's defaults; the
// limits are those of this deployment (EVENTS' retention, the default
// AckWait of 60s).
func TestInvalidPoliciesAreRefusedWithReasons(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	tests := []struct {
		name   string
		body   map[string]any
		field  string
		reason string
	}{
		{"schedule not starting at 0s", map[string]any{"retry_schedule": []string{"1s", "5s"}}, "retry_schedule", "must start with 0s"},
		{"schedule with a non-duration", map[string]any{"retry_schedule": []string{"0s", "soon"}}, "retry_schedule", `entry 2 ("soon") is not a duration`},
		{"schedule with a negative delay", map[string]any{"retry_schedule": []string{"0s", "-5s"}}, "retry_schedule", "entry 2 (-5s) is negative"},
		{"schedule too long", map[string]any{"retry_schedule": make51()}, "retry_schedule", "must list 1 to 50 delays"},
		{"schedule past EVENTS' retention", map[string]any{"retry_schedule": []string{"0s", "100h", "100h"}}, "retry_schedule", "must stay below the event log's and the dead-letter stream's retention"},
		{"timeout below 1s", map[string]any{"attempt_timeout": "500ms"}, "attempt_timeout", "must be at least 1s"},
		{"timeout beyond AckWait", map[string]any{"attempt_timeout": "56s"}, "attempt_timeout", "must be at most 55s: the deliver consumer's AckWait (1m0s"},
		{"timeout not a duration", map[string]any{"attempt_timeout": "2"}, "attempt_timeout", "is not a duration"},
		{"auto-disable too short", map[string]any{"auto_disable_after": "30s"}, "auto_disable_after", "must be 0s (never) or between 1m0s and"},
		{"auto-disable beyond the health state", map[string]any{"auto_disable_after": "1000h"}, "auto_disable_after", "how long endpoint health keeps a failure streak"},
		{"metadata key with a space", map[string]any{"metadata": map[string]string{"my key": "v"}}, "metadata", "must be 1 to 64 printable ASCII characters"},
		{"uid with a space", map[string]any{"uid": "a b"}, "uid", "must be 1 to 255 printable ASCII characters"},
	}
	r := e.do("POST", "/v1/subscriptions", newSub(nil))
	expect(t, r, http.StatusCreated)
	id := r.json(t)["id"].(string)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check := func(what string, r response, prefix string) {
				t.Helper()
				if r.Status != http.StatusUnprocessableEntity {
					t.Fatalf("%s: status %d, want 422: %s", what, r.Status, r.Body)
				}
				got := fieldMessages(t, r)[prefix+tt.field]
				if !strings.Contains(got, tt.reason) {
					t.Fatalf("%s: %s: %q, want it to say %q (%s)", what, prefix+tt.field, got, tt.reason, r.Body)
				}
			}
			check("create", e.do("POST", "/v1/subscriptions", newSub(tt.body)), "")
			check("update", e.do("PATCH", "/v1/subscriptions/"+id, tt.body), "")
			if tt.field == "uid" || tt.field == "metadata" {
				return // not tenant defaults
			}
			check("tenant defaults", e.do("PUT", "/v1/tenants/acme", map[string]any{"defaults": tt.body}), "defaults.")
		})
	}
	// Nothing refused was stored.
	if st := e.stored(id); len(st.GetRetrySchedule()) != 0 || st.GetAttemptTimeout() != "" || st.GetUid() != "" {
		t.Fatalf("a refused policy was stored: %v", st)
	}
	r = e.do("GET", "/v1/tenants/acme", nil)
	expect(t, r, http.StatusOK)
	if d := r.json(t)["defaults"].(map[string]any); len(d["retry_schedule"].([]any)) != 0 || d["attempt_timeout"] != "" {
		t.Fatalf("refused tenant defaults were stored: %s", r.Body)
	}
}

func make51() []string {
	s := make([]string, 51)
	for i := range s {
		s[i] = "0s"
	}
	return s
}

// GET /v1/subscriptions/{id}/effective-policy says, for each value, the
// level it comes from: the subscription's own, the tenant's default, or
// the environment; and a change of the tenant's defaults shows at once.
func TestEffectivePolicySaysWhereEachValueComesFrom(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_RETRY_SCHEDULE": "0s,5s,5m"})
	r := e.do("GET", "/v1/tenants/acme", nil)
	expect(t, r, http.StatusOK)
	if got := r.json(t); got["tenant"] != "acme" || len(got["metadata"].(map[string]any)) != 0 {
		t.Fatalf("a tenant without a record: %s", r.Body)
	}
	r = e.do("PUT", "/v1/tenants/acme", map[string]any{
		"defaults": map[string]any{"retry_schedule": []string{"0s", "1m"}, "max_in_flight": 5, "payload_format": "raw"},
		"metadata": map[string]string{"plan": "gold"},
	})
	expect(t, r, http.StatusOK)
	if got := r.json(t); got["metadata"].(map[string]any)["plan"] != "gold" || got["created_at"] == nil {
		t.Fatalf("put tenant: %s", r.Body)
	}

	r = e.do("POST", "/v1/subscriptions", newSub(map[string]any{
		"attempt_timeout": "2s", "rate_limit_per_second": 3, "metadata": map[string]string{"owner": "team-a"}, "uid": "ext-1",
	}))
	expect(t, r, http.StatusCreated)
	created := r.json(t)
	id := created["id"].(string)
	if created["payload_format"] != "raw" || created["uid"] != "ext-1" || created["metadata"].(map[string]any)["owner"] != "team-a" {
		t.Fatalf("created: %s (want the tenant's payload format, the uid and the metadata)", r.Body)
	}

	want := map[string]any{
		"subscription_id":    id,
		"tenant":             "acme",
		"retry_schedule":     map[string]any{"value": []any{"0s", "1m0s"}, "source": "tenant"},
		"attempt_timeout":    map[string]any{"value": "2s", "source": "subscription"},
		"auto_disable_after": map[string]any{"value": "120h0m0s", "source": "environment"},
		"max_in_flight":      map[string]any{"value": float64(5), "source": "tenant"},
		"rate_limit":         map[string]any{"per_second": float64(3), "burst": float64(0), "source": "subscription"},
		"payload_format":     map[string]any{"value": "raw", "source": "subscription"},
	}
	r = e.do("GET", "/v1/subscriptions/"+id+"/effective-policy", nil)
	expect(t, r, http.StatusOK)
	if got := r.json(t); !reflect.DeepEqual(got, want) {
		t.Fatalf("effective policy\n got %s\nwant %v", r.Body, want)
	}

	// The tenant drops its schedule: the environment's applies.
	expect(t, e.do("PUT", "/v1/tenants/acme", map[string]any{"defaults": map[string]any{"max_in_flight": 5}}), http.StatusOK)
	r = e.do("GET", "/v1/subscriptions/"+id+"/effective-policy", nil)
	expect(t, r, http.StatusOK)
	if got := r.json(t)["retry_schedule"]; !reflect.DeepEqual(got, map[string]any{"value": []any{"0s", "5s", "5m0s"}, "source": "environment"}) {
		t.Fatalf("retry_schedule after the tenant dropped its own: %v", got)
	}
	// The subscription's own schedule wins over everything; [] returns it
	// to the default.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, map[string]any{"retry_schedule": []string{"0s", "100ms", "100ms"}}), http.StatusOK)
	r = e.do("GET", "/v1/subscriptions/"+id+"/effective-policy", nil)
	if got := r.json(t)["retry_schedule"]; !reflect.DeepEqual(got, map[string]any{"value": []any{"0s", "100ms", "100ms"}, "source": "subscription"}) {
		t.Fatalf("retry_schedule of its own: %v", got)
	}
	expect(t, e.do("PATCH", "/v1/subscriptions/"+id, map[string]any{"retry_schedule": []string{}}), http.StatusOK)
	r = e.do("GET", "/v1/subscriptions/"+id+"/effective-policy", nil)
	if got := r.json(t)["retry_schedule"].(map[string]any)["source"]; got != "environment" {
		t.Fatalf("retry_schedule after [] comes from %v", got)
	}
}

// A subscription's uid is unique within its tenant: a duplicate is a 409
// (create or update), another tenant may use it, and a deleted
// subscription's uid is free again.
func TestSubscriptionUIDIsUniquePerTenant(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := e.do("POST", "/v1/subscriptions", newSub(map[string]any{"uid": "shop/42"}))
	expect(t, r, http.StatusCreated)
	first := r.json(t)["id"].(string)

	r = e.do("POST", "/v1/subscriptions", newSub(map[string]any{"uid": "shop/42"}))
	expect(t, r, http.StatusConflict)
	if !strings.Contains(string(r.Body), first) {
		t.Fatalf("409 does not name the holder %s: %s", first, r.Body)
	}
	other := newSub(map[string]any{"uid": "shop/42"})
	other["tenant"] = "globex"
	expect(t, e.do("POST", "/v1/subscriptions", other), http.StatusCreated)

	r = e.do("POST", "/v1/subscriptions", newSub(map[string]any{"uid": "shop/43"}))
	expect(t, r, http.StatusCreated)
	second := r.json(t)["id"].(string)
	expect(t, e.do("PATCH", "/v1/subscriptions/"+second, map[string]any{"uid": "shop/42"}), http.StatusConflict)
	if e.stored(second).GetUid() != "shop/43" {
		t.Fatal("a refused uid change was stored")
	}
	// Its own uid again changes nothing; a new one frees the old.
	expect(t, e.do("PATCH", "/v1/subscriptions/"+second, map[string]any{"uid": "shop/43"}), http.StatusOK)
	expect(t, e.do("PATCH", "/v1/subscriptions/"+second, map[string]any{"uid": "shop/44"}), http.StatusOK)
	expect(t, e.do("POST", "/v1/subscriptions", newSub(map[string]any{"uid": "shop/43"})), http.StatusCreated)

	expect(t, e.do("DELETE", "/v1/subscriptions/"+first, nil), http.StatusNoContent)
	expect(t, e.do("POST", "/v1/subscriptions", newSub(map[string]any{"uid": "shop/42"})), http.StatusCreated)
}
