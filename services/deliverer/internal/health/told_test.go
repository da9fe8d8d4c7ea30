package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/opevents"
	"github.com/prometheus/client_golang/prometheus"
)

// toldReplica is a deliverer replica of e's world that tells tenants
// through n (its own publisher on e's NATS when nil), as a deliverer does.
func toldReplica(e *testEnv, cfg health.Config, n health.Notifier) *health.Health {
	if n == nil {
		n = opevents.New(e.js)
	}
	return health.New(cfg, health.Limits{AttemptTimeout: 5 * time.Second, MaxPause: 10 * time.Minute, Workers: 64}, health.Deps{
		Redis: e.rdb, Notifier: n, Registerer: prometheus.NewRegistry(), Now: e.clk.Now, StateClock: e.clk.Now,
	})
}

// destEvent is a hookline.destination.* event as stored in EVENTS.
type destEvent struct {
	tenant, typ string
	data        map[string]any
}

// destEvents reads every hookline.destination.* event stored in EVENTS,
// checking that none holds the URL's path, userinfo or query.
func destEvents(t *testing.T, e *testEnv) []destEvent {
	t.Helper()
	var out []destEvent
	for _, m := range natstest.Messages(t, e.js, stream.Events) {
		tn, typ, ok := strings.Cut(strings.TrimPrefix(m.Subject, "events."), ".")
		if !ok || !strings.HasPrefix(typ, "hookline.destination.") {
			continue
		}
		if s := string(m.Data); strings.Contains(s, "s3cret") || strings.Contains(s, "pw@") || strings.Contains(s, "/hook") {
			t.Fatalf("%s event holds the URL's secrets or path: %s", typ, s)
		}
		var d map[string]any
		if err := json.Unmarshal(m.Data, &d); err != nil {
			t.Fatalf("%s body %s: %v", typ, m.Data, err)
		}
		out = append(out, destEvent{tenant: tn, typ: typ, data: d})
	}
	return out
}

// of are the events of one tenant and type.
func of(evs []destEvent, tenant, typ string) []map[string]any {
	var out []map[string]any
	for _, ev := range evs {
		if ev.tenant == tenant && ev.typ == typ {
			out = append(out, ev.data)
		}
	}
	return out
}

// mustRefuseOpen admits sub on h and wants a destination_open refusal.
func mustRefuseOpen(t *testing.T, h *health.Health, sub *hooklinev1.Subscription) {
	t.Helper()
	if slot, ref := admitOn(t, h, sub); slot != nil || ref.Reason != deliver.RefusedDestinationOpen {
		t.Fatalf("%s to the open host: slot %v, refusal %+v; want %s", sub.GetId(), slot != nil, ref, deliver.RefusedDestinationOpen)
	}
}

const (
	failingType   = "hookline.destination.failing"
	recoveredType = "hookline.destination.recovered"
)

// Tenant acme's attempts open the circuit of a host shared with tenant
// globex. globex's deliveries to the host are then refused
// (destination_open) on two replicas, many times, while the circuit is
// open and while its probe is in flight: globex is told once, naming its
// own subscription — never acme's — and the opening's host-level answer.
// When the circuit closes, acme and globex are each told once that it
// recovered. initech, whose subscription to the host is never refused
// (it even carries the probe that closes the circuit), is told nothing.
// A new spell of the circuit tells globex again.
func TestEveryTenantRefusedByAnOpenDestinationIsToldOnce(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	e := newEnv(t, cfg)
	a, b := toldReplica(e, cfg, nil), toldReplica(e, cfg, nil)
	replicas := []*health.Health{a, b}
	sub := func(tenant string, n int) *hooklinev1.Subscription {
		return subOf(e, t, tenant, fmt.Sprintf("https://user:pw@Shared.example./hook/%s/%d?token=s3cret", tenant, n), n)
	}
	acme := []*hooklinev1.Subscription{sub("acme", 0), sub("acme", 1), sub("acme", 2)}
	globex := []*hooklinev1.Subscription{sub("globex", 0), sub("globex", 1)}
	initech := sub("initech", 0)
	initechElsewhere := subOf(e, t, "initech", "https://elsewhere.example/hook", 1)

	// acme opens the host's circuit: three failures in a row, the third
	// (acme's subscription 2, on replica a) opens it.
	attemptOn(t, a, acme[0], refused)
	attemptOn(t, b, acme[1], fail500)
	attemptOn(t, a, acme[2], fail500)
	// globex's tasks are refused on both replicas, again and again; so
	// are acme's own.
	for i := range 6 {
		mustRefuseOpen(t, replicas[i%2], globex[i%2])
		mustRefuseOpen(t, replicas[(i+1)%2], globex[i%2])
		mustRefuseOpen(t, replicas[i%2], acme[i%3])
	}
	attemptOn(t, a, initechElsewhere, ok200)

	evs := destEvents(t, e)
	acmeFailing, globexFailing := of(evs, "acme", failingType), of(evs, "globex", failingType)
	if len(acmeFailing) != 1 || len(globexFailing) != 1 {
		t.Fatalf("failing events: acme %d, globex %d; want one each (events %v)", len(acmeFailing), len(globexFailing), evs)
	}
	if len(evs) != 2 {
		t.Fatalf("%d destination events while the circuit is open, want 2 (events %v)", len(evs), evs)
	}
	af, gf := acmeFailing[0], globexFailing[0]
	if af["subscription_id"] != acme[2].GetId() {
		t.Fatalf("acme's failing event names %v; want %s, whose attempt opened the circuit", af["subscription_id"], acme[2].GetId())
	}
	if gf["subscription_id"] != globex[0].GetId() {
		t.Fatalf("globex's failing event names %v; want its own %s, refused first", gf["subscription_id"], globex[0].GetId())
	}
	for _, f := range []map[string]any{af, gf} {
		if f["url_host"] != "Shared.example." || f["last_status"] != float64(500) || f["last_error_class"] != "http_status" ||
			f["opened_at"] != af["opened_at"] || f["retry_at"] == nil {
			t.Fatalf("failing event %v; want the host, the opening's status and class, opened_at %v and a retry_at", f, af["opened_at"])
		}
		if _, ok := f["failures"]; ok {
			t.Fatalf("failing event counts the host's failures: %v", f)
		}
	}

	// The cool-down ends: initech's task carries the probe; globex's are
	// refused while it is in flight (told already: nothing new); the
	// probe's answer closes the circuit.
	e.clk.Advance(31 * time.Second)
	probe, ref := admitOn(t, b, initech)
	if probe == nil {
		t.Fatalf("no probe after the cool-down: %+v", ref)
	}
	mustRefuseOpen(t, a, globex[1])
	mustRefuseOpen(t, b, globex[0])
	probe.Release(ok200)
	b.Flush()
	for _, h := range replicas {
		attemptOn(t, h, globex[1], ok200)
		attemptOn(t, h, acme[0], ok200)
	}

	evs = destEvents(t, e)
	acmeRec, globexRec := of(evs, "acme", recoveredType), of(evs, "globex", recoveredType)
	if len(acmeRec) != 1 || len(globexRec) != 1 {
		t.Fatalf("recovered events: acme %d, globex %d; want one each (events %v)", len(acmeRec), len(globexRec), evs)
	}
	if acmeRec[0]["subscription_id"] != acme[2].GetId() || globexRec[0]["subscription_id"] != globex[0].GetId() {
		t.Fatalf("recovered events name %v (acme) and %v (globex); want the subscriptions they were told failing about, %s and %s",
			acmeRec[0]["subscription_id"], globexRec[0]["subscription_id"], acme[2].GetId(), globex[0].GetId())
	}
	for _, r := range []map[string]any{acmeRec[0], globexRec[0]} {
		if r["url_host"] != "Shared.example." || r["recovered_at"] == nil {
			t.Fatalf("recovered event %v", r)
		}
	}
	for _, ev := range evs {
		if ev.tenant == "initech" {
			t.Fatalf("initech, never refused, was told %s: %v", ev.typ, ev.data)
		}
	}
	if len(evs) != 4 {
		t.Fatalf("%d destination events after the circuit closed, want 4 (events %v)", len(evs), evs)
	}

	// A new spell: acme opens it again; globex is refused and told again.
	e.clk.Advance(time.Minute)
	for i := range 3 {
		attemptOn(t, replicas[i%2], acme[i], refused)
	}
	mustRefuseOpen(t, b, globex[1])
	mustRefuseOpen(t, a, globex[0])
	evs = destEvents(t, e)
	globexFailing = of(evs, "globex", failingType)
	if len(globexFailing) != 2 || len(of(evs, "acme", failingType)) != 2 {
		t.Fatalf("failing events after a second spell: globex %d, acme %d; want two each (events %v)",
			len(globexFailing), len(of(evs, "acme", failingType)), evs)
	}
	if g := globexFailing[1]; g["subscription_id"] != globex[1].GetId() || g["opened_at"] == gf["opened_at"] || g["last_error_class"] != "connection_refused" {
		t.Fatalf("globex's second failing event %v; want its subscription %s, the new opening's time and class", g, globex[1].GetId())
	}
}

// flakyNotifier is a replica's publisher whose destination failing
// publishes fail, as NATS may: globex's first, and every one of
// umbrella's.
type flakyNotifier struct {
	*opevents.Publisher
	globexFailed atomic.Bool
}

func (n *flakyNotifier) DestinationFailing(ctx context.Context, sub *hooklinev1.Subscription, f opevents.DestinationFailing) error {
	if sub.GetTenant() == "umbrella" || (sub.GetTenant() == "globex" && n.globexFailed.CompareAndSwap(false, true)) {
		return errors.New("nats: publish failed")
	}
	return n.Publisher.DestinationFailing(ctx, sub, f)
}

// A failing event that could not be published is not remembered as told:
// the tenant's next refusal tells it, on whichever replica. A tenant whose
// failing event was never published is not told the circuit recovered.
func TestATenantIsToldOnlyWhatWasPublished(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	e := newEnv(t, cfg)
	flaky := &flakyNotifier{Publisher: opevents.New(e.js)}
	a, b := toldReplica(e, cfg, flaky), toldReplica(e, cfg, nil)
	opener := subOf(e, t, "acme", "https://shared.example/hook/a", 0)
	globex := subOf(e, t, "globex", "https://shared.example/hook/g", 0)
	umbrella := subOf(e, t, "umbrella", "https://shared.example/hook/u", 0)
	for range 3 {
		attemptOn(t, b, opener, refused)
	}
	mustRefuseOpen(t, a, globex)   // the publish fails
	mustRefuseOpen(t, a, umbrella) // the publish fails, and umbrella is not refused again
	if n := len(of(destEvents(t, e), "globex", failingType)); n != 0 {
		t.Fatalf("%d failing events for globex after a failed publish", n)
	}
	mustRefuseOpen(t, b, globex) // told now
	mustRefuseOpen(t, a, globex)
	if n := len(of(destEvents(t, e), "globex", failingType)); n != 1 {
		t.Fatalf("%d failing events for globex; want 1, at the refusal after the failed publish", n)
	}

	e.clk.Advance(31 * time.Second)
	attemptOn(t, a, opener, ok200)
	evs := destEvents(t, e)
	if len(of(evs, "acme", recoveredType)) != 1 || len(of(evs, "globex", recoveredType)) != 1 {
		t.Fatalf("recovered: acme %d, globex %d; want one each (events %v)",
			len(of(evs, "acme", recoveredType)), len(of(evs, "globex", recoveredType)), evs)
	}
	for _, ev := range evs {
		if ev.tenant == "umbrella" {
			t.Fatalf("umbrella, never told the host failing, was told %s: %v", ev.typ, ev.data)
		}
	}
}
