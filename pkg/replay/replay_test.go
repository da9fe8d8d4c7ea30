package replay_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
)

func deadLetterHeader() nats.Header {
	h := nats.Header{}
	h.Set(stream.HeaderEventID, "evt_1")
	h.Set(stream.HeaderTenant, "acme")
	h.Set(stream.HeaderSubscriptionID, "sub_1")
	h.Set(stream.HeaderEventType, "order.created")
	h.Set(stream.HeaderOccurredAt, "2026-11-28T09:00:00Z")
	h.Set(stream.HeaderAttempt, "8")
	h.Set(stream.HeaderLastStatus, "503")
	h.Set(stream.HeaderLastError, "HTTP 503")
	h.Set(stream.HeaderReason, "attempts_exhausted")
	h.Set(stream.HeaderFirstAttemptAt, "2026-11-28T08:00:00Z")
	h.Set(stream.HeaderDeadLetteredAt, "2026-11-28T09:00:00Z")
	h.Set(stream.HeaderReplay, "7") // a replay that failed again
	return h
}

func TestTaskContract(t *testing.T) {
	t.Parallel()
	task, err := replay.Task("deadletter.acme.sub_1", 42, deadLetterHeader(), []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if task.Subject != "deliveries.acme.sub_1" {
		t.Fatalf("subject %q", task.Subject)
	}
	want := map[string]string{
		stream.HeaderEventID:        "evt_1",
		stream.HeaderTenant:         "acme",
		stream.HeaderEventType:      "order.created",
		stream.HeaderSubscriptionID: "sub_1",
		stream.HeaderOccurredAt:     "2026-11-28T09:00:00Z",
		stream.HeaderReplay:         "42",
		stream.HeaderMsgID:          "evt_1:sub_1:replay:42",
	}
	for k, v := range want {
		if got := task.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{stream.HeaderAttempt, stream.HeaderLastStatus, stream.HeaderLastError, stream.HeaderReason, stream.HeaderFirstAttemptAt, stream.HeaderDeadLetteredAt} {
		if v := task.Header.Get(k); v != "" {
			t.Errorf("header %s = %q on a replayed task, want none (a fresh delivery)", k, v)
		}
	}
	if string(task.Data) != `{"a":1}` {
		t.Fatalf("body %q", task.Data)
	}
}

// A dead-lettered ordered event is replayed under its key and number.
func TestTaskKeepsOrdering(t *testing.T) {
	t.Parallel()
	h := deadLetterHeader()
	h.Set(stream.HeaderOrderingKey, "order 42")
	h.Set(stream.HeaderEventSeq, "77")
	h.Set(stream.HeaderOrderingSeq, "3")
	task, err := replay.Task("deadletter.acme.sub_1", 42, h, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{stream.HeaderOrderingKey: "order 42", stream.HeaderEventSeq: "77", stream.HeaderOrderingSeq: "3"} {
		if got := task.Header.Get(k); got != v {
			t.Errorf("header %s = %q, want %q", k, got, v)
		}
	}
}

// A replay joins the event's trace: the dead letter's traceparent and
// tracestate (lower-case keys, exactly) are kept on the task.
func TestTaskKeepsTraceContext(t *testing.T) {
	t.Parallel()
	h := deadLetterHeader()
	h[stream.HeaderTraceParent] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	h[stream.HeaderTraceState] = []string{"platform=1"}
	task, err := replay.Task("deadletter.acme.sub_1", 42, h, []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := task.Header[stream.HeaderTraceParent]; len(got) != 1 || got[0] != h[stream.HeaderTraceParent][0] {
		t.Fatalf("traceparent %v", got)
	}
	if got := task.Header[stream.HeaderTraceState]; len(got) != 1 || got[0] != "platform=1" {
		t.Fatalf("tracestate %v", got)
	}
}

// The subject, which only the deliverer publishes to, names the tenant and
// subscription; headers that disagree refuse the replay.
func TestTaskRefusesWhatTheSubjectDoesNotVouchFor(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		subject string
		header  func(nats.Header)
		want    string
	}{
		"another tenant in the header":       {"deadletter.acme.sub_1", func(h nats.Header) { h.Set(stream.HeaderTenant, "globex") }, "another tenant"},
		"another subscription in the header": {"deadletter.acme.sub_1", func(h nats.Header) { h.Set(stream.HeaderSubscriptionID, "sub_9") }, "another subscription"},
		"no event id":                        {"deadletter.acme.sub_1", func(h nats.Header) { h.Del(stream.HeaderEventID) }, stream.HeaderEventID},
		"a subject of another shape":         {"deadletter.acme.sub_1.x", func(nats.Header) {}, "is not deadletter.<tenant>.<subscription>"},
	} {
		t.Run(name, func(t *testing.T) {
			h := deadLetterHeader()
			tc.header(h)
			if _, err := replay.Task(tc.subject, 3, h, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
	// Headers missing: the subject alone is enough.
	h := nats.Header{}
	h.Set(stream.HeaderEventID, "evt_1")
	task, err := replay.Task("deadletter.acme.sub_1", 3, h, nil)
	if err != nil || task.Header.Get(stream.HeaderTenant) != "acme" || task.Header.Get(stream.HeaderSubscriptionID) != "sub_1" {
		t.Fatalf("task %+v, %v", task, err)
	}
}

// Ask and Serve over a real server: the task is the dead letter's body,
// a second request is deduplicated, a seq not stored is gone, and without
// a server the error says what to start.
func TestAskServe(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.Ask(ctx, nc, 1); !errors.Is(err, replay.ErrNoReplayer) {
		t.Fatalf("without a replay server: %v, want ErrNoReplayer", err)
	}

	snc, sjs := srv.Connect(t)
	answers := make(chan replay.Response, 10)
	if _, err := replay.Serve(snc, &replay.Replayer{JS: sjs}, 0, func(r replay.Response, _ error) { answers <- r }); err != nil {
		t.Fatal(err)
	}
	if err := snc.Flush(); err != nil {
		t.Fatal(err)
	}

	h := deadLetterHeader()
	h.Del(stream.HeaderReplay)
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "deadletter.acme.sub_1", Header: h, Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	res, err := replay.Ask(ctx, nc, ack.Sequence)
	if err != nil || res.Outcome != replay.Replayed || res.Duplicate || res.Subject != "deliveries.acme.sub_1" {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	if a := <-answers; a.TaskSeq != res.TaskSeq {
		t.Fatalf("served %+v, answered %+v", a, res)
	}
	again, err := replay.Ask(ctx, nc, ack.Sequence)
	if err != nil || !again.Duplicate || again.TaskSeq != res.TaskSeq {
		t.Fatalf("second replay: %+v, %v: want the same task, deduplicated", again, err)
	}
	tasks := natstest.Messages(t, js, stream.Deliveries)
	if len(tasks) != 1 || string(tasks[0].Data) != `{"n":1}` || tasks[0].Header.Get(stream.HeaderReplay) != "1" {
		t.Fatalf("DELIVERIES holds %d tasks: %+v", len(tasks), tasks)
	}

	if res, err := replay.Ask(ctx, nc, 999); err != nil || res.Outcome != replay.Gone {
		t.Fatalf("a seq not stored: %+v, %v; want gone", res, err)
	}
	if _, err := replay.Ask(ctx, nc, 0); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("seq 0: %v", err)
	}
}

// A replay of the same entry after DELIVERIES' duplicate window has passed
// publishes nothing: the replay mark, not the window, makes it
// exactly-once (issue 12: the README promised "however many times", the
// window kept it for 20 minutes). A DEADLETTER recreated from seq 1 does
// not inherit the marks.
func TestReplayIsExactlyOnceBeyondTheDuplicateWindow(t *testing.T) {
	t.Parallel()
	const window = time.Second
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := stream.Config{MemoryStorage: true, DuplicateWindow: window}
	if err := stream.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	r := &replay.Replayer{JS: js}
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "deadletter.acme.sub_1", Header: deadLetterHeader(), Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	first, err := r.Replay(ctx, ack.Sequence)
	if err != nil || first.Outcome != replay.Replayed || first.Duplicate || first.Warning != "" {
		t.Fatalf("first replay: %+v, %v", first, err)
	}
	waitDuplicateWindow(ctx, t, js)

	again, err := r.Replay(ctx, ack.Sequence)
	if err != nil || again.Outcome != replay.Replayed || !again.Duplicate || again.TaskSeq != first.TaskSeq || again.Subject != first.Subject {
		t.Fatalf("replay after the duplicate window: %+v, %v; want the first task (seq %d), nothing published", again, err, first.TaskSeq)
	}
	if n := tasksFor(t, js, "deliveries.acme.sub_1"); n != 1 {
		t.Fatalf("DELIVERIES holds %d tasks of the entry after two replays, want 1", n)
	}

	// DEADLETTER recreated: seq 1 is another letter, replayed.
	if err := js.DeleteStream(ctx, stream.DeadLetter); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	h := deadLetterHeader()
	h.Set(stream.HeaderEventID, "evt_2")
	ack2, err := js.PublishMsg(ctx, &nats.Msg{Subject: "deadletter.acme.sub_1", Header: h, Data: []byte(`{"n":2}`)})
	if err != nil {
		t.Fatal(err)
	}
	if ack2.Sequence != ack.Sequence {
		t.Fatalf("recreated DEADLETTER starts at %d, want %d", ack2.Sequence, ack.Sequence)
	}
	other, err := r.Replay(ctx, ack2.Sequence)
	if err != nil || other.Duplicate || other.TaskSeq == first.TaskSeq {
		t.Fatalf("another letter at the same seq: %+v, %v; want it replayed", other, err)
	}
}

// waitDuplicateWindow returns once DELIVERIES has forgotten the message ids
// stored so far: a probe id published now is accepted again.
func waitDuplicateWindow(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	probe := &nats.Msg{Subject: "deliveries.probe.window", Header: nats.Header{}}
	probe.Header.Set(nats.MsgIdHdr, "window-probe")
	if _, err := js.PublishMsg(ctx, probe); err != nil {
		t.Fatal(err)
	}
	for {
		ack, err := js.PublishMsg(ctx, probe)
		if err != nil {
			t.Fatal(err)
		}
		if !ack.Duplicate {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the duplicate window never passed")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func tasksFor(t *testing.T, js jetstream.JetStream, subject string) int {
	t.Helper()
	n := 0
	for _, m := range natstest.Messages(t, js, stream.Deliveries) {
		if m.Subject == subject {
			n++
		}
	}
	return n
}

// Trace hears each replay before its task is published — the headers it
// adds (a span's traceparent) travel with the task — and then its outcome.
func TestReplayTraceHookSeesTheTaskAndTheOutcome(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	_, js := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	var heard []string
	r := &replay.Replayer{JS: js, Trace: func(ctx context.Context, seq uint64, task *nats.Msg) (context.Context, func(replay.Response, error)) {
		heard = append(heard, fmt.Sprintf("seq %d event %s", seq, task.Header.Get(stream.HeaderEventID)))
		task.Header[stream.HeaderTraceParent] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		return ctx, func(res replay.Response, err error) { heard = append(heard, fmt.Sprintf("%s %v", res.Outcome, err)) }
	}}
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: "deadletter.acme.sub_1", Header: deadLetterHeader(), Data: []byte(`{"n":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := r.Replay(ctx, ack.Sequence); err != nil || res.Outcome != replay.Replayed {
		t.Fatalf("replay: %+v, %v", res, err)
	}
	want := []string{fmt.Sprintf("seq %d event evt_1", ack.Sequence), "replayed <nil>"}
	if !slices.Equal(heard, want) {
		t.Fatalf("the hook heard %q, want %q", heard, want)
	}
	ds, err := js.Stream(ctx, stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	task, err := ds.GetLastMsgForSubject(ctx, "deliveries.acme.sub_1")
	if err != nil {
		t.Fatal(err)
	}
	if tp := task.Header.Get(stream.HeaderTraceParent); tp != "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" {
		t.Fatalf("the replayed task's traceparent %q, want the hook's", tp)
	}
}
