package health_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// byPair counts the 2xx answers of a receiver by subscription and event
// (every subscription to one URL receives the same event ids).
type byPair struct {
	mu sync.Mutex
	n  map[string]int
}

func (p *byPair) record(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n[r.Header.Get("Hookline-Subscription-Id")+"/"+r.Header.Get("webhook-id")]++
}

func (p *byPair) distinct() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.n)
}

// The red team's amplification: 300 subscriptions to one URL turn 2 events
// into 600 POSTs. With HOOKLINE_DESTINATION_MAX_IN_FLIGHT=5 and two
// replicas of 16 workers, the receiver never has more than 5 of them in
// flight at once, counted at the receiver, and receives all 600.
func TestDestinationCapHoldsForThreeHundredSubscriptionsAcrossReplicas(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	const limit, subs, events = 5, 300, 2
	overrides := map[string]string{"HOOKLINE_DESTINATION_MAX_IN_FLIGHT": strconv.Itoa(limit)}
	w.startDeliverer(t, overrides)
	w.startDeliverer(t, overrides)
	got := &byPair{n: map[string]int{}}
	rc := newReceiver(t, func(_ http.ResponseWriter, r *http.Request, _ int64) {
		time.Sleep(10 * time.Millisecond) // a receiver that takes a moment, so that requests overlap
		got.record(r)
	})
	for range subs {
		w.subscribe(t, rc.URL+"/hook", nil)
	}
	w.publish(t, "order.created", events)
	eventually(t, 2*time.Minute, "every subscription receives every event", func() bool { return got.distinct() == subs*events })
	if m := rc.maxInFlight.Load(); m > limit {
		t.Fatalf("the receiver had %d requests in flight at once; want at most the destination cap %d", m, limit)
	}
}

// A hundred subscriptions to a host that refuses connections, each with a
// schedule of 8 attempts: the host's circuit opens after
// HOOKLINE_DESTINATION_BREAKER_FAILURES (20) failures, whichever
// subscriptions they belong to, so the host sees fewer attempts than there
// are subscriptions (not 100 × 8, nor 100 × the 5 that would open each
// subscription's own circuit). When the host comes back, a probe closes
// the circuit and every subscription receives its event.
func TestDestinationCircuitSparesADeadHostAndRecovers(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	d := w.startDeliverer(t, map[string]string{
		"HOOKLINE_BREAKER_COOLDOWN": "2s",
		"HOOKLINE_RETRY_SCHEDULE":   "0s,1s,1s,1s,1s,1s,1s,1s",
	})
	dead := closedURL(t)
	const subs = 100
	for range subs {
		w.subscribe(t, dead, nil)
	}
	w.publish(t, "order.created", 1)
	attempts := func() float64 { return d.counter(t, "hookline_attempts_total", nil) }

	// Two cool-downs (2 s, then 4 s after a failed probe): the window in
	// which each subscription alone would spend its first five attempts.
	window := time.Now().Add(7 * time.Second)
	for time.Now().Before(window) {
		if n := attempts(); n >= subs {
			t.Fatalf("%v attempts to the dead host within %s; want fewer than its %d subscriptions", n, 7*time.Second-time.Until(window), subs)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronising
	}
	if n := d.counter(t, "hookline_destination_breaker_opened_total", nil); n < 2 {
		t.Fatalf("the destination circuit opened %v times; want at least twice (opened, and reopened by a failed probe)", n)
	}
	if n := d.counter(t, "hookline_admission_refused_total", map[string]string{"reason": "destination_open"}); n == 0 {
		t.Fatal("no admission refused with reason destination_open")
	}
	t.Logf("%v attempts to the dead host in %s", attempts(), 7*time.Second)

	// The host comes back on the same port.
	u, err := url.Parse(dead)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	got := &byPair{n: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got.record(r) }))
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	eventually(t, time.Minute, "every subscription receives its event once the host is back", func() bool { return got.distinct() == subs })
	if n := d.counter(t, "hookline_destination_breaker_closed_total", nil); n < 1 {
		t.Fatalf("the destination circuit closed %v times; want at least once", n)
	}
}
