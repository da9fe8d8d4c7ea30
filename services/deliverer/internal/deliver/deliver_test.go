package deliver_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/attempt"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/deferrals"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/deliver/delivertest"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// cacheLookup is the Redis cache as the stage's lookup (the service puts
// the memo in front of it).
type cacheLookup struct{ c *subscription.Cache }

func (l cacheLookup) Get(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error) {
	return l.c.GetAt(ctx, tenant, id, need)
}

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const tenant = "acme"

// rig runs the deliver stage alone on real NATS and Redis; tests replace
// collaborators to inject faults.
type rig struct {
	js      jetstream.JetStream
	store   *subscription.Store
	cache   *subscription.Cache
	rdb     *redis.Client
	m       *metrics.Metrics
	deps    deliver.Deps
	opts    deliver.Options
	sc      stream.Config
	nextSub int
}

func newRig(t *testing.T, sc stream.Config) *rig {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	ctx := context.Background()
	sc.MemoryStorage = true
	if err := stream.Ensure(ctx, js, sc); err != nil {
		t.Fatal(err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	cache := subscription.NewCache(rdb, store)
	m := metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)
	rec, err := attempt.NewRecorder(nc, attempt.Config{Log: zap.NewNop(), Failed: m.AttemptRecordsFailed})
	if err != nil {
		t.Fatal(err)
	}
	snd := sender.New(sender.Options{
		Timeout: 5 * time.Second, MaxResponseBytes: 1024, UserAgent: "Hookline/test",
		DialControl: ssrf.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}.Control,
	})
	t.Cleanup(snd.Close)
	return &rig{
		js: js, store: store, cache: cache, rdb: rdb, m: m, sc: sc,
		deps: deliver.Deps{
			JS: js, Lookup: cacheLookup{cache}, Sender: snd, Scheduler: settle.NewScheduler(js),
			DeadLetters: deadletter.NewPublisher(js), Recorder: rec, Log: zap.NewNop(), Metrics: m,
		},
		opts: deliver.Options{
			Workers: 4, AckWait: sc.AckWait, MaxRedeliveries: 5, RetryDelay: time.Second,
			Admission: delivertest.AdmitAll{},
			Policy:    settle.Policy{Schedule: []time.Duration{0, time.Second, time.Second}, MaxRetryAfter: time.Hour},
		},
	}
}

// start runs the stage until cancel is called; done says what Run
// returned.
func (r *rig) start() (cancel func(), done <-chan error) {
	d := deliver.New(r.deps, r.opts)
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan error, 1)
	go func() { ch <- d.Run(ctx) }()
	return cancel, ch
}

// run starts the stage until the test ends.
func (r *rig) run(t *testing.T) {
	t.Helper()
	cancel, done := r.start()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func (r *rig) subscribe(t *testing.T, url string) *hooklinev1.Subscription {
	t.Helper()
	return r.subscribeAs(t, tenant, url)
}

// subscribeAs creates a subscription of tenant to every event type.
func (r *rig) subscribeAs(t *testing.T, tenant, url string) *hooklinev1.Subscription {
	t.Helper()
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	r.nextSub++
	sub := &hooklinev1.Subscription{
		Id: fmt.Sprintf("sub_%d", r.nextSub), Tenant: tenant, Url: url, EventTypes: []string{">"},
		Keys: []*hooklinev1.SigningKey{{Secret: secret}},
	}
	rev, err := r.store.Create(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cache.Apply(context.Background(), rev, tenant, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	return sub
}

// task publishes a delivery task of sub's tenant as dispatch does.
func (r *rig) task(t *testing.T, sub *hooklinev1.Subscription, eventID string) {
	t.Helper()
	m := &nats.Msg{
		Subject: stream.DeliverySubject(sub.GetTenant(), sub.GetId()),
		Header:  task.NewHeader(eventID, sub.GetTenant(), "order.created", time.Now().UTC().Format(time.RFC3339Nano), sub.GetId()),
		Data:    []byte(`{}`),
	}
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(stream.TaskMsgID(eventID, sub.GetId()))); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	s, err := r.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func (r *rig) deadLetter(t *testing.T, seq uint64) *jetstream.RawStreamMsg {
	t.Helper()
	s, err := r.js.Stream(context.Background(), stream.DeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.GetMsg(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// settled reports that the deliver consumer has nothing pending or in
// flight and DELIVERIES is empty.
func (r *rig) settled(t *testing.T) bool {
	t.Helper()
	cons, err := r.js.Consumer(context.Background(), stream.Deliveries, stream.DeliverConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending == 0 && info.NumAckPending == 0 && r.streamMsgs(t, stream.Deliveries) == 0
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type counter struct {
	srv *httptest.Server
	n   atomic.Int32
}

func endpoint(t *testing.T, status int, hold time.Duration) *counter {
	t.Helper()
	c := &counter{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.n.Add(1)
		if hold > 0 {
			// A slow endpoint (what is simulated, not a synchronisation).
			select {
			case <-time.After(hold):
			case <-r.Context().Done():
			}
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

// crashingDeadLetters publishes the first dead letter and then reports a
// failure, as a deliverer that dies between the publish and the Term: the
// task is not terminated and JetStream redelivers it.
type crashingDeadLetters struct {
	next  deliver.DeadLetters
	calls atomic.Int32
}

func (c *crashingDeadLetters) Publish(ctx context.Context, l deadletter.Letter) (bool, error) {
	dup, err := c.next.Publish(ctx, l)
	if c.calls.Add(1) == 1 && err == nil {
		return false, errors.New("crash after the dead-letter publish")
	}
	return dup, err
}

func TestCrashBetweenDeadLetterAndTermLeavesOneDeadLetter(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	dl := &crashingDeadLetters{next: r.deps.DeadLetters}
	r.deps.DeadLetters = dl
	r.opts.Policy.Schedule = []time.Duration{0} // one attempt
	r.run(t)
	ep := endpoint(t, 500, 0)
	sub := r.subscribe(t, ep.srv.URL)
	r.task(t, sub, "evt_crash")
	eventually(t, "the task settled after its redelivery", func() bool { return dl.calls.Load() >= 2 && r.settled(t) })
	if n := r.streamMsgs(t, stream.DeadLetter); n != 1 {
		t.Fatalf("%d dead letters, want exactly 1", n)
	}
	if got := r.deadLetter(t, 1).Header.Get(stream.HeaderReason); got != wire.DeadLetterAttemptsExhausted {
		t.Fatalf("reason %q", got)
	}
	// The "crashed" pass did not count it (nor would a dead process); the
	// deduplicated second pass must not count it either.
	if n := testutil.ToFloat64(r.m.DeadLetters.WithLabelValues(wire.DeadLetterAttemptsExhausted)); n != 0 {
		t.Fatalf("duplicate dead letter counted (%v)", n)
	}
	if n := ep.n.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2 (the redelivered pass attempts again)", n)
	}
}

// failingScheduler cannot publish schedules, so every retry falls back to
// NakWithDelay and JetStream redelivers the same message.
type failingScheduler struct{ calls atomic.Int32 }

func (f *failingScheduler) Schedule(context.Context, settle.Copy) error {
	f.calls.Add(1)
	return errors.New("nats unavailable")
}

func TestRedeliveriesAreBounded(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	sched := &failingScheduler{}
	r.deps.Scheduler = sched
	r.opts.MaxRedeliveries = 2
	r.opts.Policy.Schedule = []time.Duration{0, time.Second, time.Second, time.Second, time.Second}
	r.run(t)
	ep := endpoint(t, 503, 0)
	sub := r.subscribe(t, ep.srv.URL)
	r.task(t, sub, "evt_redelivered")
	eventually(t, "a dead letter", func() bool { return r.streamMsgs(t, stream.DeadLetter) == 1 })
	eventually(t, "settled", func() bool { return r.settled(t) })
	h := r.deadLetter(t, 1).Header
	if got := h.Get(stream.HeaderReason); got != wire.DeadLetterRedeliveryExhausted {
		t.Fatalf("reason %q, want %s", got, wire.DeadLetterRedeliveryExhausted)
	}
	// Delivered three times: two attempts, then the third delivery exceeds
	// the bound and is dead-lettered without an attempt.
	if n := ep.n.Load(); n != 2 || sched.calls.Load() != 2 {
		t.Fatalf("%d attempts and %d schedules, want 2 and 2", n, sched.calls.Load())
	}
	if n := testutil.ToFloat64(r.m.ScheduleFailures); n != 2 {
		t.Fatalf("schedule failures %v", n)
	}
}

// deferOnce defers the first admission, then admits and records results.
type deferOnce struct {
	// reason of the refusal (default circuit_open)
	reason  string
	mu      sync.Mutex
	calls   int
	results []sender.Result
}

func (a *deferOnce) Admit(context.Context, *hooklinev1.Subscription, int) (deliver.Slot, deliver.Refusal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	if a.calls == 1 {
		return nil, deliver.Refusal{Reason: cmp.Or(a.reason, deliver.RefusedCircuitOpen), Wait: time.Second}, nil
	}
	return recordingSlot{a}, deliver.Refusal{}, nil
}

// recordingSlot records the results it is given.
type recordingSlot struct{ a *deferOnce }

func (s recordingSlot) Release(r sender.Result) {
	s.a.mu.Lock()
	s.a.results = append(s.a.results, r)
	s.a.mu.Unlock()
}

func (s recordingSlot) Pass(r sender.Result) bool { s.Release(r); return false }
func (s recordingSlot) Return()                   {}

func TestAdmissionDeferDoesNotConsumeAnAttempt(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	adm := &deferOnce{}
	r.opts.Admission = adm
	// A 1s wait longer than MaxWait: the task is deferred, not parked.
	r.opts.MaxWait = 500 * time.Millisecond
	r.opts.Policy.Schedule = []time.Duration{0} // a single attempt: a consumed one would dead-letter
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	r.task(t, sub, "evt_deferred")
	eventually(t, "delivery after the deferral", func() bool { return ep.n.Load() == 1 && r.settled(t) })
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if adm.calls != 2 || len(adm.results) != 1 || adm.results[0].Status != 200 {
		t.Fatalf("admission calls %d, results %+v", adm.calls, adm.results)
	}
	if n := testutil.ToFloat64(r.m.TasksDeferred); n != 1 {
		t.Fatalf("deferred %v", n)
	}
	if n := r.streamMsgs(t, stream.DeadLetter); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// A deferral is counted for its subscription and reason, in Redis, where
// the producer's stats read it.
func TestDeferralIsCountedPerSubscription(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.opts.Admission = &deferOnce{reason: deliver.RefusedRate}
	r.opts.MaxWait = 500 * time.Millisecond // the 1s wait defers
	counts := deferrals.New(r.rdb, prometheus.NewRegistry())
	r.deps.Deferrals = counts
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	r.task(t, sub, "evt_rate_limited")
	eventually(t, "delivery after the deferral", func() bool { return ep.n.Load() == 1 && r.settled(t) })
	ctx := context.Background()
	if err := counts.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	got, err := endpointhealth.ReadDeferrals(ctx, r.rdb, sub.GetId(), now.Add(-time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	if got.Total != 1 || got.ByReason[deliver.RefusedRate] != 1 {
		t.Fatalf("deferrals of %s: %+v, want one rate_limited", sub.GetId(), got)
	}
}

// A task that waited in its subscription's line leaves an "admission
// wait" span in the event's trace (the traceparent its task carries).
func TestAdmissionWaitIsASpanOfTheEventsTrace(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.opts.Admission = &deferOnce{reason: deliver.RefusedFull} // a 1s wait, under MaxWait: the task waits in line
	spans := tracetest.NewSpanRecorder()
	r.deps.Tracing = tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	h := task.NewHeader("evt_waited", tenant, "order.created", time.Now().UTC().Format(time.RFC3339Nano), sub.GetId())
	h[tracing.HeaderTraceParent] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if _, err := r.js.PublishMsg(context.Background(), &nats.Msg{Subject: stream.DeliverySubject(tenant, sub.GetId()), Header: h, Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delivery after the wait", func() bool { return ep.n.Load() == 1 && r.settled(t) })
	var waits []sdktrace.ReadOnlySpan
	for _, s := range spans.Ended() {
		if s.Name() == "admission wait" {
			waits = append(waits, s)
		}
	}
	if len(waits) != 1 {
		t.Fatalf("%d admission wait spans, want 1", len(waits))
	}
	w := waits[0]
	if w.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || w.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		!w.EndTime().After(w.StartTime()) {
		t.Fatalf("admission wait span: trace %s parent %s from %s to %s", w.SpanContext().TraceID(), w.Parent().SpanID(), w.StartTime(), w.EndTime())
	}
	if n := testutil.ToFloat64(r.m.TasksDeferred); n != 0 {
		t.Fatalf("%v tasks deferred: the task was to wait in line", n)
	}
}

func TestLongAttemptIsKeptAliveWithInProgress(t *testing.T) {
	t.Parallel()
	// AckWait well below the endpoint's answer time: without InProgress the
	// task would be redelivered and POSTed twice.
	r := newRig(t, stream.Config{AckWait: time.Second})
	r.run(t)
	ep := endpoint(t, 200, 3*time.Second)
	sub := r.subscribe(t, ep.srv.URL)
	r.task(t, sub, "evt_slow")
	eventually(t, "the slow delivery acked", func() bool {
		return testutil.ToFloat64(r.m.Attempts.WithLabelValues("success")) == 1 && r.settled(t)
	})
	if n := ep.n.Load(); n != 1 {
		t.Fatalf("endpoint got %d requests, want 1", n)
	}
}

func TestSigningFailureIsPermanent(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	sub.Keys = []*hooklinev1.SigningKey{{Secret: "enc:opaque"}}
	_, rev, err := r.store.Update(context.Background(), sub.GetId(), func(s *hooklinev1.Subscription) error {
		s.Keys = sub.Keys
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cache.Apply(context.Background(), rev, tenant, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	r.task(t, sub, "evt_unsignable")
	eventually(t, "a dead letter", func() bool { return r.streamMsgs(t, stream.DeadLetter) == 1 && r.settled(t) })
	h := r.deadLetter(t, 1).Header
	if h.Get(stream.HeaderReason) != wire.DeadLetterPermanentFailure || h.Get(stream.HeaderAttempt) != "0" {
		t.Fatalf("dead letter %v", h)
	}
	if ep.n.Load() != 0 {
		t.Fatal("an unsigned request was sent")
	}
}
