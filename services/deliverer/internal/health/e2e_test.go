package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/health"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// A hanging endpoint and nine healthy ones: every healthy endpoint receives
// every event exactly once, and the hanging one never has more than its cap
// of attempts in flight, counted at the endpoint.
func TestHangingEndpointDoesNotStarveHealthyOnes(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startDeliverer(t, map[string]string{
		"HOOKLINE_HTTP_TIMEOUT":                 "2s",
		"HOOKLINE_DELIVER_WORKERS":              "8",
		"HOOKLINE_DEFAULT_MAX_IN_FLIGHT":        "3",
		"HOOKLINE_BREAKER_FAILURES":             "1000", // the cap alone must isolate
		"HOOKLINE_DESTINATION_BREAKER_FAILURES": "0",
		"HOOKLINE_RETRY_SCHEDULE":               "0s,1s,1s,1s,1s,1s,1s,1s",
	})
	hanging := newReceiver(t, nil)
	hanging.respond = hanging.hang
	w.subscribe(t, hanging.URL, nil)
	var healthy []*receiver
	for range 9 {
		rc := newReceiver(t, nil)
		w.subscribe(t, rc.URL, nil)
		healthy = append(healthy, rc)
	}
	const events = 30
	w.publish(t, "order.created", events)

	eventually(t, 60*time.Second, "every healthy endpoint receives every event", func() bool {
		for _, rc := range healthy {
			if rc.delivered() < events {
				return false
			}
		}
		return true
	})
	for i, rc := range healthy {
		if d := rc.duplicates(); d != 0 {
			t.Errorf("healthy endpoint %d received %d duplicates", i, d)
		}
	}
	if got := hanging.maxInFlight.Load(); got > 3 || got < 1 {
		t.Fatalf("hanging endpoint saw at most %d requests in flight; want between 1 and its cap 3", got)
	}
}

// A rate limit of R/s with burst B across two deliverer replicas: the
// endpoint never sees more than R×W + B requests in any window W.
func TestRateLimitHoldsAcrossTwoDeliverers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	overrides := map[string]string{"HOOKLINE_DELIVER_WORKERS": "8"}
	replicas := []*deliverer{w.startDeliverer(t, overrides), w.startDeliverer(t, overrides)}
	rc := newReceiver(t, nil)
	const perSecond, burst, events = 10, 3, 40
	w.subscribe(t, rc.URL, func(s *hooklinev1.Subscription) {
		s.RateLimitPerSecond = perSecond
		s.RateLimitBurst = burst
	})
	w.publish(t, "order.created", events)
	eventually(t, 60*time.Second, "every event delivered", func() bool { return rc.delivered() == events })

	log := rc.requestLog()
	starts := make([]time.Time, 0, len(log))
	for _, r := range log {
		starts = append(starts, r.start)
	}
	slices.SortFunc(starts, func(a, b time.Time) int { return a.Compare(b) })
	// In any one-second window: at most R + B. One request of slack for
	// loopback latency jitter between admission and arrival.
	const window = time.Second
	limit := perSecond*int(window/time.Second) + burst + 1
	for i := range starts {
		n := 0
		for j := i; j < len(starts) && starts[j].Sub(starts[i]) < window; j++ {
			n++
		}
		if n > limit {
			t.Fatalf("%d requests within %s from request %d; want at most %d (%d/s, burst %d)", n, window, i+1, limit, perSecond, burst)
		}
	}
	// And overall: (events − burst) / R seconds at least.
	if span, want := starts[len(starts)-1].Sub(starts[0]), time.Duration(float64(events-burst)/perSecond*float64(time.Second))-300*time.Millisecond; span < want {
		t.Fatalf("%d requests in %s; at %d/s burst %d they need at least %s", len(starts), span, perSecond, burst, want)
	}
	for i, d := range replicas {
		if n := d.counter(t, "hookline_attempts_total", nil); n == 0 {
			t.Errorf("replica %d made no attempt: the limit was not shared by two", i+1)
		}
	}
}

// What the endpoint says (or does) decides the next step.
func TestEndpointAnswersDecideTheNextStep(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	d := w.startDeliverer(t, map[string]string{"HOOKLINE_BREAKER_FAILURES": "1000", "HOOKLINE_DESTINATION_BREAKER_FAILURES": "0"})

	type want struct {
		requests   int64
		outcomes   []string // attempt records, in order
		errorClass string   // of the first attempt
		deadReason string   // "" when delivered
		disabled   string   // the subscription's disabled_reason after
		minGap     time.Duration
	}
	redirectTarget := newReceiver(t, nil)
	tests := []struct {
		name    string
		respond func(rc *receiver) func(http.ResponseWriter, *http.Request, int64)
		url     func(rc *receiver) string
		want    want
	}{
		{
			name: "429 Retry-After seconds",
			respond: func(*receiver) func(http.ResponseWriter, *http.Request, int64) {
				return func(w http.ResponseWriter, r *http.Request, n int64) {
					if n == 1 {
						status(429, "Retry-After", "2")(w, r, n)
					}
				}
			},
			want: want{requests: 2, outcomes: []string{"retry", "success"}, errorClass: "http_status", minGap: 2 * time.Second},
		},
		{
			name: "503 Retry-After HTTP date",
			respond: func(*receiver) func(http.ResponseWriter, *http.Request, int64) {
				return func(w http.ResponseWriter, r *http.Request, n int64) {
					if n == 1 {
						status(503, "Retry-After", time.Now().Add(3*time.Second).UTC().Format(http.TimeFormat))(w, r, n)
					}
				}
			},
			// An HTTP date has whole seconds: at least 2s of the 3.
			want: want{requests: 2, outcomes: []string{"retry", "success"}, errorClass: "http_status", minGap: 2 * time.Second},
		},
		{
			name:    "410 Gone",
			respond: func(*receiver) func(http.ResponseWriter, *http.Request, int64) { return status(410) },
			want:    want{requests: 1, outcomes: []string{"dead_letter"}, errorClass: "http_status", deadReason: "gone", disabled: "gone"},
		},
		{
			name: "302 is not followed",
			respond: func(*receiver) func(http.ResponseWriter, *http.Request, int64) {
				return status(302, "Location", redirectTarget.URL)
			},
			want: want{requests: 2, outcomes: []string{"retry", "dead_letter"}, errorClass: "redirect", deadReason: "attempts_exhausted"},
		},
		{
			name: "connection refused",
			url:  func(*receiver) string { return closedURL(t) },
			want: want{outcomes: []string{"retry", "dead_letter"}, errorClass: "connection_refused", deadReason: "attempts_exhausted"},
		},
		{
			name:    "connection reset",
			respond: func(*receiver) func(http.ResponseWriter, *http.Request, int64) { return reset },
			want:    want{requests: 2, outcomes: []string{"retry", "dead_letter"}, errorClass: "connection_reset", deadReason: "attempts_exhausted"},
		},
		{
			name:    "timeout",
			respond: func(rc *receiver) func(http.ResponseWriter, *http.Request, int64) { return rc.hang },
			want:    want{requests: 2, outcomes: []string{"retry", "dead_letter"}, errorClass: "timeout", deadReason: "attempts_exhausted"},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// Each case its own event type: the cases run side by side.
			family := fmt.Sprintf("case%d", i)
			rc := newReceiver(t, nil)
			if tt.respond != nil {
				rc.respond = tt.respond(rc)
			}
			url := rc.URL
			if tt.url != nil {
				url = tt.url(rc)
			}
			sub := w.subscribe(t, url, func(s *hooklinev1.Subscription) { s.EventTypes = []string{family + ".*"} })
			w.publish(t, family+".created", 1)

			var recs []*hooklinev1.Attempt
			eventually(t, 30*time.Second, fmt.Sprintf("%d attempt records", len(tt.want.outcomes)), func() bool {
				recs = w.attempts(t, sub)
				return len(recs) >= len(tt.want.outcomes)
			})
			var outcomes []string
			for _, a := range recs {
				outcomes = append(outcomes, a.GetOutcome())
			}
			if !slices.Equal(outcomes, tt.want.outcomes) {
				t.Fatalf("attempt outcomes %v; want %v", outcomes, tt.want.outcomes)
			}
			if recs[0].GetErrorClass() != tt.want.errorClass {
				t.Fatalf("first attempt error class %q (%s); want %q", recs[0].GetErrorClass(), recs[0].GetError(), tt.want.errorClass)
			}
			for i, a := range recs {
				if int(a.GetAttempt()) != i+1 {
					t.Fatalf("attempt record %d has attempt number %d", i+1, a.GetAttempt())
				}
			}
			if tt.want.requests > 0 && rc.requests.Load() != tt.want.requests {
				t.Fatalf("endpoint got %d requests; want %d", rc.requests.Load(), tt.want.requests)
			}
			if tt.want.minGap > 0 {
				log := rc.requestLog()
				if gap := log[1].start.Sub(log[0].end); gap < tt.want.minGap {
					t.Fatalf("second attempt %s after the first answer; Retry-After asked for %s", gap, tt.want.minGap)
				}
			}
			if tt.want.deadReason != "" {
				var dl []string
				eventually(t, 10*time.Second, "a dead letter", func() bool {
					for _, m := range w.deadLetters(t, sub) {
						dl = append(dl, header(m, stream.HeaderReason))
					}
					return len(dl) > 0
				})
				if len(dl) != 1 || dl[0] != tt.want.deadReason {
					t.Fatalf("dead letters %v; want one, %q", dl, tt.want.deadReason)
				}
			} else if rc.delivered() != 1 {
				t.Fatalf("delivered %d events; want 1", rc.delivered())
			}
			got, _, err := w.store.Get(context.Background(), sub.GetId())
			if err != nil {
				t.Fatal(err)
			}
			if got.GetDisabledReason() != tt.want.disabled || got.GetDisabled() != (tt.want.disabled != "") {
				t.Fatalf("subscription disabled=%v reason %q; want reason %q", got.GetDisabled(), got.GetDisabledReason(), tt.want.disabled)
			}
		})
	}
	t.Cleanup(func() {
		if n := redirectTarget.requests.Load(); n != 0 {
			t.Errorf("the redirect target received %d requests: a 3xx was followed", n)
		}
		if n := d.counter(t, "hookline_subscriptions_disabled_total", map[string]string{"reason": "gone"}); n != 1 {
			t.Errorf("hookline_subscriptions_disabled_total{reason=gone} = %g; want 1", n)
		}
	})
}

// The breaker opens after N failures, lets one probe through after the
// cool-down, and closes on its success; the attempts it skipped are not
// counted against any delivery.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	d := w.startDeliverer(t, map[string]string{
		"HOOKLINE_BREAKER_FAILURES": "3",
		"HOOKLINE_BREAKER_COOLDOWN": "2s",
		"HOOKLINE_RETRY_SCHEDULE":   "0s,1s,1s,1s",
	})
	rc := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, n int64) {
		if n <= 3 {
			w.WriteHeader(500)
			return
		}
		time.Sleep(200 * time.Millisecond) // a slow probe: nobody else may be let in meanwhile
	})
	// One at a time, so that "the next request" is well defined.
	sub := w.subscribe(t, rc.URL, func(s *hooklinev1.Subscription) { s.MaxInFlight = 1 })
	const events = 5
	w.publish(t, "order.created", events)
	eventually(t, 60*time.Second, "every event delivered", func() bool { return rc.delivered() == events })

	log := rc.requestLog()
	if len(log) != 3+events {
		t.Fatalf("endpoint got %d requests; want 3 failures + %d successes", len(log), events)
	}
	if gap := log[3].start.Sub(log[2].end); gap < 2*time.Second {
		t.Fatalf("the probe came %s after the third failure; the circuit should stay open for the 2s cool-down", gap)
	}
	if log[4].start.Before(log[3].end) {
		t.Fatal("a request arrived while the half-open probe was in flight")
	}
	if n := d.counter(t, "hookline_admission_refused_total", map[string]string{"reason": "circuit_open"}); n == 0 {
		t.Fatal("no attempt was skipped by the open circuit; the test proves nothing")
	}
	if o, c := d.counter(t, "hookline_breaker_opened_total", nil), d.counter(t, "hookline_breaker_closed_total", nil); o != 1 || c != 1 {
		t.Fatalf("breaker opened %g and closed %g times; want 1 and 1", o, c)
	}
	// Skipped attempts do not count: each event's attempt numbers are
	// exactly the requests the endpoint saw for it, and nothing was
	// dead-lettered although the schedule allows only 4 attempts.
	seen := map[string]int{}
	for _, r := range log {
		seen[r.id]++
	}
	var recs []*hooklinev1.Attempt
	eventually(t, 10*time.Second, "every attempt recorded", func() bool {
		recs = w.attempts(t, sub)
		return len(recs) == len(log)
	})
	maxAttempt := map[string]int{}
	for _, a := range recs {
		maxAttempt[a.GetEventId()] = max(maxAttempt[a.GetEventId()], int(a.GetAttempt()))
	}
	for id, n := range seen {
		if maxAttempt[id] != n {
			t.Errorf("event %s: %d requests but attempt number %d", id, n, maxAttempt[id])
		}
	}
	if dl := w.deadLetters(t, sub); len(dl) != 0 {
		t.Fatalf("%d dead letters; skipped attempts burnt the retry budget", len(dl))
	}
}

// A subscription failing for the whole window is disabled with a reason and
// a time, the platform hears of it through a hookline.subscription.disabled
// event, its pending delivery is dead-lettered, and re-enabling it makes it
// deliver again.
func TestAutoDisableTellsThePlatformAndIsReversible(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.startDeliverer(t, map[string]string{
		"HOOKLINE_AUTO_DISABLE_AFTER":           "2s",
		"HOOKLINE_BREAKER_FAILURES":             "1000",
		"HOOKLINE_DESTINATION_BREAKER_FAILURES": "0",
		"HOOKLINE_RETRY_SCHEDULE":               "0s,1s,1s,1s,1s,1s,1s,1s",
	})
	platform := newReceiver(t, nil)
	w.subscribe(t, platform.URL, func(s *hooklinev1.Subscription) { s.EventTypes = []string{health.DisabledEventType} })
	var healthy atomic.Bool
	endpoint := newReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ int64) {
		if !healthy.Load() {
			w.WriteHeader(500)
		}
	})
	sub := w.subscribe(t, endpoint.URL+"/in?token=do-not-leak", nil)
	ids := w.publish(t, "order.created", 1)

	var got *hooklinev1.Subscription
	eventually(t, 30*time.Second, "the subscription is disabled", func() bool {
		got, _, _ = w.store.Get(context.Background(), sub.GetId())
		return got.GetDisabled()
	})
	if got.GetDisabledReason() != wire.DisabledFailing || got.GetDisabledAt() == nil {
		t.Fatalf("disabled with reason %q at %v; want failing and a time", got.GetDisabledReason(), got.GetDisabledAt())
	}
	// The platform receives the event through its own subscription.
	eventually(t, 30*time.Second, "the platform receives the disabled event", func() bool { return platform.delivered() == 1 })
	evs := w.records(t, stream.Events, stream.EventSubject(tenant, health.DisabledEventType))
	if len(evs) != 1 {
		t.Fatalf("%d disabled events in EVENTS; want 1", len(evs))
	}
	var ev map[string]any
	if err := json.Unmarshal(evs[0].Data(), &ev); err != nil {
		t.Fatal(err)
	}
	if ev["subscription_id"] != sub.GetId() || ev["reason"] != "failing" || ev["url_host"] != endpoint.Listener.Addr().String() || ev["disabled_at"] == nil {
		t.Fatalf("disabled event %v", ev)
	}
	if _, leaked := ev["url"]; leaked || len(evs[0].Data()) > 300 {
		t.Fatalf("disabled event says more than it should: %s", evs[0].Data())
	}
	// The pending delivery is dead-lettered as the subscription's.
	eventually(t, 30*time.Second, "the pending delivery is dead-lettered", func() bool { return len(w.deadLetters(t, sub)) == 1 })
	dl := w.deadLetters(t, sub)[0]
	if r := header(dl, stream.HeaderReason); r != "subscription_disabled" || header(dl, stream.HeaderEventID) != ids[0] {
		t.Fatalf("dead letter reason %q event %q; want subscription_disabled for %s", r, header(dl, stream.HeaderEventID), ids[0])
	}

	// Re-enable (PATCH {"disabled": false}) with the endpoint fixed.
	healthy.Store(true)
	now := time.Now()
	re, rev, err := w.store.Update(context.Background(), sub.GetId(), func(s *hooklinev1.Subscription) error {
		s.Disabled, s.DisabledReason, s.DisabledAt, s.UpdatedAt = false, "", nil, timestamppb.New(now)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cache.Apply(context.Background(), rev, tenant, re.GetId(), re); err != nil {
		t.Fatal(err)
	}
	more := w.publish(t, "order.created", 1)
	eventually(t, 30*time.Second, "the re-enabled subscription delivers", func() bool { return endpoint.delivered() == 1 })
	if endpoint.requestLog()[len(endpoint.requestLog())-1].id != more[0] {
		t.Fatal("the re-enabled subscription delivered something else than the new event")
	}
	if again, _, _ := w.store.Get(context.Background(), sub.GetId()); again.GetDisabled() {
		t.Fatal("disabled again after re-enabling")
	}
}
