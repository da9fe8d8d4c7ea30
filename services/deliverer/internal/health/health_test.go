package health_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redisconn"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/breaker"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"github.com/hookline/hookline/services/deliverer/internal/healthtest"
	"github.com/hookline/hookline/services/deliverer/internal/inflight"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testConfig() health.Config {
	return health.Config{
		DefaultMaxInFlight:        3,
		DefaultMaxInFlightCeiling: 3,
		InFlightDefer:             time.Second,
		BreakerFailures:           3,
		BreakerCooldown:           30 * time.Second,
		BreakerMaxCooldown:        5 * time.Minute,
		AutoDisableAfter:          time.Hour,
		RedisTimeout:              time.Second,
		TenantWorkerShare:         1, // fair sharing has its own tests (fair_test.go)
	}
}

// testEnv is one test's world: real NATS (registry, EVENTS), real Redis.
type testEnv struct {
	clk   *healthtest.Clock
	rdb   *redis.Client
	js    jetstream.JetStream
	store *subscription.Store
	h     *health.Health
	reg   *prometheus.Registry
}

func newEnv(t *testing.T, cfg health.Config) *testEnv {
	t.Helper()
	ctx := context.Background()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	e := &testEnv{clk: healthtest.NewClockAt(time.Now().UTC().Truncate(time.Millisecond)), rdb: rdb, js: js, store: store, reg: prometheus.NewRegistry()}
	e.h = health.New(cfg, health.Limits{AttemptTimeout: 5 * time.Second, MaxPause: 10 * time.Minute}, health.Deps{
		Redis:      rdb,
		Disabler:   health.NewDisabler(store, subscription.NewCache(rdb, store), js, nil),
		Registerer: e.reg,
		Now:        e.clk.Now,
		StateClock: e.clk.Now,
	})
	return e
}

func (e *testEnv) subscription(t *testing.T, mutate func(*hooklinev1.Subscription)) *hooklinev1.Subscription {
	t.Helper()
	sub := &hooklinev1.Subscription{
		Id:         "sub_" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()),
		Tenant:     "acme",
		Url:        "https://user:pass@hooks.example.com:8443/in?token=secret",
		EventTypes: []string{"order.*"},
		CreatedAt:  timestamppb.New(e.clk.Now()),
		UpdatedAt:  timestamppb.New(e.clk.Now()),
	}
	if mutate != nil {
		mutate(sub)
	}
	if _, err := e.store.Create(context.Background(), sub); err != nil {
		t.Fatal(err)
	}
	return sub
}

// admit asks admission; done is the slot's Release when admitted, and
// ref the refusal otherwise.
func (e *testEnv) admit(t *testing.T, sub *hooklinev1.Subscription) (done func(sender.Result), ref deliver.Refusal) {
	t.Helper()
	slot, ref, err := e.h.Admit(context.Background(), sub, 0)
	if err != nil {
		t.Fatalf("admit: %v", err)
	}
	if (slot == nil) == (ref.Reason == "") {
		t.Fatalf("admit returned a slot %v and refusal %+v; want exactly one", slot != nil, ref)
	}
	e.h.Flush() // a refusal gives its slot back without waiting for Redis
	if slot == nil {
		return nil, ref
	}
	return slot.Release, ref
}

// attempt admits (it must) and reports res.
func (e *testEnv) attempt(t *testing.T, sub *hooklinev1.Subscription, res sender.Result) {
	t.Helper()
	done, ref := e.admit(t, sub)
	if done == nil {
		t.Fatalf("attempt not admitted (%+v)", ref)
	}
	done(res)
	e.h.Flush() // a success gives its slot back without waiting for Redis
}

func (e *testEnv) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

var (
	ok200   = sender.Result{Status: 200}
	fail500 = sender.Result{Status: 500, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 500")}
	gone410 = sender.Result{Status: 410, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 410")}
)

func TestAdmitDefersWithoutHoldingAnything(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := context.Background()
	b := breaker.New(e.rdb, breaker.Config{})
	slots := inflight.New(e.rdb, inflight.Config{})

	tests := []struct {
		name       string
		sub        func(*hooklinev1.Subscription)
		setup      func(t *testing.T, sub *hooklinev1.Subscription) // takes what is needed to be turned away
		wantReason string
		minWait    time.Duration
		maxWait    time.Duration
	}{
		{
			name: "in-flight cap reached",
			setup: func(t *testing.T, sub *hooklinev1.Subscription) {
				for range 3 {
					e.admit(t, sub)
				}
			},
			wantReason: "in_flight_full",
		},
		{
			name: "per-subscription cap reached",
			sub:  func(s *hooklinev1.Subscription) { s.MaxInFlight = 1 },
			setup: func(t *testing.T, sub *hooklinev1.Subscription) {
				e.admit(t, sub)
			},
			wantReason: "in_flight_full",
		},
		{
			name: "rate limited",
			sub:  func(s *hooklinev1.Subscription) { s.RateLimitPerSecond = 0.5; s.RateLimitBurst = 1 },
			setup: func(t *testing.T, sub *hooklinev1.Subscription) {
				e.attempt(t, sub, ok200)
			},
			// 2s to the next request, plus up to 1 denial × 2s of spread.
			wantReason: "rate_limited", minWait: 2 * time.Second, maxWait: 4 * time.Second,
		},
		{
			name: "circuit open",
			setup: func(t *testing.T, sub *hooklinev1.Subscription) {
				for range 3 {
					e.attempt(t, sub, fail500)
				}
			},
			wantReason: "circuit_open", minWait: 30 * time.Second, maxWait: 31 * time.Second,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := e.subscription(t, tt.sub)
			tt.setup(t, sub)
			before, err := slots.InFlight(ctx, sub.GetId())
			if err != nil {
				t.Fatal(err)
			}
			_, ref := e.admit(t, sub)
			if ref.Reason != tt.wantReason || ref.Wait < tt.minWait || ref.Wait > tt.maxWait {
				t.Fatalf("refused %+v; want %s with a wait within [%s, %s]", ref, tt.wantReason, tt.minWait, tt.maxWait)
			}
			if after, _ := slots.InFlight(ctx, sub.GetId()); after != before {
				t.Fatalf("a refused admission kept an in-flight slot: %d → %d", before, after)
			}
			if _, err := b.Snapshot(ctx, sub.GetId()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestProbeIsGivenBackWhenTheAttemptIsNotMade(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	sub := e.subscription(t, func(s *hooklinev1.Subscription) { s.MaxInFlight = 1 })
	for range 3 {
		e.attempt(t, sub, fail500)
	}
	e.clk.Advance(30 * time.Second)
	probe, _ := e.admit(t, sub)
	if probe == nil {
		t.Fatal("no probe after the cool-down")
	}
	// The probe holds the only slot: the next caller waits for the probe.
	if _, ref := e.admit(t, sub); ref.Reason != deliver.RefusedProbe || ref.Wait == 0 || ref.Wait > 2*time.Second {
		t.Fatalf("second caller in half-open: %+v; want a short wait for the probe", ref)
	}
	probe(sender.Result{ErrorClass: sender.ClassCanceled, Err: context.Canceled})
	// Cancelled: the probe lease and the slot are back; the next one probes.
	done, ref := e.admit(t, sub)
	if done == nil {
		t.Fatalf("after a cancelled probe: %+v; want the next probe", ref)
	}
	done(ok200)
	snap, err := breaker.New(e.rdb, breaker.Config{}).Snapshot(context.Background(), sub.GetId())
	if err != nil || snap.State != breaker.Closed || snap.Failures != 0 {
		t.Fatalf("after a successful probe: %+v %v; want closed with no streak", snap, err)
	}
	if got := e.counter(t, "hookline_breaker_closed_total", nil); got != 1 {
		t.Fatalf("hookline_breaker_closed_total = %g; want 1", got)
	}
}

func TestResultsTeachTheBreaker(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := context.Background()
	b := breaker.New(e.rdb, breaker.Config{Now: e.clk.Now, StateClock: e.clk.Now})
	tests := []struct {
		name          string
		results       []sender.Result
		wantState     breaker.State
		wantFailures  int
		wantOpenUntil time.Duration // from now; 0 when closed
	}{
		{name: "success", results: []sender.Result{ok200}, wantState: breaker.Closed},
		{name: "two failures stay closed", results: []sender.Result{fail500, fail500}, wantState: breaker.Closed, wantFailures: 2},
		{name: "three failures open", results: []sender.Result{fail500, fail500, fail500}, wantState: breaker.Open, wantFailures: 3, wantOpenUntil: 30 * time.Second},
		{name: "a success ends the streak", results: []sender.Result{fail500, fail500, ok200, fail500}, wantState: breaker.Closed, wantFailures: 1},
		{
			name:      "429 Retry-After pauses the endpoint",
			results:   []sender.Result{{Status: 429, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 429"), RetryAfter: 2 * time.Minute}},
			wantState: breaker.Open, wantFailures: 1, wantOpenUntil: 2 * time.Minute,
		},
		{
			name:      "503 Retry-After is capped by MaxPause",
			results:   []sender.Result{{Status: 503, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 503"), RetryAfter: 48 * time.Hour}},
			wantState: breaker.Open, wantFailures: 1, wantOpenUntil: 10 * time.Minute,
		},
		{
			name:      "Retry-After on a 500 is not a pause",
			results:   []sender.Result{{Status: 500, ErrorClass: sender.ClassHTTPStatus, Err: errors.New("HTTP 500"), RetryAfter: time.Minute}},
			wantState: breaker.Closed, wantFailures: 1,
		},
		{
			name:      "timeouts and resets are failures",
			results:   []sender.Result{{ErrorClass: sender.ClassTimeout, Err: errors.New("timeout")}, {ErrorClass: sender.ClassConnectionReset, Err: errors.New("reset")}, {ErrorClass: sender.ClassConnectionRefused, Err: errors.New("refused")}},
			wantState: breaker.Open, wantFailures: 3, wantOpenUntil: 30 * time.Second,
		},
		{
			name:      "3xx is a failure",
			results:   []sender.Result{{Status: 302, ErrorClass: sender.ClassRedirect, Err: errors.New("HTTP 302")}},
			wantState: breaker.Closed, wantFailures: 1,
		},
		{
			name:      "a cancelled attempt counts neither way",
			results:   []sender.Result{fail500, {ErrorClass: sender.ClassCanceled, Err: context.Canceled}},
			wantState: breaker.Closed, wantFailures: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := e.subscription(t, nil)
			for _, r := range tt.results {
				e.attempt(t, sub, r)
			}
			snap, err := b.Snapshot(ctx, sub.GetId())
			if err != nil {
				t.Fatal(err)
			}
			var openFor time.Duration
			if !snap.OpenUntil.IsZero() {
				openFor = snap.OpenUntil.Sub(e.clk.Now())
			}
			if snap.State != tt.wantState || snap.Failures != tt.wantFailures || openFor != tt.wantOpenUntil {
				t.Fatalf("breaker %s, %d failures, open for %s; want %s, %d, %s",
					snap.State, snap.Failures, openFor, tt.wantState, tt.wantFailures, tt.wantOpenUntil)
			}
			if n, _ := inflight.New(e.rdb, inflight.Config{}).InFlight(ctx, sub.GetId()); n != 0 {
				t.Fatalf("%d in-flight slots still held after every attempt reported", n)
			}
		})
	}
}

// disabledEvents reads every hookline.subscription.disabled event of acme.
func disabledEvents(t *testing.T, js jetstream.JetStream) []health.DisabledEvent {
	t.Helper()
	subject := stream.EventSubject("acme", health.DisabledEventType)
	var out []health.DisabledEvent
	for _, m := range natstest.Messages(t, js, stream.Events) {
		if m.Subject != subject {
			continue
		}
		var ev health.DisabledEvent
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			t.Fatalf("disabled event body %q: %v", m.Data, err)
		}
		if want := stream.EventMsgID("acme", health.DisabledEventID(ev.SubscriptionID, ev.DisabledAt)); m.Header.Get(stream.HeaderMsgID) != want {
			t.Fatalf("event Nats-Msg-Id %q; want %q", m.Header.Get(stream.HeaderMsgID), want)
		}
		if strings.Contains(string(m.Data), "secret") || strings.Contains(string(m.Data), "pass") {
			t.Fatalf("disabled event leaks the URL's userinfo or query: %s", m.Data)
		}
		out = append(out, ev)
	}
	return out
}

func TestGoneDisablesAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	ctx := context.Background()
	sub := e.subscription(t, nil)
	other := e.subscription(t, func(s *hooklinev1.Subscription) { s.Id += "_other" })
	doneA, _ := e.admit(t, sub)
	doneB, _ := e.admit(t, sub) // an attempt in flight at the same time
	doneA(gone410)
	doneB(gone410)

	got, _, err := e.store.Get(ctx, sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if !got.GetDisabled() || got.GetDisabledReason() != wire.DisabledGone || got.GetDisabledAt() == nil {
		t.Fatalf("after 410: disabled %v reason %q at %v; want disabled, gone, a time", got.GetDisabled(), got.GetDisabledReason(), got.GetDisabledAt())
	}
	cached, err := e.rdb.HGet(ctx, subscription.TenantKey("acme"), sub.GetId()).Result()
	if err != nil || !strings.Contains(cached, `"disabled":true`) {
		t.Fatalf("cache entry %q (%v); want the disabled record at once", cached, err)
	}
	evs := disabledEvents(t, e.js)
	if len(evs) != 1 {
		t.Fatalf("%d disabled events after two 410s; want exactly 1", len(evs))
	}
	want := health.DisabledEvent{SubscriptionID: sub.GetId(), Reason: "gone", DisabledAt: got.GetDisabledAt().AsTime(), URLHost: "hooks.example.com:8443"}
	if evs[0] != want {
		t.Fatalf("event %+v; want %+v", evs[0], want)
	}
	if o, _, _ := e.store.Get(ctx, other.GetId()); o.GetDisabled() {
		t.Fatal("another subscription was disabled")
	}
	if n := e.counter(t, "hookline_subscriptions_disabled_total", map[string]string{"reason": "gone"}); n != 1 {
		t.Fatalf("hookline_subscriptions_disabled_total{reason=gone} = %g; want 1", n)
	}
}

func TestAutoDisableAfterTheWindowAndReenable(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.BreakerFailures = 1000 // keep the circuit closed: this is about the window
	e := newEnv(t, cfg)
	ctx := context.Background()
	sub := e.subscription(t, nil)

	e.attempt(t, sub, fail500)
	e.clk.Advance(59 * time.Minute)
	e.attempt(t, sub, fail500)
	if got, _, _ := e.store.Get(ctx, sub.GetId()); got.GetDisabled() {
		t.Fatal("disabled before the window was over")
	}
	e.clk.Advance(time.Minute)
	e.attempt(t, sub, sender.Result{ErrorClass: sender.ClassTimeout, Err: errors.New("timeout")})
	got, _, err := e.store.Get(ctx, sub.GetId())
	if err != nil || !got.GetDisabled() || got.GetDisabledReason() != wire.DisabledFailing {
		t.Fatalf("after failing for the whole window: %+v %v; want disabled, failing", got, err)
	}
	evs := disabledEvents(t, e.js)
	if len(evs) != 1 || evs[0].Reason != "failing" || evs[0].SubscriptionID != sub.GetId() {
		t.Fatalf("disabled events %+v; want one, failing", evs)
	}

	// Re-enable (what PATCH {"disabled": false} does).
	now := e.clk.Now()
	reenabled, _, err := e.store.Update(ctx, sub.GetId(), func(s *hooklinev1.Subscription) error {
		s.Disabled, s.DisabledReason, s.DisabledAt, s.UpdatedAt = false, "", nil, timestamppb.New(now)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The streak in Redis is over an hour old, but the subscription was
	// changed since: one more failure does not disable it again.
	e.clk.Advance(time.Minute)
	e.attempt(t, reenabled, fail500)
	if got, _, _ := e.store.Get(ctx, sub.GetId()); got.GetDisabled() {
		t.Fatal("re-enabled subscription disabled again by its old streak")
	}
	// A whole new window of failures disables it again, with a new event.
	e.clk.Advance(time.Hour)
	e.attempt(t, reenabled, fail500)
	if got, _, _ := e.store.Get(ctx, sub.GetId()); !got.GetDisabled() {
		t.Fatal("not disabled after a new window of failures")
	}
	if evs := disabledEvents(t, e.js); len(evs) != 2 {
		t.Fatalf("%d disabled events; want 2 (one per disable)", len(evs))
	}
}

func TestAutoDisableOff(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AutoDisableAfter = 0
	cfg.BreakerFailures = 1000
	e := newEnv(t, cfg)
	sub := e.subscription(t, nil)
	e.attempt(t, sub, fail500)
	e.clk.Advance(365 * 24 * time.Hour)
	e.attempt(t, sub, fail500)
	if got, _, _ := e.store.Get(context.Background(), sub.GetId()); got.GetDisabled() {
		t.Fatal("disabled with HOOKLINE_AUTO_DISABLE_AFTER=0")
	}
}

func TestRedisDownStillAdmits(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := healthtest.FailFastClient(t, srv)
	reg := prometheus.NewRegistry()
	h := health.New(testConfig(), health.Limits{AttemptTimeout: time.Second}, health.Deps{Redis: rdb, Registerer: reg})
	srv.Stop()
	sub := &hooklinev1.Subscription{Id: "sub_down", Tenant: "acme", RateLimitPerSecond: 100}
	var dones []func(sender.Result)
	for i := range 3 {
		slot, ref, err := h.Admit(context.Background(), sub, 0)
		if err != nil || slot == nil {
			t.Fatalf("admission %d with redis down: %+v err %v; want admitted", i+1, ref, err)
		}
		dones = append(dones, slot.Release)
	}
	// The cap still holds, per process.
	if slot, ref, _ := h.Admit(context.Background(), sub, 0); slot != nil || ref.Reason != deliver.RefusedFull {
		t.Fatal("a fourth attempt passed a cap of 3 with redis down")
	}
	for _, d := range dones {
		d(ok200)
	}
	if slot, _, _ := h.Admit(context.Background(), sub, 0); slot == nil {
		t.Fatal("slots not given back with redis down")
	}
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*health.Config)
		want   string
	}{
		{name: "valid", mutate: func(*health.Config) {}},
		{name: "zero cap", mutate: func(c *health.Config) { c.DefaultMaxInFlight = 0 }, want: "HOOKLINE_DEFAULT_MAX_IN_FLIGHT"},
		{name: "ceiling below cap", mutate: func(c *health.Config) { c.DefaultMaxInFlightCeiling = 2 }, want: "HOOKLINE_DEFAULT_MAX_IN_FLIGHT_CEILING"},
		{name: "zero failures", mutate: func(c *health.Config) { c.BreakerFailures = 0 }, want: "HOOKLINE_BREAKER_FAILURES"},
		{name: "max below cooldown", mutate: func(c *health.Config) { c.BreakerMaxCooldown = time.Second }, want: "HOOKLINE_BREAKER_MAX_COOLDOWN"},
		{name: "negative window", mutate: func(c *health.Config) { c.AutoDisableAfter = -time.Hour }, want: "HOOKLINE_AUTO_DISABLE_AFTER"},
		{name: "zero defer", mutate: func(c *health.Config) { c.InFlightDefer = 0 }, want: "HOOKLINE_IN_FLIGHT_DEFER"},
		{name: "zero redis timeout", mutate: func(c *health.Config) { c.RedisTimeout = 0 }, want: "HOOKLINE_HEALTH_REDIS_TIMEOUT"},
		{name: "zero worker share", mutate: func(c *health.Config) { c.TenantWorkerShare = 0 }, want: "HOOKLINE_TENANT_WORKER_SHARE"},
		{name: "share above one", mutate: func(c *health.Config) { c.TenantWorkerShare = 1.5 }, want: "HOOKLINE_TENANT_WORKER_SHARE"},
		{name: "negative tenant cap", mutate: func(c *health.Config) { c.TenantMaxInFlight = -1 }, want: "HOOKLINE_TENANT_MAX_IN_FLIGHT"},
		{name: "negative destination cap", mutate: func(c *health.Config) { c.DestinationMaxInFlight = -1 }, want: "HOOKLINE_DESTINATION_MAX_IN_FLIGHT"},
		{name: "negative destination breaker", mutate: func(c *health.Config) { c.DestinationBreakerFailures = -1 }, want: "HOOKLINE_DESTINATION_BREAKER_FAILURES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := testConfig()
			tt.mutate(&c)
			err := c.Validate()
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate() = %v; want an error naming %q", err, tt.want)
			}
		})
	}
}

// A Redis that answers too slowly (CLIENT PAUSE) is a Redis failure:
// attempts are admitted on local counts, not all deferred.
func TestSlowRedisDegradesToLocalDecisions(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb, err := redisconn.Open(redisconn.Config{URL: "redis://" + srv.Addr + "/0"}) // honours deadlines
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	cfg := testConfig()
	cfg.RedisTimeout = 50 * time.Millisecond
	reg := prometheus.NewRegistry()
	h := health.New(cfg, health.Limits{AttemptTimeout: time.Second}, health.Deps{Redis: rdb, Registerer: reg})
	if err := srv.Client(t).Do(context.Background(), "CLIENT", "PAUSE", "2000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	sub := &hooklinev1.Subscription{Id: "sub_slow_redis", Tenant: "acme", RateLimitPerSecond: 100}
	slot, ref, err := h.Admit(context.Background(), sub, 0)
	if err != nil || slot == nil {
		t.Fatalf("redis paused: %+v err %v; want admitted on local counts", ref, err)
	}
	slot.Release(ok200)
	e := &testEnv{reg: reg}
	if n := e.counter(t, "hookline_admission_degraded_total", map[string]string{"component": "in_flight"}); n != 1 {
		t.Fatalf("hookline_admission_degraded_total{component=in_flight} = %g; want 1", n)
	}
}

// A rate stored before the API refused tiny ones (1e-300/s) waits at most
// an hour between requests: its wait used to overflow into a retry
// scheduled for the year 2319, which NATS fired at once, forever.
func TestTinyStoredRateWaitsAnHourAtMost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testConfig())
	sub := e.subscription(t, func(s *hooklinev1.Subscription) { s.RateLimitPerSecond = 1e-300; s.RateLimitBurst = 1 })
	e.attempt(t, sub, ok200)
	_, ref := e.admit(t, sub)
	if ref.Reason != deliver.RefusedRate || ref.Wait <= 0 || ref.Wait > 2*time.Hour {
		t.Fatalf("refusal %+v; want rate_limited with a wait of about an hour", ref)
	}
}
