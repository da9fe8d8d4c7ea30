package service_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	tenantrec "github.com/hookline/hookline/pkg/tenant"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// A subscription with a delivery policy of its own (three attempts, a 2s
// timeout) is retried exactly on it, while another subscription of the
// same tenant, without one, follows the tenant's default (four attempts),
// and neither follows the environment's (five attempts, a 10s timeout).
func TestSubscriptionPolicyAndTenantDefault(t *testing.T) {
	t.Parallel()
	// The environment differs from both levels above it, so that an
	// attempt count or a timeout taken from it is told apart: five
	// attempts, and a timeout longer than the hanging endpoint's 4s.
	e := start(t, map[string]string{
		"HOOKLINE_RETRY_SCHEDULE":   "0s,1s,1s,1s,1s",
		"HOOKLINE_HTTP_TIMEOUT":     "10s",
		"HOOKLINE_ACK_WAIT":         "20s",
		"HOOKLINE_SHUTDOWN_TIMEOUT": "20s",
	})
	ctx := context.Background()
	tenants, err := tenantrec.NewStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	def := []string{"0s", "100ms", "100ms", "100ms"}
	if _, err := tenants.Update(ctx, tenant, func(r *hooklinev1.Tenant) error {
		r.Defaults = &hooklinev1.DeliveryPolicy{RetrySchedule: def}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, await, "the deliverer to see the tenant's defaults", func() bool {
		return e.svc.TenantHas(tenant, func(r *hooklinev1.Tenant) bool { return slices.Equal(r.GetDefaults().GetRetrySchedule(), def) })
	})

	// own answers after 4s unless the attempt's timeout cuts it short: a
	// 500 would mean the environment's 10s timeout was applied.
	var ownAttempts, tenantAttempts atomic.Int32
	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ownAttempts.Add(1)
		select {
		case <-r.Context().Done():
		case <-time.After(4 * time.Second):
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	t.Cleanup(own.Close)
	byDefault := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tenantAttempts.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	t.Cleanup(byDefault.Close)

	subOwn, _ := e.subscribe(t, own.URL, "order.created")
	e.update(t, subOwn.GetId(), func(s *hooklinev1.Subscription) {
		s.RetrySchedule = []string{"0s", "100ms", "100ms"}
		s.AttemptTimeout = "2s"
	})
	subDefault, _ := e.subscribe(t, byDefault.URL, "order.created")

	e.publish(t, "order.created", "evt_policy", `{"x":1}`)
	eventually(t, await, "both dead letters", func() bool { return len(e.deadLetters(t)) == 2 })

	got := map[string]*http.Header{}
	for _, dl := range e.deadLetters(t) {
		h := http.Header(dl.Header)
		got[h.Get(stream.HeaderSubscriptionID)] = &h
	}
	for _, c := range []struct {
		sub        *hooklinev1.Subscription
		attempts   int32
		counted    *atomic.Int32
		lastStatus string
	}{
		{subOwn, 3, &ownAttempts, "0"}, // cut by the 2s timeout: no answer
		{subDefault, 4, &tenantAttempts, "500"},
	} {
		h := got[c.sub.GetId()]
		if h == nil {
			t.Fatalf("no dead letter of %s", c.sub.GetId())
		}
		if n := c.counted.Load(); n != c.attempts {
			t.Errorf("%s: endpoint got %d attempts, want %d", c.sub.GetId(), n, c.attempts)
		}
		if v := h.Get(stream.HeaderAttempt); v != strconv.Itoa(int(c.attempts)) {
			t.Errorf("%s: dead letter says %s attempts, want %d", c.sub.GetId(), v, c.attempts)
		}
		if v := h.Get(stream.HeaderReason); v != wire.DeadLetterAttemptsExhausted {
			t.Errorf("%s: reason %q", c.sub.GetId(), v)
		}
		if v := h.Get(stream.HeaderLastStatus); v != c.lastStatus {
			t.Errorf("%s: last status %q, want %q (last error %q)", c.sub.GetId(), v, c.lastStatus, h.Get(stream.HeaderLastError))
		}
	}
	// Every attempt of the subscription with its own timeout was cut at 2s.
	for _, r := range e.attemptRecords(t) {
		var a hooklinev1.Attempt
		if err := protojson.Unmarshal(r.data, &a); err != nil {
			t.Fatal(err)
		}
		if a.GetSubscriptionId() == subOwn.GetId() && a.GetErrorClass() != "timeout" {
			t.Errorf("attempt %d of %s: error class %q, want timeout", a.GetAttempt(), subOwn.GetId(), a.GetErrorClass())
		}
	}
}

// A tenant's default max_in_flight is enforced for its subscriptions that
// set none: with a default of 1, an endpoint that holds each request for
// a moment never sees two at once, though the deliverer has 16 workers
// and the adaptive default would allow several.
func TestTenantDefaultMaxInFlightIsEnforced(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	ctx := context.Background()
	tenants, err := tenantrec.NewStore(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tenants.Update(ctx, tenant, func(r *hooklinev1.Tenant) error {
		r.Defaults = &hooklinev1.DeliveryPolicy{MaxInFlight: 1}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, await, "the deliverer to see the tenant's defaults", func() bool {
		return e.svc.TenantHas(tenant, func(r *hooklinev1.Tenant) bool { return r.GetDefaults().GetMaxInFlight() == 1 })
	})
	var now, peak, served atomic.Int32
	release, stop := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		select { // held until the test lets requests go, one at a time
		case <-release:
		case <-stop:
		case <-r.Context().Done():
		}
		now.Add(-1)
		served.Add(1)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) }) // runs first: a failed test never hangs in srv.Close
	e.subscribe(t, srv.URL+"/hook", "order.created")
	const events = 6
	for i := range events {
		e.publish(t, "order.created", "evt_cap_"+strconv.Itoa(i), `{}`)
	}
	for i := range events {
		// One request is in the endpoint's hands; had the cap not held,
		// several would be by now (16 workers, all tasks available).
		eventually(t, await, "a request held by the endpoint", func() bool { return now.Load() == 1 })
		release <- struct{}{}
		eventually(t, await, "the request answered", func() bool { return served.Load() == int32(i+1) })
	}
	if p := peak.Load(); p != 1 {
		t.Fatalf("the endpoint saw %d requests at once; the tenant's default max_in_flight is 1", p)
	}
}
