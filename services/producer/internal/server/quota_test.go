package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/services/producer/internal/api"
	"github.com/hookline/hookline/services/producer/internal/config"
)

// quotaEnv: one event per 100 s per tenant (nothing refills during the
// test), a burst of 3, batches of at most 3.
func quotaEnv(t *testing.T) *env {
	return start(t, map[string]string{
		"HOOKLINE_TENANT_EVENTS_PER_SECOND": "0.01",
		"HOOKLINE_TENANT_EVENTS_BURST":      "3",
		"HOOKLINE_MAX_BATCH":                "3",
	})
}

func single(tenant, id string) string {
	return fmt.Sprintf(`{"tenant":%q,"type":"order.created","id":%q,"data":{}}`, tenant, id)
}

func batch(evs ...string) string { return `{"events":[` + strings.Join(evs, ",") + `]}` }

// A tenant over its events/s quota gets a 429 with Retry-After and the ids
// to retry with, and nothing of its request is stored; other tenants keep
// their own quotas; a batch is taken all or nothing, across its tenants.
func TestTenantEventsQuota(t *testing.T) {
	t.Parallel()
	e := quotaEnv(t)
	expect(t, e.do("POST", "/v1/events", single("acme", "evt_a1")), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events", single("acme", "evt_a2")), http.StatusAccepted)
	stored := e.msgs("EVENTS")

	r := e.do("POST", "/v1/events/batch", batch(single("acme", "evt_a3"), single("acme", "evt_a4")))
	expect(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") != "100" {
		t.Fatalf("Retry-After %q, want 100 (one event's interval: the batch needs one more unit than is left)", r.Header.Get("Retry-After"))
	}
	p := r.json(t)
	if p["type"] != api.TypeRateLimited || fmt.Sprint(p["ids"]) != "[evt_a3 evt_a4]" {
		t.Fatalf("problem %v", p)
	}
	if n := e.msgs("EVENTS"); n != stored {
		t.Fatalf("a refused batch stored %d events", n-stored)
	}
	// The refused batch took nothing: one unit is still there.
	expect(t, e.do("POST", "/v1/events", single("acme", "evt_a3")), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events", single("acme", "evt_a4")), http.StatusTooManyRequests)

	// Another tenant is not touched by acme's quota.
	expect(t, e.do("POST", "/v1/events/batch", batch(single("globex", "evt_g1"), single("globex", "evt_g2"))), http.StatusAccepted)
	// A batch across tenants is refused whole when one of them is full,
	// and takes nothing from the others.
	stored = e.msgs("EVENTS")
	expect(t, e.do("POST", "/v1/events/batch", batch(single("initech", "evt_i1"), single("acme", "evt_a5"))), http.StatusTooManyRequests)
	if n := e.msgs("EVENTS"); n != stored {
		t.Fatalf("a refused mixed batch stored %d events", n-stored)
	}
	expect(t, e.do("POST", "/v1/events/batch", batch(single("initech", "evt_i1"), single("initech", "evt_i2"), single("initech", "evt_i3"))), http.StatusAccepted)

	m := string(e.do("GET", "/metrics", nil).Body)
	for _, want := range []string{"hookline_tenant_quota_refused_total 3", "hookline_tenant_quota_degraded_total 0"} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// An Idempotency-Key replay publishes nothing, so it takes nothing from the
// quota and is answered even when the tenant is full.
func TestQuotaSparesIdempotentReplays(t *testing.T) {
	t.Parallel()
	e := quotaEnv(t)
	body := single("acme", "evt_k1")
	expect(t, doKey(t, e.base, "", "key-1", "POST", "/v1/events", body), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events/batch", batch(single("acme", "evt_k2"), single("acme", "evt_k3"))), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events", single("acme", "evt_k4")), http.StatusTooManyRequests)
	r := doKey(t, e.base, "", "key-1", "POST", "/v1/events", body)
	expect(t, r, http.StatusAccepted)
	if r.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("not a replay: %v", r.Header)
	}
}

// With Redis down the quota cannot be checked: events are accepted (a
// cache outage must not become a publishing outage) and counted.
func TestQuotaWithRedisDownLetsEventsThrough(t *testing.T) {
	t.Parallel()
	e := quotaEnv(t)
	e.redis.Stop()
	for i := range 4 {
		expect(t, e.do("POST", "/v1/events", single("acme", fmt.Sprintf("evt_d%d", i))), http.StatusAccepted)
	}
	if m := string(e.do("GET", "/metrics", nil).Body); !strings.Contains(m, "hookline_tenant_quota_degraded_total 4") {
		t.Fatal("the 4 unchecked requests were not counted")
	}
	// Back (empty): the quota is checked again once the client reconnects.
	e.redis.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		before := degraded(t, e)
		expect(t, e.do("POST", "/v1/events", single("acme", fmt.Sprintf("evt_back%d", i))), http.StatusAccepted)
		if degraded(t, e) == before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the quota was not checked again after Redis came back")
		}
		time.Sleep(100 * time.Millisecond) // the client redials once a second
	}
}

func TestQuotaConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HOOKLINE_TENANT_EVENTS_PER_SECOND": "1e-300"}, "HOOKLINE_TENANT_EVENTS_PER_SECOND must be 0 (off) or between"},
		{map[string]string{"HOOKLINE_TENANT_EVENTS_PER_SECOND": "-1"}, "HOOKLINE_TENANT_EVENTS_PER_SECOND must be 0 (off) or between"},
		{map[string]string{"HOOKLINE_TENANT_EVENTS_PER_SECOND": "10", "HOOKLINE_TENANT_EVENTS_BURST": "100"}, "HOOKLINE_TENANT_EVENTS_BURST must be between HOOKLINE_MAX_BATCH (500)"},
	} {
		_, err := config.Load(tc.env)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v; want %q", tc.env, err, tc.want)
		}
	}
	c, err := config.Load(map[string]string{"HOOKLINE_TENANT_EVENTS_PER_SECOND": "2000"})
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Quota(); q.Burst != 2000 {
		t.Fatalf("default burst %d, want one second's worth (2000)", q.Burst)
	}
	c, err = config.Load(map[string]string{"HOOKLINE_TENANT_EVENTS_PER_SECOND": "5"})
	if err != nil {
		t.Fatal(err)
	}
	if q := c.Quota(); q.Burst != 500 {
		t.Fatalf("default burst %d, want HOOKLINE_MAX_BATCH (500)", q.Burst)
	}
}

// degraded is hookline_tenant_quota_degraded_total's sample.
func degraded(t *testing.T, e *env) string {
	t.Helper()
	for _, l := range strings.Split(string(e.do("GET", "/metrics", nil).Body), "\n") {
		if v, ok := strings.CutPrefix(l, "hookline_tenant_quota_degraded_total "); ok {
			return v
		}
	}
	t.Fatal("no hookline_tenant_quota_degraded_total")
	return ""
}
