package health_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	refused = sender.Result{ErrorClass: sender.ClassConnectionRefused, Err: errors.New("connection refused")}
	fail404 = sender.Result{Status: 404, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 404")}
)

// destConfig turns the destination circuit on (3 failures) and keeps
// every subscription's own circuit and cap out of the way.
func destConfig() health.Config {
	cfg := testConfig()
	cfg.BreakerFailures = 1000
	cfg.DefaultMaxInFlight, cfg.DefaultMaxInFlightCeiling = 100, 100
	cfg.DestinationBreakerFailures = 3
	return cfg
}

// destHealth is a replica of e's world with cfg, and its metrics.
func destHealth(e *testEnv, cfg health.Config) (*health.Health, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return health.New(cfg, health.Limits{AttemptTimeout: 5 * time.Second, MaxPause: 10 * time.Minute, Workers: 64}, health.Deps{
		Redis: e.rdb, Registerer: reg, Now: e.clk.Now, StateClock: e.clk.Now,
	}), reg
}

// counterOf reads an unlabelled counter.
func counterOf(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no counter %s", name)
	return 0
}

// attemptOn admits sub on h (it must) and reports res.
func attemptOn(t *testing.T, h *health.Health, sub *hooklinev1.Subscription, res sender.Result) {
	t.Helper()
	slot, ref := admitOn(t, h, sub)
	if slot == nil {
		t.Fatalf("attempt of %s not admitted: %+v", sub.GetId(), ref)
	}
	slot.Release(res)
	h.Flush()
}

// Failures of different subscriptions (and tenants, on two replicas) to
// one host open the host's circuit for every subscription to it; another
// host, or another port, is not concerned. After the cool-down one probe
// goes, the others wait; its success closes the circuit.
func TestDestinationCircuitIsSharedBySubscriptionsToOneHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, destConfig())
	a, b := e.withLimits(destConfig(), 64), e.withLimits(destConfig(), 64)
	dead := func(n int) *hooklinev1.Subscription {
		return subOf(e, t, fmt.Sprintf("t%d", n%2), fmt.Sprintf("https://user:pw@Dead.example./hook/%d?token=x", n), n)
	}
	attemptOn(t, a, dead(0), refused)
	attemptOn(t, b, dead(1), sender.Result{ErrorClass: sender.ClassTimeout, Err: errors.New("timeout")})
	attemptOn(t, a, dead(2), fail500)

	for i := 3; i < 6; i++ {
		slot, ref := admitOn(t, []*health.Health{a, b}[i%2], dead(i))
		if slot != nil || ref.Reason != deliver.RefusedDestinationOpen {
			t.Fatalf("subscription %d to the dead host after 3 failures of others: slot %v, refusal %+v; want %s",
				i, slot != nil, ref, deliver.RefusedDestinationOpen)
		}
		if ref.Wait < 29*time.Second || ref.Wait > 32*time.Second {
			t.Fatalf("wait %s; want the 30s cool-down (plus up to 1s of spread)", ref.Wait)
		}
	}
	if slot, ref := admitOn(t, a, subOf(e, t, "t0", "https://dead.example:8443/hook", 50)); slot == nil {
		t.Fatalf("another port of the host refused: %+v", ref)
	} else {
		slot.Release(ok200)
	}
	if slot, ref := admitOn(t, a, subOf(e, t, "t0", "https://alive.example/hook", 51)); slot == nil {
		t.Fatalf("another host refused: %+v", ref)
	} else {
		slot.Release(ok200)
	}

	e.clk.Advance(31 * time.Second)
	probe, ref := admitOn(t, b, dead(7))
	if probe == nil {
		t.Fatalf("no probe after the cool-down: %+v", ref)
	}
	if slot, ref := admitOn(t, a, dead(8)); slot != nil || ref.Reason != deliver.RefusedDestinationOpen || ref.Wait > 2*time.Second {
		t.Fatalf("while the probe is in flight: slot %v, refusal %+v; want %s within 2s", slot != nil, ref, deliver.RefusedDestinationOpen)
	}
	probe.Release(ok200)
	b.Flush()
	for i := 9; i < 12; i++ {
		attemptOn(t, []*health.Health{a, b}[i%2], dead(i), ok200)
	}
}

// A failed probe reopens the circuit for twice as long; answers that
// show the host is up (a 404 for one subscription's path) end the streak
// as a success does, and attempts that say nothing about the host (the
// deliverer's own cancellation) give the probe back.
func TestDestinationCircuitCountsOnlyWhatTheHostSays(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	e := newEnv(t, cfg)
	h, reg := destHealth(e, cfg)
	sub := func(n int) *hooklinev1.Subscription {
		return subOf(e, t, "acme", fmt.Sprintf("https://flaky.example/%d", n), n)
	}
	// Two failures, a 404 (the host answered), two failures: still closed.
	attemptOn(t, h, sub(0), refused)
	attemptOn(t, h, sub(1), fail500)
	attemptOn(t, h, sub(2), fail404)
	attemptOn(t, h, sub(3), refused)
	attemptOn(t, h, sub(4), refused)
	attemptOn(t, h, sub(5), sender.Result{ErrorClass: sender.ClassCanceled, Err: errors.New("canceled")})
	attemptOn(t, h, sub(6), sender.Result{ErrorClass: sender.ClassBlocked, Err: errors.New("blocked")})
	// The third failure in a row opens it.
	attemptOn(t, h, sub(7), refused)
	if slot, ref := admitOn(t, h, sub(8)); slot != nil || ref.Reason != deliver.RefusedDestinationOpen {
		t.Fatalf("after three failures in a row: slot %v, refusal %+v; want %s", slot != nil, ref, deliver.RefusedDestinationOpen)
	}
	if got := counterOf(t, reg, "hookline_destination_breaker_opened_total"); got != 1 {
		t.Fatalf("hookline_destination_breaker_opened_total = %v; want 1", got)
	}

	// A probe cut short by the deliverer gives the probe back at once.
	e.clk.Advance(31 * time.Second)
	attemptOn(t, h, sub(9), sender.Result{ErrorClass: sender.ClassCanceled, Err: errors.New("canceled")})
	// The next probe fails: open for 60s now.
	attemptOn(t, h, sub(10), refused)
	_, ref := admitOn(t, h, sub(11))
	if ref.Reason != deliver.RefusedDestinationOpen || ref.Wait < 59*time.Second || ref.Wait > 62*time.Second {
		t.Fatalf("after a failed probe: refusal %+v; want %s for the doubled 60s cool-down", ref, deliver.RefusedDestinationOpen)
	}
	// A probe answered 404 shows the host is up: closed.
	e.clk.Advance(61 * time.Second)
	attemptOn(t, h, sub(12), fail404)
	for i := 13; i < 16; i++ {
		attemptOn(t, h, sub(i), ok200)
	}
	if got := counterOf(t, reg, "hookline_destination_breaker_closed_total"); got != 1 {
		t.Fatalf("hookline_destination_breaker_closed_total = %v; want 1", got)
	}
}

// HOOKLINE_DESTINATION_BREAKER_FAILURES=0 turns the destination circuit
// off: only each subscription's own circuit counts.
func TestDestinationCircuitOff(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	cfg.DestinationBreakerFailures = 0
	e := newEnv(t, cfg)
	h := e.withLimits(cfg, 64)
	for i := range 10 {
		attemptOn(t, h, subOf(e, t, "acme", "https://dead.example/", i), refused)
	}
}

// Spellings of one host and port share its cap: case, a trailing dot,
// the default port, an IPv6 literal's forms.
func TestDestinationCapKeysTheHostNotItsSpelling(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	cfg.DestinationMaxInFlight = 1
	e := newEnv(t, cfg)
	h := e.withLimits(cfg, 64)
	for name, urls := range map[string][]string{
		"name": {"https://Hooks.Example.com/a", "https://hooks.example.com.:443/b", "https://u:p@hooks.example.com/c?k=v"},
		"ipv6": {"http://[2001:db8::1]/a", "http://[2001:0db8:0:0::1]:80/b"},
	} {
		first, ref := admitOn(t, h, subOf(e, t, name, urls[0], 0))
		if first == nil {
			t.Fatalf("%s: first attempt refused: %+v", name, ref)
		}
		for i, u := range urls[1:] {
			if slot, ref := admitOn(t, h, subOf(e, t, name, u, i+1)); slot != nil || ref.Reason != deliver.RefusedDestination {
				t.Fatalf("%s: %s beside %s: slot %v, refusal %+v; want %s", name, u, urls[0], slot != nil, ref, deliver.RefusedDestination)
			}
		}
		first.Release(ok200)
		h.Flush()
	}
}

// One broken subscription on a shared host (its path answers 500) opens
// its own circuit; its probes, failing once per cool-down, do not go on
// to open the host's circuit for the other subscriptions to the host.
func TestOneBrokenSubscriptionDoesNotOpenItsHost(t *testing.T) {
	t.Parallel()
	cfg := destConfig()
	cfg.BreakerFailures = 3
	cfg.DestinationBreakerFailures = 5
	e := newEnv(t, cfg)
	h, reg := destHealth(e, cfg)
	broken := subOf(e, t, "acme", "https://shared.example/broken", 0)
	for range 3 {
		attemptOn(t, h, broken, fail500)
	}
	if slot, ref := admitOn(t, h, broken); slot != nil || ref.Reason != deliver.RefusedCircuitOpen {
		t.Fatalf("the broken subscription after 3 failures: slot %v, refusal %+v; want %s", slot != nil, ref, deliver.RefusedCircuitOpen)
	}
	for i := range 4 {
		e.clk.Advance(10 * time.Minute) // past every cool-down
		attemptOn(t, h, broken, fail500)
		if slot, ref := admitOn(t, h, subOf(e, t, "other", "https://shared.example/fine", i)); slot == nil {
			t.Fatalf("after %d failed probes of the broken subscription, another subscription to the host was refused: %+v", i+1, ref)
		} else {
			slot.Return() // no attempt: nothing said of the host in between
			h.Flush()
		}
	}
	if got := counterOf(t, reg, "hookline_destination_breaker_opened_total"); got != 0 {
		t.Fatalf("hookline_destination_breaker_opened_total = %v; want 0", got)
	}
}
