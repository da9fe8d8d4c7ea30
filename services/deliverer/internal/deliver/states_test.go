package deliver_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/staterec"
	"github.com/hookline/hookline/services/deliverer/internal/task"
)

// statesRig writes delivery states as the service does without group
// commit: batched by the window EVENTS stored the event in.
func statesRig(t *testing.T) (*rig, *deliverystate.Writer) {
	t.Helper()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	w := deliverystate.NewBatchWriter(r.js, deliverystate.BatchConfig{})
	r.deps.Recorder = staterec.Attempts(r.deps.Recorder, w, zap.NewNop())
	r.deps.DeadLetters = staterec.DeadLettersTo(r.deps.DeadLetters, w, zap.NewNop())
	return r, w
}

// taskStoredAt publishes a task as dispatch does, with the time EVENTS
// stored its event.
func (r *rig) taskStoredAt(t *testing.T, sub *hooklinev1.Subscription, eventID string, storedAt time.Time) {
	t.Helper()
	h := task.NewHeader(eventID, tenant, "order.created", task.FormatTime(storedAt), sub.GetId())
	task.Set(h, stream.HeaderAcceptedAt, task.FormatTime(storedAt))
	m := &nats.Msg{Subject: stream.DeliverySubject(tenant, sub.GetId()), Header: h, Data: []byte(`{}`)}
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(stream.TaskMsgID(eventID, sub.GetId()))); err != nil {
		t.Fatal(err)
	}
}

// stateOf is what the delivery API reads for (eventID, sub): "" for none.
func stateOf(t *testing.T, js jetstream.JetStream, eventID, sub string, storedAt time.Time) string {
	t.Helper()
	states, err := deliverystate.Read(context.Background(), js, tenant, eventID, storedAt)
	if err != nil {
		t.Fatal(err)
	}
	return states[sub].State
}

// An attempt's outcome is stored in the batch of its event's window (one
// message for the states of events stored close together), not alone.
func TestDeliveryStateRidesInItsEventsWindow(t *testing.T) {
	t.Parallel()
	r, _ := statesRig(t)
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	storedAt := time.Now().UTC()
	r.taskStoredAt(t, sub, "evt_batched", storedAt)
	eventually(t, "the delivery", func() bool { return ep.n.Load() == 1 && r.settled(t) })
	eventually(t, "its delivered state", func() bool {
		return stateOf(t, r.js, "evt_batched", sub.GetId(), storedAt) == deliverystate.Delivered
	})
	if got := stateOf(t, r.js, "evt_batched", sub.GetId(), time.Time{}); got != "" {
		t.Fatalf("the state was stored alone too (%q): want it only in its window's batch", got)
	}
}

// A dead-lettered delivery's state rides in its window's batch too: the
// dead letter carries the task's header.
func TestDeadLetteredStateRidesInItsEventsWindow(t *testing.T) {
	t.Parallel()
	r, _ := statesRig(t)
	r.run(t)
	ep := endpoint(t, 200, 0)
	sub := r.subscribe(t, ep.srv.URL)
	sub.Keys = []*hooklinev1.SigningKey{{Secret: "enc:opaque"}} // cannot sign: dead-lettered unattempted
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
	storedAt := time.Now().UTC()
	r.taskStoredAt(t, sub, "evt_unsignable", storedAt)
	eventually(t, "its dead_lettered state", func() bool {
		return stateOf(t, r.js, "evt_unsignable", sub.GetId(), storedAt) == deliverystate.DeadLettered
	})
	if got := stateOf(t, r.js, "evt_unsignable", sub.GetId(), time.Time{}); got != "" {
		t.Fatalf("the state was stored alone too (%q): want it only in its window's batch", got)
	}
}
