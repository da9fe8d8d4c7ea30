package health_test

import (
	"context"
	"fmt"
	"testing"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/prometheus/client_golang/prometheus"
)

// withLimits replaces the env's Health by one with the given config and
// worker count (another replica when called twice on one env).
func (e *testEnv) withLimits(cfg health.Config, workers int) *health.Health {
	return health.New(cfg, health.Limits{AttemptTimeout: 5e9, MaxPause: 6e11, Workers: workers}, health.Deps{
		Redis: e.rdb, Registerer: prometheus.NewRegistry(), Now: e.clk.Now, StateClock: e.clk.Now,
	})
}

func admitOn(t *testing.T, h *health.Health, sub *hooklinev1.Subscription) (deliver.Slot, deliver.Refusal) {
	t.Helper()
	slot, ref, err := h.Admit(context.Background(), sub, 100)
	if err != nil {
		t.Fatal(err)
	}
	h.Flush()
	return slot, ref
}

func subOf(e *testEnv, t *testing.T, tenant, url string, n int) *hooklinev1.Subscription {
	return e.subscription(t, func(s *hooklinev1.Subscription) {
		s.Id = fmt.Sprintf("sub_%s_%d", tenant, n)
		s.Tenant, s.Url = tenant, url
	})
}

// One tenant's attempts take at most its share of a deliverer's workers,
// however many subscriptions it has; another tenant is admitted meanwhile.
func TestTenantTakesAtMostItsShareOfWorkers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	cfg := testConfig()
	cfg.TenantWorkerShare = 0.5
	h := e.withLimits(cfg, 8)
	var held []deliver.Slot
	for i := range 4 {
		slot, ref := admitOn(t, h, subOf(e, t, "flood", "https://slow.example/", i))
		if slot == nil {
			t.Fatalf("attempt %d of the flood refused (%+v) within its share", i, ref)
		}
		held = append(held, slot)
	}
	if slot, ref := admitOn(t, h, subOf(e, t, "flood", "https://slow.example/", 9)); slot != nil || ref.Reason != deliver.RefusedTenant {
		t.Fatalf("fifth attempt of the flood: slot %v, refusal %+v; want %s", slot != nil, ref, deliver.RefusedTenant)
	}
	victim, ref := admitOn(t, h, subOf(e, t, "victim", "https://fast.example/", 0))
	if victim == nil {
		t.Fatalf("the other tenant refused (%+v) while the flood holds its share", ref)
	}
	victim.Release(sender.Result{Status: 200})
	held[0].Release(sender.Result{Status: 200})
	h.Flush()
	if slot, ref := admitOn(t, h, subOf(e, t, "flood", "https://slow.example/", 10)); slot == nil {
		t.Fatalf("the flood refused (%+v) after one of its attempts ended", ref)
	}
}

// A tenant cap and a destination cap hold across replicas sharing Redis.
func TestTenantAndDestinationCapsHoldAcrossReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	cfg := testConfig()
	cfg.TenantWorkerShare = 1
	cfg.TenantMaxInFlight = 2
	cfg.DestinationMaxInFlight = 3
	a, b := e.withLimits(cfg, 64), e.withLimits(cfg, 64)
	if s, ref := admitOn(t, a, subOf(e, t, "acme", "https://one.example/", 0)); s == nil {
		t.Fatal(ref)
	}
	if s, ref := admitOn(t, b, subOf(e, t, "acme", "https://two.example/", 1)); s == nil {
		t.Fatal(ref)
	}
	if s, ref := admitOn(t, a, subOf(e, t, "acme", "https://three.example/", 2)); s != nil || ref.Reason != deliver.RefusedTenant {
		t.Fatalf("third attempt of the tenant: slot %v, refusal %+v; want %s", s != nil, ref, deliver.RefusedTenant)
	}
	// Three other tenants' subscriptions to one host: the host's cap.
	for i := range 2 {
		if s, ref := admitOn(t, []*health.Health{a, b}[i], subOf(e, t, fmt.Sprintf("t%d", i), "https://ONE.example:443/x", i)); s == nil {
			t.Fatalf("attempt %d to one.example refused: %+v", i, ref)
		}
	}
	if s, ref := admitOn(t, b, subOf(e, t, "t9", "https://one.example/other", 9)); s != nil || ref.Reason != deliver.RefusedDestination {
		t.Fatalf("fourth attempt to one.example: slot %v, refusal %+v; want %s", s != nil, ref, deliver.RefusedDestination)
	}
	if s, ref := admitOn(t, b, subOf(e, t, "t9", "https://one.example:8443/", 8)); s == nil {
		t.Fatalf("another port of the host is another destination: refused %+v", ref)
	}
}
