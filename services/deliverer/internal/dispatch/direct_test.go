package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/dispatch"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// failedFirst stands in for the deliver stage's first attempt from
// dispatch (deliver.Deliverer.Direct) for sub_a: the attempt failed, and
// its retry is scheduled exactly as Direct schedules it (a real schedule
// in DELIVERIES, keyed by the event); every other delivery goes through a
// task.
type failedFirst struct{ sched *settle.Scheduler }

func (f failedFirst) Direct(ctx context.Context, m *nats.Msg, sub *hooklinev1.Subscription) bool {
	if sub.GetId() != "sub_a" {
		return false
	}
	err := f.sched.Schedule(ctx, settle.Copy{
		Header: m.Header, Body: m.Data, Tenant: sub.GetTenant(), SubscriptionID: sub.GetId(),
		EventID: m.Header.Get(stream.HeaderEventID), Delay: time.Hour,
	})
	return err == nil
}

// A fan-out redone after a first attempt from dispatch failed and scheduled
// its retry (the event's ack lost in a crash, or another subscription's
// task refused by NATS) must not store a task for that delivery: the task
// would attempt it again at once, ignoring the retry's delay, and on
// failure start a second retry chain beside the scheduled one, so every
// later attempt, and the final delivery, would be sent twice.
func TestRedoneFanOutDoesNotDoubleADirectRetry(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{subs: two})
	d := dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{subs: two}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(),
		Metrics: metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)},
		dispatch.Options{Direct: failedFirst{sched: settle.NewScheduler(js)}})
	ev := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_1"}}, data: []byte(`{}`), seq: 7}
	d.Handle(context.Background(), ev)
	// Redelivered, as after a lost ack: the fan-out is redone.
	ev.delivered = 2
	d.Handle(context.Background(), ev)

	got := subjects(t, js, stream.Deliveries)
	retry := stream.DirectRetrySubject("evt_1", "sub_a")
	if got[retry] != 1 {
		t.Fatalf("DELIVERIES subjects %v, want the direct attempt's retry on %s", got, retry)
	}
	if n := got["deliveries.acme.sub_a"]; n != 0 {
		t.Fatalf("DELIVERIES subjects %v: the redone fan-out stored %d task(s) for sub_a, whose retry is already scheduled", got, n)
	}
	if got["deliveries.acme.sub_b"] != 1 {
		t.Fatalf("DELIVERIES subjects %v, want one task for sub_b", got)
	}
}

// settledAll stands in for first attempts from dispatch that settle every
// delivery (delivered, say).
type settledAll struct{}

func (settledAll) Direct(context.Context, *nats.Msg, *hooklinev1.Subscription) bool { return true }

// An event whose deliveries were made from dispatch is acknowledged with
// the server's confirmation (DoubleAck): its ack now stands for the tasks'
// acks, and a plain ack lost to a nats-server crash (2,344 of 20,000
// measured in the deliver stage, against 33 with DoubleAck) redoes the
// fan-out and sends those deliveries again. An event whose deliveries are
// all stored as tasks keeps the plain ack: its redo is deduplicated.
func TestEventWithDirectDeliveriesIsAckedWithConfirmation(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{subs: two})
	newDispatcher := func(direct dispatch.Direct) *dispatch.Dispatcher {
		return dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{subs: two}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(),
			Metrics: metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)}, dispatch.Options{Direct: direct})
	}
	direct := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_direct"}}, data: []byte(`{}`), seq: 8}
	newDispatcher(settledAll{}).Handle(context.Background(), direct)
	if o := direct.outcome(); len(o) != 1 || o[0] != "double_ack" {
		t.Fatalf("event delivered from dispatch settled %v, want [double_ack]", o)
	}
	if got := subjects(t, js, stream.Deliveries); len(got) != 0 {
		t.Fatalf("DELIVERIES subjects %v, want none (every delivery made from dispatch)", got)
	}
	tasks := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_tasks"}}, data: []byte(`{}`), seq: 9}
	newDispatcher(nil).Handle(context.Background(), tasks)
	if o := tasks.outcome(); len(o) != 1 || o[0] != "ack" {
		t.Fatalf("event fanned out as tasks settled %v, want [ack]", o)
	}
}

// hanging stands in for first attempts from dispatch to an endpoint that
// answers late: each returns once the event was told it is still in
// progress (or after a minute).
type hanging struct{ ev *event }

func (h hanging) Direct(context.Context, *nats.Msg, *hooklinev1.Subscription) bool {
	deadline := time.Now().Add(10 * time.Second)
	for h.ev.progress.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// An event is kept alive (InProgress every third of AckWait) while its
// first attempts from dispatch run, as the deliver stage keeps a task
// alive during its attempt: an attempt may take its subscription's whole
// timeout (up to AckWait − 5 s) after a second's wait in line, and its
// settling more; an event redelivered meanwhile is fanned out again, its
// task stored and attempted beside the attempt still running.
func TestEventKeptAliveDuringFirstAttempts(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{subs: two})
	ev := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_slow"}}, data: []byte(`{}`), seq: 10}
	d := dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{subs: two}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(),
		Metrics: metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)},
		dispatch.Options{Direct: hanging{ev: ev}, AckWait: 300 * time.Millisecond})
	start := time.Now()
	d.Handle(context.Background(), ev)
	if ev.progress.Load() == 0 {
		t.Fatalf("the event was not told it is in progress while its first attempts ran (%s)", time.Since(start))
	}
	if o := ev.outcome(); len(o) != 1 || o[0] != "double_ack" {
		t.Fatalf("event settled %v, want [double_ack]", o)
	}
}
