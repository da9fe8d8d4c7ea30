package service_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Once an endpoint is measured fast, a delivery's first attempt is made
// from dispatch and no task is stored: every event is delivered exactly
// once, DELIVERIES holds no more messages than the tasks dispatch
// published, and those plus the direct attempts account for every
// delivery. A failed direct attempt leaves the retry a failed task would
// (attempt 2 after the schedule's delay, under a schedule keyed by the
// event), and a permanent failure the dead letter, counted as one
// attempt. Default settings throughout.
func TestFirstAttemptFromDispatch(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	const events = 30
	// Request numbers that fail: the 12th with a 500 (retried), the last
	// (the last event's, after that retry) with a 410 Gone: a permanent
	// failure, dead-lettered at once (endpoint health then disables the
	// subscription, so it comes last).
	rcv := newReceiver(t, func(n int) int {
		switch n {
		case 12:
			return http.StatusInternalServerError
		case events + 1:
			return http.StatusGone
		}
		return http.StatusOK
	})
	e.subscribe(t, rcv.URL(), "order.created")
	// One event at a time, each awaited: the endpoint is measured after
	// the first, and nothing ever waits in its line.
	for i := 1; i <= events; i++ {
		e.publish(t, "order.created", fmt.Sprintf("evt_direct_%02d", i), `{"n":1}`)
		want := i
		if i > 12 {
			want++ // the 500 and its retry
		}
		eventually(t, await, fmt.Sprintf("event %d attempted", i), func() bool { return rcv.count() >= want })
	}
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	m := e.svc.Metrics
	direct := func(result string) float64 { return testutil.ToFloat64(m.Direct.WithLabelValues(result)) }
	tasks := testutil.ToFloat64(m.TasksPublished)
	made := direct("delivered") + direct("retry_scheduled") + direct("dead_lettered")
	if direct("delivered") == 0 || direct("retry_scheduled") != 1 || direct("dead_lettered") != 1 {
		t.Fatalf("direct attempts: delivered %g, retry_scheduled %g, dead_lettered %g; want some, 1 and 1",
			direct("delivered"), direct("retry_scheduled"), direct("dead_lettered"))
	}
	if tasks+made != events {
		t.Fatalf("%g tasks published + %g direct attempts = %g; want one per event (%d)", tasks, made, tasks+made, events)
	}
	// Stored in DELIVERIES: the tasks, plus the one retry's schedule.
	s, err := e.js.Stream(context.Background(), stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stored := float64(info.State.LastSeq); stored > tasks+2 {
		t.Fatalf("DELIVERIES stored %g messages for %g tasks and one retry", stored, tasks)
	}

	// Every event delivered or dead-lettered once; the 500 retried as
	// attempt 2 of the same event.
	byID := map[string][]string{}
	for _, q := range rcv.requests() {
		id := q.header.Get("webhook-id")
		byID[id] = append(byID[id], q.header.Get(wire.RequestHeaderAttempt))
	}
	if len(byID) != events {
		t.Fatalf("%d distinct events received, want %d", len(byID), events)
	}
	retried := ""
	for id, attempts := range byID {
		switch {
		case len(attempts) == 2:
			if retried != "" || strings.Join(attempts, ",") != "1,2" {
				t.Fatalf("%s attempts %v (another retried: %q); want one event attempted as 1 then 2", id, attempts, retried)
			}
			retried = id
		case len(attempts) != 1 || attempts[0] != "1":
			t.Fatalf("%s attempts %v, want [1]", id, attempts)
		}
	}
	dl := e.deadLetters(t)
	if len(dl) != 1 {
		t.Fatalf("%d dead letters, want 1 (the 410)", len(dl))
	}
	h := dl[0].Header
	if h.Get(stream.HeaderReason) != wire.DeadLetterGone || h.Get(stream.HeaderAttempt) != "1" || h.Get(stream.HeaderLastStatus) != strconv.Itoa(http.StatusGone) {
		t.Fatalf("dead letter reason %q attempts %q status %q; want %q after 1 attempt with 410",
			h.Get(stream.HeaderReason), h.Get(stream.HeaderAttempt), h.Get(stream.HeaderLastStatus), wire.DeadLetterGone)
	}
}

// A direct attempt that ends while a task of its subscription waits in
// line hands its slot on to that task, whose attempt runs on a goroutine
// of its own: it must not inherit the direct attempt's deadline, or it is
// cut off after its POST was sent and the event is sent twice.
func TestSlotHandedOnByADirectAttemptOutlivesIt(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var (
		mu  sync.Mutex
		got = map[string]int{}
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		time.Sleep(100 * time.Millisecond) // under the 250 ms that makes an endpoint fast
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(srv.Close)
	count := func(id string) int { mu.Lock(); defer mu.Unlock(); return got[id] }
	// One attempt at a time, so that the second event waits in line for
	// the first's slot.
	sub, _ := e.subscribe(t, srv.URL, "order.created")
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.MaxInFlight = 1 })
	e.publish(t, "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return count("evt_warm") == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	const n = 6
	for i := range n {
		e.publish(t, "order.created", fmt.Sprintf("evt_line_%d", i), `{}`)
	}
	eventually(t, await, "every event delivered", func() bool {
		for i := range n {
			if count(fmt.Sprintf("evt_line_%d", i)) == 0 {
				return false
			}
		}
		return true
	})
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if d := testutil.ToFloat64(e.svc.Metrics.Direct.WithLabelValues("delivered")); d == 0 {
		t.Fatal("no event was delivered directly: the test proves nothing")
	}
	if p := testutil.ToFloat64(e.svc.Metrics.AdmissionParked); p == 0 {
		t.Fatal("no task waited in line: the test proves nothing")
	}
	m := e.svc.Metrics
	if r, d := testutil.ToFloat64(m.Attempts.WithLabelValues("retry")), testutil.ToFloat64(m.TasksDeferred); r != 0 || d != 0 {
		t.Errorf("%g attempts failed and %g tasks were deferred, want none: a handed-on attempt was cut off", r, d)
	}
	for i := range n {
		if c := count(fmt.Sprintf("evt_line_%d", i)); c != 1 {
			t.Errorf("evt_line_%d received %d times, want once", i, c)
		}
	}
}

// A burst to a subscription at its in-flight cap waits in its line for
// slots from dispatch rather than storing a task per delivery: every event
// delivered once, and most without a task.
func TestBurstWaitsInLineInsteadOfStoringTasks(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	rcv := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, rcv.URL(), "order.created")
	// A small cap, so that the burst finds the subscription's slots taken.
	// The harness's 4 dispatch workers can all wait in a line of twice the
	// cap; with the default 128 most of a burst to a cap of 2 finds the
	// line full and stores its task, as designed.
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.MaxInFlight = 2 })
	e.publish(t, "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return rcv.count() == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	tasksBefore := testutil.ToFloat64(e.svc.Metrics.TasksPublished)

	const n = 200
	for i := range n {
		e.publish(t, "order.created", fmt.Sprintf("evt_burst_%03d", i), `{}`)
	}
	eventually(t, await, "every event delivered", func() bool { return rcv.count() >= n+1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if ids := rcv.ids(); len(ids) != n+1 {
		t.Fatalf("%d requests for %d events", len(ids), n+1)
	}
	seen := map[string]bool{}
	for _, id := range rcv.ids() {
		if seen[id] {
			t.Fatalf("%s received twice", id)
		}
		seen[id] = true
	}
	tasks := testutil.ToFloat64(e.svc.Metrics.TasksPublished) - tasksBefore
	if tasks > n/10 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = testutil.ToFloat64(e.svc.Metrics.Direct.WithLabelValues(r))
		}
		t.Fatalf("%g of %d deliveries stored a task (direct attempts: %v); want most delivered from dispatch after a wait in line", tasks, n, why)
	}
	if p := testutil.ToFloat64(e.svc.Metrics.AdmissionParked); p == 0 {
		t.Fatal("nothing waited in line: the test proves nothing")
	}
}

// A fast endpoint that starts hanging holds every dispatch worker that
// makes a first attempt to it until its timeout. The direct slots must
// leave workers that fan out, whatever HOOKLINE_DISPATCH_WORKERS is (4
// here, below the default HOOKLINE_DIRECT_MAX of 64): otherwise every
// other subscription's events wait for the hanging endpoint's timeouts.
// Another subscription's event is delivered before any hanging attempt
// ends.
func TestHangingEndpointLeavesDispatchWorkersToFanOut(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	srv := newHangingEndpoint(t)
	e.subscribe(t, srv.URL, "order.created")
	e.publish(t, "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return srv.warm.Load() == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	// How many attempts had ended, failed, when the other event arrived
	// (every hanging attempt ends failed: a timeout).
	m := e.svc.Metrics
	failed := func() float64 {
		return testutil.ToFloat64(m.Attempts.WithLabelValues("retry")) + testutil.ToFloat64(m.Attempts.WithLabelValues("dead_letter"))
	}
	var (
		once     sync.Once
		failedAt float64
	)
	other := newReceiver(t, func(int) int {
		once.Do(func() { failedAt = failed() })
		return http.StatusOK
	})
	e.subscribe(t, other.URL(), "invoice.paid")
	srv.hang.Store(true)
	for i := range 8 {
		e.publish(t, "order.created", fmt.Sprintf("evt_hang_%d", i), `{}`)
	}
	eventually(t, await, "attempts hanging", func() bool { return srv.hanging.Load() >= 4 })
	e.publish(t, "invoice.paid", "evt_other", `{}`)
	eventually(t, await, "the other subscription's event delivered", func() bool { return other.count() == 1 })
	once.Do(func() {})
	if failedAt != 0 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = testutil.ToFloat64(m.Direct.WithLabelValues(r))
		}
		t.Fatalf("the other subscription's event was delivered only after %g hanging attempts timed out (direct attempts: %v): dispatch had no worker left to fan it out", failedAt, why)
	}
}

// In a burst, an event that finds every direct token taken while they
// turn over waits briefly for one instead of storing its task: tasks
// stored that way would fill the subscription's line past what a direct
// attempt may wait behind, and the rest of the burst would go through
// tasks again.
func TestBurstWaitsForADirectTokenWhileTheyTurnOver(t *testing.T) {
	t.Parallel()
	// More dispatch workers than direct tokens, as by default (128 and
	// 64), at a size a test can saturate.
	e := start(t, map[string]string{"HOOKLINE_DISPATCH_WORKERS": "16", "HOOKLINE_DIRECT_MAX": "4"})
	rcv := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, rcv.URL(), "order.created")
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.MaxInFlight = 4 })
	e.publish(t, "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return rcv.count() == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	tasksBefore := testutil.ToFloat64(e.svc.Metrics.TasksPublished)

	const n = 400
	for i := range n {
		e.publish(t, "order.created", fmt.Sprintf("evt_tok_%03d", i), `{}`)
	}
	eventually(t, await, "every event delivered", func() bool { return rcv.count() >= n+1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if got := len(rcv.ids()); got != n+1 {
		t.Fatalf("%d requests for %d events", got, n+1)
	}
	tasks := testutil.ToFloat64(e.svc.Metrics.TasksPublished) - tasksBefore
	if tasks > n/5 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = testutil.ToFloat64(e.svc.Metrics.Direct.WithLabelValues(r))
		}
		t.Fatalf("%g of %d deliveries stored a task (direct attempts: %v); want most from dispatch", tasks, n, why)
	}
}

// A tenant whose endpoint was measured fast and starts hanging holds at
// most its share of the direct slots (HOOKLINE_TENANT_WORKER_SHARE of
// HOOKLINE_DIRECT_MAX): another tenant's first attempt is still made from
// dispatch, not stored as a task to wait behind the hanging tenant's in
// DELIVERIES. 16 dispatch workers and 8 direct slots so that a test can
// take them all; the share is the default 0.75 (6 slots).
func TestHangingTenantLeavesOthersTheirDirectSlots(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_DISPATCH_WORKERS": "16", "HOOKLINE_DIRECT_MAX": "8"})
	srv := newHangingEndpoint(t)
	e.subscribeAs(t, "flood", srv.URL, "order.created")
	e.publishAs(t, "flood", "order.created", "evt_warm_flood", `{}`)
	eventually(t, await, "the flood's endpoint measured", func() bool { return srv.warm.Load() == 1 })
	other := newReceiver(t, always(http.StatusOK))
	e.subscribeAs(t, "victim", other.URL(), "invoice.paid")
	e.publishAs(t, "victim", "invoice.paid", "evt_warm_victim", `{}`)
	eventually(t, await, "the victim's endpoint measured", func() bool { return other.count() == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	m := e.svc.Metrics
	direct := func(r string) float64 { return testutil.ToFloat64(m.Direct.WithLabelValues(r)) }
	srv.hang.Store(true)
	for i := range 12 {
		e.publishAs(t, "flood", "order.created", fmt.Sprintf("evt_hang_%02d", i), `{}`)
	}
	eventually(t, await, "the flood's share of direct slots taken", func() bool { return direct("tenant_busy") >= 1 })
	delivered := direct("delivered")
	tasks := testutil.ToFloat64(m.TasksPublished)
	e.publishAs(t, "victim", "invoice.paid", "evt_victim", `{}`)
	eventually(t, await, "the victim's event delivered", func() bool { return other.count() == 2 })
	if d := direct("delivered") - delivered; d != 1 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = direct(r)
		}
		t.Fatalf("the victim's event was not delivered from dispatch (%g tasks stored meanwhile; direct attempts: %v)",
			testutil.ToFloat64(m.TasksPublished)-tasks, why)
	}
}

// A burst that finds its subscription's line long with tasks (stored
// while the endpoint was briefly slow, or by another replica's fan-out)
// still waits in that line from dispatch when the line moves fast,
// instead of storing a task per event: each task stored joins the same
// line and keeps it long, so the whole burst would go through tasks (the
// bench measured a default subscription's burst collapsing from 4,500 to
// 1,245 deliveries/s that way, 1.07 tasks stored per delivery). The
// seeded tasks stand for that line; dispatch's and the deliver stage's
// workers are the defaults (the harness's 4 dispatch workers could not
// fan out faster than a line drains).
func TestBurstBehindALongLineOfTasksStillGoesDirect(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_DISPATCH_WORKERS": "128", "HOOKLINE_DELIVER_WORKERS": "64"})
	rcv := newReceiver(t, always(http.StatusOK))
	sub, _ := e.subscribe(t, rcv.URL(), "order.created")
	e.publish(t, "order.created", "evt_warm", `{}`)
	eventually(t, await, "the endpoint measured", func() bool { return rcv.count() == 1 })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })

	const seeded, n = 300, 300
	ctx := context.Background()
	var acks []jetstream.PubAckFuture
	for i := range seeded {
		id := fmt.Sprintf("evt_seed_%03d", i)
		m := &nats.Msg{Subject: stream.DeliverySubject(tenant, sub.GetId()), Data: []byte(`{}`),
			Header: task.NewHeader(id, tenant, "order.created", time.Now().UTC().Format(time.RFC3339Nano), sub.GetId())}
		f, err := e.js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for i := range n {
		m := nats.NewMsg(stream.EventSubject(tenant, "order.created"))
		m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, fmt.Sprintf("evt_burst_%03d", i)))
		m.Header.Set(stream.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano))
		m.Data = []byte(`{}`)
		f, err := e.js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			t.Fatal(err)
		case <-ctx.Done():
		}
	}
	eventually(t, await, "every event delivered", func() bool { return rcv.count() >= 1+seeded+n })
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if got := len(rcv.ids()); got != 1+seeded+n {
		t.Fatalf("%d requests for %d deliveries", got, 1+seeded+n)
	}
	m := e.svc.Metrics
	if p := testutil.ToFloat64(m.AdmissionParked); p < seeded/2 {
		t.Fatalf("%g tasks waited in line; want most of the %d seeded: the test proves nothing", p, seeded)
	}
	// Tasks dispatch stored: the warm-up's probe is direct, so all are
	// the burst's.
	if tasks := testutil.ToFloat64(m.TasksPublished); tasks > n/10 {
		why := map[string]float64{}
		for _, r := range metrics.DirectResults {
			why[r] = testutil.ToFloat64(m.Direct.WithLabelValues(r))
		}
		t.Fatalf("%g of the burst's %d deliveries stored a task (direct attempts: %v); want most delivered from dispatch after a wait in the line", tasks, n, why)
	}
}

// hangingEndpoint answers at once (counted in warm) until hang is set;
// then it holds each request (counted in hanging) until Release, or until
// the request ends (the attempt's timeout). Every request that ends is
// counted in answered. Released when the test ends, before it closes.
type hangingEndpoint struct {
	*httptest.Server
	hang          atomic.Bool
	hanging, warm atomic.Int64
	answered      atomic.Int64
	release       chan struct{}
	releaseOnce   sync.Once
}

func newHangingEndpoint(t *testing.T) *hangingEndpoint {
	h := &hangingEndpoint{release: make(chan struct{})}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer h.answered.Add(1)
		if !h.hang.Load() {
			h.warm.Add(1)
			return
		}
		h.hanging.Add(1)
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(h.Close)
	t.Cleanup(h.Release) // before h.Close (cleanups run last first)
	return h
}

// Release lets every held request, and every later one, answer.
func (h *hangingEndpoint) Release() { h.releaseOnce.Do(func() { close(h.release) }) }
