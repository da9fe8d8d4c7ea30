package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/dispatch"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/ordering"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// event is an EVENTS message handed to Handle directly, recording how it
// was settled (a stand-in for the consumer's delivery, not for the broker:
// tasks and dead letters go to a real JetStream).
type event struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
	// delivered is how often JetStream delivered the event (0: once).
	delivered uint64
	// progress counts InProgress calls.
	progress atomic.Int64

	mu      sync.Mutex
	settled []string
}

func (e *event) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{
		Sequence:  jetstream.SequencePair{Stream: e.seq, Consumer: e.seq},
		Timestamp: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), NumDelivered: max(e.delivered, 1), Stream: stream.Events,
	}, nil
}
func (e *event) Data() []byte                     { return e.data }
func (e *event) Headers() nats.Header             { return e.header }
func (e *event) Subject() string                  { return e.subject }
func (e *event) Reply() string                    { return "" }
func (e *event) Ack() error                       { return e.settle("ack") }
func (e *event) DoubleAck(context.Context) error  { return e.settle("double_ack") }
func (e *event) Nak() error                       { return e.settle("nak") }
func (e *event) NakWithDelay(time.Duration) error { return e.settle("nak") }
func (e *event) InProgress() error                { e.progress.Add(1); return nil }
func (e *event) Term() error                      { return e.settle("term") }
func (e *event) TermWithReason(string) error      { return e.settle("term") }
func (e *event) settle(how string) error {
	e.mu.Lock()
	e.settled = append(e.settled, how)
	e.mu.Unlock()
	return nil
}
func (e *event) outcome() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.settled...)
}

var _ jetstream.Msg = (*event)(nil)

// matcher answers from a fixed list, failing the first fail calls.
type matcher struct {
	subs []*hooklinev1.Subscription
	fail int
}

func (m *matcher) ForEventSince(_ context.Context, _ time.Time, _, eventType string) ([]*hooklinev1.Subscription, uint64, error) {
	if m.fail > 0 {
		m.fail--
		return nil, 0, errors.New("redis and kv both down")
	}
	if eventType == "" {
		return nil, 0, nil
	}
	return m.subs, 0, nil
}

func setup(t *testing.T, match dispatch.Matcher) (*dispatch.Dispatcher, jetstream.JetStream, *metrics.Metrics) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)
	return dispatch.New(dispatch.Deps{JS: js, Matcher: match, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(), Metrics: m}, dispatch.Options{}), js, m
}

func subjects(t *testing.T, js jetstream.JetStream, name string) map[string]uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(">"))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects
}

var two = []*hooklinev1.Subscription{{Id: "sub_a", Tenant: "acme"}, {Id: "sub_b", Tenant: "acme"}}

func TestFanOutIsIdempotentWhenRedone(t *testing.T) {
	t.Parallel()
	d, js, m := setup(t, &matcher{subs: two})
	ev := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_1"}}, data: []byte(`{}`), seq: 7}
	// Handled twice, as after a lost ack: one task per subscription all the same.
	d.Handle(context.Background(), ev)
	d.Handle(context.Background(), ev)
	got := subjects(t, js, stream.Deliveries)
	if len(got) != 2 || got["deliveries.acme.sub_a"] != 1 || got["deliveries.acme.sub_b"] != 1 {
		t.Fatalf("DELIVERIES subjects %v, want one task per subscription", got)
	}
	if o := ev.outcome(); len(o) != 2 || o[0] != "ack" || o[1] != "ack" {
		t.Fatalf("settled %v", o)
	}
	if n := testutil.ToFloat64(m.TasksPublished); n != 4 {
		t.Fatalf("tasks published %v (acks, duplicates included)", n)
	}
}

func TestTaskHeaders(t *testing.T) {
	t.Parallel()
	d, js, _ := setup(t, &matcher{subs: two[:1]})
	ev := &event{subject: "events.acme.order.created", data: []byte(`{"a":1}`), seq: 42} // raw: no headers
	d.Handle(context.Background(), ev)
	s, err := js.Stream(context.Background(), stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetLastMsgForSubject(context.Background(), "deliveries.acme.sub_a")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		stream.HeaderMsgID:          stream.TaskMsgID("evt_seq_42_1767225600000000000", "sub_a"),
		stream.HeaderEventID:        "evt_seq_42_1767225600000000000", // its sequence and stored time
		stream.HeaderTenant:         "acme",
		stream.HeaderEventType:      "order.created",
		stream.HeaderSubscriptionID: "sub_a",
		stream.HeaderOccurredAt:     "2026-01-01T00:00:00Z",
	}
	for k, v := range want {
		if got := msg.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if msg.Header.Get(stream.HeaderAttempt) != "" || string(msg.Data) != `{"a":1}` {
		t.Errorf("task %v %q", msg.Header, msg.Data)
	}
}

func TestLookupFailureNaksAndRetries(t *testing.T) {
	t.Parallel()
	d, js, _ := setup(t, &matcher{subs: two, fail: 1})
	ev := &event{subject: "events.acme.order.created", header: nats.Header{stream.HeaderMsgID: {"evt_1"}}, data: []byte(`{}`), seq: 1}
	d.Handle(context.Background(), ev)
	if o := ev.outcome(); len(o) != 1 || o[0] != "nak" {
		t.Fatalf("settled %v, want a nak", o)
	}
	if got := subjects(t, js, stream.Deliveries); len(got) != 0 {
		t.Fatalf("tasks published before the lookup succeeded: %v", got)
	}
	d.Handle(context.Background(), ev) // the redelivery
	if got := subjects(t, js, stream.Deliveries); len(got) != 2 {
		t.Fatalf("DELIVERIES subjects %v after the redelivery", got)
	}
}

func TestInvalidEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		subject     string
		id          string
		data        string
		deadLetters int
		problem     string
		key         []string
	}{
		{"not json", "events.acme.order.created", "evt_bad", `{"a":`, 2, "invalid_json", nil},
		{"empty body", "events.acme.order.created", "evt_bad", ``, 2, "invalid_json", nil},
		{"no type", "events.acme", "evt_bad", `{}`, 0, "no_type", nil},
		{"control characters in the id", "events.acme.order.created", "acme:evt\x1b[2J", `{}`, 2, "invalid_id", nil},
		{"a 9,000-byte id", "events.acme.order.created", strings.Repeat("a", 9000), `{}`, 2, "invalid_id", nil},
		{"control characters in the ordering key", "events.acme.order.created", "acme:evt_k", `{}`, 2, "invalid_ordering_key", []string{"a\x1b[2J"}},
		{"two ordering keys", "events.acme.order.created", "acme:evt_k", `{}`, 2, "invalid_ordering_key", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, js, m := setup(t, &matcher{subs: two})
			h := nats.Header{stream.HeaderMsgID: {tt.id}}
			if tt.key != nil {
				h[stream.HeaderOrderingKey] = tt.key
			}
			ev := &event{subject: tt.subject, header: h, data: []byte(tt.data), seq: 3}
			d.Handle(context.Background(), ev)
			d.Handle(context.Background(), ev) // redone: the dead letters dedup
			if o := ev.outcome(); len(o) != 2 || o[0] != "ack" {
				t.Fatalf("settled %v", o)
			}
			var n uint64
			for _, c := range subjects(t, js, stream.DeadLetter) {
				n += c
			}
			if n != uint64(tt.deadLetters) || len(subjects(t, js, stream.Deliveries)) != 0 {
				t.Fatalf("%d dead letters (want %d), tasks %v", n, tt.deadLetters, subjects(t, js, stream.Deliveries))
			}
			if got := testutil.ToFloat64(m.EventsInvalid.WithLabelValues(tt.problem)); got != 2 {
				t.Fatalf("invalid events counted %v", got)
			}
		})
	}
}

// The tasks of ordered subscriptions carry the key and the event's
// sequence and are in their key's line before they are published; the
// others carry neither.
func TestOrderedTasksAreRegisteredAndMarked(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)
	ord := ordering.New(redistest.Start(t).Client(t), 0)
	subs := []*hooklinev1.Subscription{{Id: "sub_a", Tenant: "acme", Ordered: true}, {Id: "sub_b", Tenant: "acme"}}
	d := dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{subs: subs}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(), Metrics: m}, dispatch.Options{Orderer: ord})
	for seq, key := range map[uint64]string{9: "order 42", 10: ""} {
		h := nats.Header{stream.HeaderMsgID: {"acme:evt_" + strconv.FormatUint(seq, 10)}}
		if key != "" {
			h.Set(stream.HeaderOrderingKey, key)
		}
		d.Handle(context.Background(), &event{subject: "events.acme.order.created", header: h, data: []byte(`{}`), seq: seq})
	}
	s, err := js.Stream(context.Background(), stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 4; seq++ {
		msg, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		id, sub := msg.Header.Get(stream.HeaderEventID), msg.Header.Get(stream.HeaderSubscriptionID)
		key, evSeq := msg.Header.Get(stream.HeaderOrderingKey), msg.Header.Get(stream.HeaderEventSeq)
		ordered := id == "evt_9" && sub == "sub_a"
		if ordered != (key == "order 42" && evSeq == "9") || (!ordered && (key != "" || evSeq != "")) {
			t.Errorf("task of %s for %s: key %q seq %q", id, sub, key, evSeq)
		}
	}
	st, err := ord.Check(context.Background(), ordering.Entry{Key: ordering.Key{Subscription: "sub_a", Value: "order 42"}, EventID: "evt_9", Seq: 9})
	if err != nil {
		t.Fatal(err)
	}
	if st.Verdict != ordering.Head || st.Lost {
		t.Fatalf("registered task: %+v, want head, not lost", st)
	}
}

// TestGroupCommitStoresEveryTaskOnce: with group commit, events consumed
// together have their tasks stored in atomic batches; every event is
// acknowledged only once its tasks are stored, each task exactly once, and
// Run returns after committing what the events in hand queued.
func TestGroupCommitStoresEveryTaskOnce(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)
	d := dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{subs: two}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(), Metrics: m},
		dispatch.Options{GroupCommit: &groupcommit.Config{}})
	const events = 200
	for i := range events {
		msg := nats.NewMsg("events.acme.order.created")
		msg.Data = []byte(`{}`)
		msg.Header.Set(stream.HeaderMsgID, "evt_"+strconv.Itoa(i))
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	runUntil(t, d, js, 30*time.Second, "events dispatched", func(info *jetstream.ConsumerInfo) bool { return info.AckFloor.Stream == events })
	got := subjects(t, js, stream.Deliveries)
	if got["deliveries.acme.sub_a"] != events || got["deliveries.acme.sub_b"] != events {
		t.Fatalf("DELIVERIES subjects %v, want %d tasks per subscription", got, events)
	}
	if n := testutil.ToFloat64(m.TasksPublished); n != 2*events {
		t.Fatalf("tasks published counter %v, want %d", n, 2*events)
	}
}

// Dispatch pulls a backlog 1,024 events at a time. Another
// tenant's event published behind a flood reaches the buffer, where it is
// served in turn, only once the flood ahead of it has been pulled, and
// each pull is a round trip to a server busy storing the flood's tasks:
// at a worker's worth per pull (128, asked again at half) a 5,000-event
// flood took about 80 of them, 100-250 ms before the event was served
// (docs/performance.md).
func TestDispatchPullsABacklogInFewRoundTrips(t *testing.T) {
	t.Parallel()
	d, js, _ := setup(t, &matcher{}) // no subscriptions: each event is acked at once
	nc := js.Conn()
	var pulls atomic.Int64
	sub, err := nc.Subscribe("$JS.API.CONSUMER.MSG.NEXT."+stream.Events+"."+stream.DispatchConsumer, func(*nats.Msg) { pulls.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	const backlog = 5000
	for i := range backlog {
		m := nats.NewMsg(stream.EventSubject("flood", "order.created"))
		m.Header.Set(stream.HeaderMsgID, stream.EventMsgID("flood", "evt_"+strconv.Itoa(i)))
		m.Data = []byte(`{}`)
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		t.Fatal("backlog not stored")
	}
	runUntil(t, d, js, time.Minute, "backlog dispatched", func(info *jetstream.ConsumerInfo) bool {
		return info.NumPending == 0 && info.NumAckPending == 0
	})
	if n := pulls.Load(); n > 20 {
		t.Fatalf("dispatch pulled a backlog of %d events in %d round trips", backlog, n)
	}
	t.Logf("%d events in %d pulls", backlog, pulls.Load())
}

// A pull asks for a bounded number of bytes, but never for fewer than the
// largest event: the server refuses a pull smaller than its next message,
// and the event would never be dispatched. (The least byte bound the
// configuration accepts, 1 MiB, an eighth of which is a pull.)
func TestDispatchPullsTheLargestEvent(t *testing.T) {
	t.Parallel()
	_, js, _ := setup(t, &matcher{})
	m := metrics.New(prometheus.NewRegistry(), wire.DeadLetterReasons(), sender.Classes)
	d := dispatch.New(dispatch.Deps{JS: js, Matcher: &matcher{}, DeadLetters: deadletter.NewPublisher(js), Log: zap.NewNop(), Metrics: m},
		dispatch.Options{BufferBytes: 1 << 20})
	ctx := context.Background()
	s, err := js.Stream(ctx, stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	big := nats.NewMsg(stream.EventSubject("acme", "order.created"))
	big.Header.Set(stream.HeaderMsgID, stream.EventMsgID("acme", "evt_big"))
	big.Data = make([]byte, int(info.Config.MaxMsgSize)-1024) // the largest EVENTS takes, less room for headers
	if _, err := js.PublishMsg(ctx, big); err != nil {
		t.Fatal(err)
	}
	runUntil(t, d, js, 20*time.Second, fmt.Sprintf("an event of %d bytes dispatched", len(big.Data)), func(info *jetstream.ConsumerInfo) bool {
		return info.AckFloor.Stream >= 1
	})
}

// runUntil runs d until the dispatch consumer's info satisfies done (or
// fails the test after timeout, saying what), then stops it.
func runUntil(t *testing.T, d *dispatch.Dispatcher, js jetstream.JetStream, timeout time.Duration, what string, done func(*jetstream.ConsumerInfo) bool) {
	t.Helper()
	ctx := context.Background()
	cons, err := js.Consumer(ctx, stream.Events, stream.DispatchConsumer)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- d.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(timeout)
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if done(info) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: ack floor %d, %d pending, %d unacknowledged after %s", what, info.AckFloor.Stream, info.NumPending, info.NumAckPending, timeout)
		}
		time.Sleep(10 * time.Millisecond) // polling the consumer's state: nothing to await
	}
}
