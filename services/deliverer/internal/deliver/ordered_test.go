package deliver_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/ordering"
	"github.com/hookline/hookline/services/deliverer/internal/task"
)

// receipt is one request an ordered endpoint received.
type receipt struct {
	id, key string
	number  uint64
	status  int
}

// keyedEndpoint answers each request with what fail says and records
// every request (failed ones too) in arrival order.
type keyedEndpoint struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []receipt
	fail func(id string, attempt int) bool
	seen map[string]int
}

func newKeyedEndpoint(t *testing.T, fail func(id string, attempt int) bool) *keyedEndpoint {
	t.Helper()
	e := &keyedEndpoint{fail: fail, seen: map[string]int{}}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("webhook-id")
		n, _ := strconv.ParseUint(r.Header.Get("Hookline-Ordering-Sequence"), 10, 64)
		e.mu.Lock()
		e.seen[id]++
		status := http.StatusOK
		if e.fail(id, e.seen[id]) {
			status = http.StatusInternalServerError
		}
		e.got = append(e.got, receipt{id: id, key: r.Header.Get("Hookline-Ordering-Key"), number: n, status: status})
		e.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *keyedEndpoint) receipts() []receipt {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]receipt(nil), e.got...)
}

func (e *keyedEndpoint) delivered() int {
	n := 0
	for _, r := range e.receipts() {
		if r.status == http.StatusOK {
			n++
		}
	}
	return n
}

// orderedTask publishes the task of event seq for key, as dispatch does
// for an ordered subscription: registered in its key's line first.
func (r *rig) orderedTask(t *testing.T, sub *hooklinev1.Subscription, key, id string, seq uint64) {
	t.Helper()
	ord := ordering.New(r.rdb, 0)
	e := ordering.Entry{Key: ordering.Key{Subscription: sub.GetId(), Value: key}, EventID: id, Seq: seq}
	if err := ord.Register(context.Background(), []ordering.Entry{e}); err != nil {
		t.Fatal(err)
	}
	h := task.NewHeader(id, tenant, "order.created", time.Now().UTC().Format(time.RFC3339Nano), sub.GetId())
	task.Set(h, stream.HeaderOrderingKey, key)
	task.Set(h, stream.HeaderEventSeq, strconv.FormatUint(seq, 10))
	m := &nats.Msg{Subject: stream.DeliverySubject(tenant, sub.GetId()), Header: h, Data: []byte(`{}`)}
	if _, err := r.js.PublishMsg(context.Background(), m, jetstream.WithMsgID(stream.TaskMsgID(id, sub.GetId()))); err != nil {
		t.Fatal(err)
	}
}

// Tasks published out of order (dispatch is parallel), a flaky endpoint,
// several keys: per key, requests arrive in sequence order, one at a time,
// each key numbered 1, 2, 3, … with a failed head re-sent under its number
// before anything later of its key.
func TestOrderedKeysArriveInSequenceOrderDespiteFailures(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.deps.Ordering = ordering.New(r.rdb, 0)
	r.opts.Workers = 8
	r.opts.Policy.Schedule = []time.Duration{0, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	r.opts.Policy.Jitter = 0
	rng := rand.New(rand.NewPCG(1, 2))
	var mu sync.Mutex
	ep := newKeyedEndpoint(t, func(string, int) bool {
		mu.Lock()
		defer mu.Unlock()
		return rng.IntN(4) == 0 // one request in four fails
	})
	sub := r.subscribe(t, ep.srv.URL)
	const keys, perKey = 4, 6
	type ev struct {
		key, id string
		seq     uint64
	}
	var evs []ev
	for i := range keys * perKey {
		evs = append(evs, ev{key: fmt.Sprintf("k%d", i%keys), id: fmt.Sprintf("evt_%02d", i), seq: uint64(i + 1)})
	}
	// Reversed: the last of each key reaches the stage first.
	for i := len(evs) - 1; i >= 0; i-- {
		r.orderedTask(t, sub, evs[i].key, evs[i].id, evs[i].seq)
	}
	r.run(t)
	eventually(t, "every task delivered and settled", func() bool { return ep.delivered() == len(evs) && r.settled(t) })

	want := map[string][]string{}
	for _, e := range evs {
		want[e.key] = append(want[e.key], e.id)
	}
	got := map[string][]receipt{}
	for _, rc := range ep.receipts() {
		got[rc.key] = append(got[rc.key], rc)
	}
	for key, ids := range want {
		next := 0 // index in ids of the event the key is at
		for _, rc := range got[key] {
			if next >= len(ids) || rc.id != ids[next] {
				t.Fatalf("key %s: got %s while at %d of %v (receipts %+v)", key, rc.id, next, ids, got[key])
			}
			if rc.number != uint64(next+1) {
				t.Fatalf("key %s: %s numbered %d, want %d", key, rc.id, rc.number, next+1)
			}
			if rc.status == http.StatusOK {
				next++
			}
		}
		if next != len(ids) {
			t.Fatalf("key %s: %d of %d delivered", key, next, len(ids))
		}
	}
}

// A head that never succeeds is dead-lettered under its number; its key
// moves on, and the receiver sees the gap.
func TestOrderedDeadLetteredHeadLetsItsKeyMoveOn(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.deps.Ordering = ordering.New(r.rdb, 0)
	r.opts.Policy.Schedule = []time.Duration{0, 50 * time.Millisecond}
	r.opts.Policy.Jitter = 0
	ep := newKeyedEndpoint(t, func(id string, _ int) bool { return id == "evt_1" })
	sub := r.subscribe(t, ep.srv.URL)
	for i := 1; i <= 3; i++ {
		r.orderedTask(t, sub, "k", fmt.Sprintf("evt_%d", i), uint64(i))
	}
	dlqBefore := r.streamMsgs(t, stream.DeadLetter)
	r.run(t)
	eventually(t, "evt_2 and evt_3 delivered", func() bool { return ep.delivered() == 2 && r.settled(t) })
	var order []string
	for _, rc := range ep.receipts() {
		order = append(order, fmt.Sprintf("%s#%d/%d", rc.id, rc.number, rc.status))
	}
	wantOrder := []string{"evt_1#1/500", "evt_1#1/500", "evt_2#2/200", "evt_3#3/200"}
	if fmt.Sprint(order) != fmt.Sprint(wantOrder) {
		t.Fatalf("receipts %v, want %v", order, wantOrder)
	}
	if n := r.streamMsgs(t, stream.DeadLetter); n != dlqBefore+1 {
		t.Fatalf("%d dead letters, want 1", n-dlqBefore)
	}
	dl := r.deadLetter(t, dlqBefore+1)
	if dl.Header.Get(stream.HeaderEventID) != "evt_1" || dl.Header.Get(stream.HeaderOrderingSeq) != "1" ||
		dl.Header.Get(stream.HeaderOrderingKey) != "k" {
		t.Fatalf("dead letter headers %v", dl.Header)
	}
}

// A task redelivered after its key moved on (its ack was lost) is acked
// without being sent again: it would arrive after later events of its key.
func TestOrderedTaskOfAFinishedLineIsNotResent(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	ord := ordering.New(r.rdb, 0)
	r.deps.Ordering = ord
	ep := newKeyedEndpoint(t, func(string, int) bool { return false })
	sub := r.subscribe(t, ep.srv.URL)
	r.orderedTask(t, sub, "k", "evt_1", 1)
	r.orderedTask(t, sub, "k", "evt_2", 2)
	// evt_1 was delivered and its line moved on, but its ack was lost.
	k := ordering.Key{Subscription: sub.GetId(), Value: "k"}
	if _, err := ord.Check(context.Background(), ordering.Entry{Key: k, EventID: "evt_1", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := ord.Finish(context.Background(), ordering.Entry{Key: k, EventID: "evt_1", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	r.run(t)
	eventually(t, "evt_2 delivered, both settled", func() bool { return ep.delivered() == 1 && r.settled(t) })
	got := ep.receipts()
	if len(got) != 1 || got[0].id != "evt_2" || got[0].number != 2 {
		t.Fatalf("receipts %+v, want evt_2 alone, numbered 2", got)
	}
}

// A head that waits for a slot while another copy of it finishes (a
// redelivery, a retry whose ack was lost) is not sent once its key moved
// on: it asks once more just before its request goes out.
func TestStaleHeadCopyIsNotSentAfterItsKeyMovedOn(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	ord := ordering.New(r.rdb, 0)
	r.deps.Ordering = ord
	r.opts.Admission = &capped{} // one attempt in flight in all
	release, arrived := make(chan struct{}), make(chan struct{}, 1)
	blocker := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		arrived <- struct{}{}
		<-release
	}))
	t.Cleanup(blocker.Close)
	ep := newKeyedEndpoint(t, func(string, int) bool { return false })
	sub := r.subscribe(t, ep.srv.URL)
	slow := r.subscribe(t, blocker.URL)
	r.run(t)
	// A hanging attempt holds the only slot.
	r.task(t, slow, "evt_hang")
	<-arrived
	// evt_a becomes its key's head and waits for the slot.
	r.orderedTask(t, sub, "k", "evt_a", 1)
	eventually(t, "evt_a waiting for a slot", func() bool { return testutil.ToFloat64(r.m.AdmissionParked) == 1 })
	// Another copy of evt_a delivered it meanwhile.
	a := ordering.Entry{Key: ordering.Key{Subscription: sub.GetId(), Value: "k"}, EventID: "evt_a", Seq: 1}
	if err := ord.Finish(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	r.orderedTask(t, sub, "k", "evt_b", 2)
	close(release)
	eventually(t, "evt_b delivered, all settled", func() bool { return ep.delivered() == 1 && r.settled(t) })
	got := ep.receipts()
	if len(got) != 1 || got[0].id != "evt_b" {
		t.Fatalf("receipts %+v, want evt_b alone (evt_a was delivered by its other copy)", got)
	}
	if n := testutil.ToFloat64(r.m.OrderingSkipped); n != 1 {
		t.Fatalf("ordering skipped %v, want 1", n)
	}
}
