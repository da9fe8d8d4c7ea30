package service_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"sync/atomic"
	"testing"

	"github.com/hookline/hookline/pkg/signing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// subscribeAs is subscribe for another tenant than acme.
func (e *env) subscribeAs(t *testing.T, tn, url string, types ...string) *hooklinev1.Subscription {
	t.Helper()
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := timestamppb.Now()
	sub := &hooklinev1.Subscription{
		Id: fmt.Sprintf("sub_%s_%d", tn, e.seq.Add(1)), Tenant: tn, Url: url, EventTypes: types,
		Keys: []*hooklinev1.SigningKey{{Secret: secret, CreatedAt: now}}, CreatedAt: now, UpdatedAt: now,
	}
	ctx := context.Background()
	rev, err := e.store.Create(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, tn, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	e.seen(t, rev)
	return sub
}

// opEvents are the envelopes a receiver got, by type, with their data.
func opEvents(t *testing.T, r *receiver) map[string][]map[string]any {
	t.Helper()
	out := map[string][]map[string]any{}
	for _, q := range r.requests() {
		// These subscriptions are created without a payload_format: the
		// body is the event's data, the type a header.
		var data map[string]any
		if err := json.Unmarshal(q.body, &data); err != nil {
			t.Fatalf("operational event body %s: %v", q.body, err)
		}
		typ := q.header.Get("Hookline-Event-Type")
		out[typ] = append(out[typ], data)
	}
	return out
}

// TestFailingThenRecoveredOncePerTransition: a subscription whose endpoint
// fails until its circuit opens makes its tenant's hookline.> subscription
// receive hookline.subscription.failing once (not again when probes fail),
// then hookline.subscription.recovered once when the endpoint answers
// again; dead letters of the streak are reported as one
// hookline.delivery.dead_lettered. Another tenant's hookline.>
// subscription receives nothing.
func TestFailingThenRecoveredOncePerTransition(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		// The default cool-down (30s) would hold the test half a minute
		// per probe: the transitions are what is tested, not their pace.
		"HOOKLINE_BREAKER_COOLDOWN":     "200ms",
		"HOOKLINE_BREAKER_MAX_COOLDOWN": "400ms",
	})
	endpoint, failing := failingEndpoint(t)
	ops := newReceiver(t, always(http.StatusOK))
	others := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, endpoint.URL(), "order.*")
	e.subscribe(t, ops.URL(), "hookline.>")
	e.subscribeAs(t, "globex", others.URL(), "hookline.>")

	for i := range 8 {
		e.publish(t, "order.created", fmt.Sprintf("evt_op_%d", i), `{"n":1}`)
	}
	got := failThenRecover(t, e, endpoint, failing, ops, "subscription")
	if n := len(got["hookline.subscription.failing"]); n != 1 {
		t.Fatalf("%d failing events, want 1 per failure streak", n)
	}
	if n := len(got["hookline.subscription.recovered"]); n != 1 {
		t.Fatalf("%d recovered events, want 1", n)
	}
	f := got["hookline.subscription.failing"][0]
	if f["subscription_id"] != sub.GetId() || f["last_status"] != float64(500) || f["url_host"] != endpoint.srv.Listener.Addr().String() {
		t.Fatalf("failing event data %v", f)
	}
	if n := len(got["hookline.delivery.dead_lettered"]); n > 1 {
		t.Fatalf("%d dead_lettered events in one window, want at most 1", n)
	}
	if len(e.deadLetters(t)) > 0 && len(got["hookline.delivery.dead_lettered"]) != 1 {
		t.Fatalf("%d dead letters, %d dead_lettered events: want one report", len(e.deadLetters(t)), len(got["hookline.delivery.dead_lettered"]))
	}
	for _, evs := range got {
		for _, d := range evs {
			for k, v := range d {
				if s, ok := v.(string); ok && (s == "s3cret-query" || k == "url") {
					t.Fatalf("operational event holds %s=%v", k, v)
				}
			}
		}
	}
	if n := others.count(); n != 0 {
		t.Fatalf("another tenant's subscription received %d operational events about acme", n)
	}
}

// TestWarnedBeforeAutoDisable: a subscription that fails every attempt is
// warned at half and at nine tenths of the auto-disable window, each once,
// then disabled.
func TestWarnedBeforeAutoDisable(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		// A window of seconds instead of five days: the stages are what
		// is tested.
		"HOOKLINE_AUTO_DISABLE_AFTER": "3s",
		// The circuit stays closed, so that attempts fail all along the
		// window (an open circuit lets a probe through now and then and
		// could step over a share; circuit_open has its own test).
		"HOOKLINE_BREAKER_FAILURES":             "1000000",
		"HOOKLINE_DESTINATION_BREAKER_FAILURES": "0",
	})
	endpoint := newReceiver(t, always(http.StatusInternalServerError))
	ops := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, endpoint.URL(), "order.*")
	e.subscribe(t, ops.URL(), "hookline.>")
	n := 0
	eventually(t, await, "hookline.subscription.disabled", func() bool {
		// An event per poll keeps attempts failing through the window.
		n++
		e.publish(t, "order.created", fmt.Sprintf("evt_warn_%d", n), `{"n":1}`)
		return len(opEvents(t, ops)["hookline.subscription.disabled"]) > 0
	})
	eventually(t, await, "every task settled", func() bool { return e.idle(t) })

	var stages []string
	for _, f := range opEvents(t, ops)["hookline.subscription.failing"] {
		if f["subscription_id"] != sub.GetId() || f["auto_disable_at"] == nil {
			t.Fatalf("failing event %v", f)
		}
		stages = append(stages, fmt.Sprint(f["stage"], " ", f["auto_disable_share"]))
	}
	sort.Strings(stages)
	want := []string{"auto_disable_warning 0.5", "auto_disable_warning 0.9"}
	if !slices.Equal(stages, want) {
		t.Fatalf("failing events %v, want %v (each once)", stages, want)
	}
	if n := len(opEvents(t, ops)["hookline.subscription.disabled"]); n != 1 {
		t.Fatalf("%d disabled events, want 1", n)
	}
}

// TestDestinationCircuitEventsGoToTheTenantWhoseAttemptsTrippedIt: an
// endpoint host failing every attempt of acme's subscription opens the
// host's circuit (3 failures in a row); acme's hookline.> subscription
// receives hookline.destination.failing once (not again when probes fail)
// and hookline.destination.recovered once when the host answers again.
// globex, which also has a subscription to that host but no delivery to
// it (none refused), is told nothing: the host is named only to the
// tenants whose own attempt opened its circuit or whose deliveries it
// refused (the health package's TestEveryTenantRefusedByAnOpenDestinationIsToldOnce).
func TestDestinationCircuitEventsGoToTheTenantWhoseAttemptsTrippedIt(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{
		"HOOKLINE_DESTINATION_BREAKER_FAILURES": "3",
		// The subscription's own circuit stays closed: the host's is
		// what is tested.
		"HOOKLINE_BREAKER_FAILURES":     "1000000",
		"HOOKLINE_BREAKER_COOLDOWN":     "200ms",
		"HOOKLINE_BREAKER_MAX_COOLDOWN": "400ms",
		"HOOKLINE_RETRY_SCHEDULE":       "0s,1s,1s,1s,1s,1s,1s,1s",
	})
	endpoint, failing := failingEndpoint(t)
	ops := newReceiver(t, always(http.StatusOK))
	others := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, endpoint.URL(), "order.*")
	e.subscribe(t, ops.URL(), "hookline.>")
	e.subscribeAs(t, "globex", endpoint.URL(), "invoice.*")
	e.subscribeAs(t, "globex", others.URL(), "hookline.>")

	for i := range 4 {
		e.publish(t, "order.created", fmt.Sprintf("evt_dest_%d", i), `{"n":1}`)
	}
	got := failThenRecover(t, e, endpoint, failing, ops, "destination")
	if n := len(got["hookline.destination.failing"]); n != 1 {
		t.Fatalf("%d destination failing events, want 1 per failure streak", n)
	}
	if n := len(got["hookline.destination.recovered"]); n != 1 {
		t.Fatalf("%d destination recovered events, want 1", n)
	}
	host := endpoint.srv.Listener.Addr().String()
	f, r := got["hookline.destination.failing"][0], got["hookline.destination.recovered"][0]
	if f["subscription_id"] != sub.GetId() || f["url_host"] != host || f["last_status"] != float64(500) || f["retry_at"] == nil || f["opened_at"] == nil {
		t.Fatalf("destination failing event data %v", f)
	}
	if _, ok := f["failures"]; ok {
		t.Fatalf("destination failing event counts the host's failures (other tenants' too): %v", f)
	}
	if r["subscription_id"] != sub.GetId() || r["url_host"] != host || r["recovered_at"] == nil {
		t.Fatalf("destination recovered event data %v", r)
	}
	if n := others.count(); n != 0 {
		t.Fatalf("globex received %d operational events; its subscription to the host made no attempt", n)
	}
}

// failingEndpoint is a receiver that answers 500 while failing is set
// (set at first), 200 once it is cleared.
func failingEndpoint(t *testing.T) (*receiver, *atomic.Bool) {
	var failing atomic.Bool
	failing.Store(true)
	return newReceiver(t, func(int) int {
		if failing.Load() {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	}), &failing
}

// failThenRecover waits until ops received hookline.<kind>.failing and
// the endpoint failed two more probes (the circuit reopened, which must
// not send another event), lets the endpoint recover, waits for
// hookline.<kind>.recovered and every task settled, and returns what ops
// received by type.
func failThenRecover(t *testing.T, e *env, endpoint *receiver, failing *atomic.Bool, ops *receiver, kind string) map[string][]map[string]any {
	t.Helper()
	eventually(t, await, "hookline."+kind+".failing", func() bool {
		return len(opEvents(t, ops)["hookline."+kind+".failing"]) > 0
	})
	probes := endpoint.count()
	eventually(t, await, "two more failed probes", func() bool { return endpoint.count() >= probes+2 })
	failing.Store(false)
	eventually(t, await, "hookline."+kind+".recovered", func() bool {
		return len(opEvents(t, ops)["hookline."+kind+".recovered"]) > 0
	})
	eventually(t, await, "every task settled", func() bool { return e.idle(t) })
	return opEvents(t, ops)
}
