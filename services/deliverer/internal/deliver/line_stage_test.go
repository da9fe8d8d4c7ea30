package deliver_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// capped is an Admission with an in-process cap of one attempt in flight;
// its slot passes on a success, like endpoint health's.
type capped struct {
	mu       sync.Mutex
	inFlight int
	admitted int // slots given by Admit
	refused  int
}

func (c *capped) Admit(context.Context, *hooklinev1.Subscription, int) (deliver.Slot, deliver.Refusal, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inFlight >= 1 {
		c.refused++
		return nil, deliver.Refusal{Reason: deliver.RefusedFull}, nil
	}
	c.inFlight++
	c.admitted++
	return &cappedSlot{c: c}, deliver.Refusal{}, nil
}

type cappedSlot struct{ c *capped }

func (s *cappedSlot) Release(sender.Result) { s.Return() }
func (s *cappedSlot) Pass(r sender.Result) bool {
	if r.OK() {
		return true
	}
	s.Return()
	return false
}
func (s *cappedSlot) Return() {
	s.c.mu.Lock()
	s.c.inFlight--
	s.c.mu.Unlock()
}

// orderedEndpoint records the webhook-ids in the order they arrive and
// the most requests it had at once.
type orderedEndpoint struct {
	srv     *httptest.Server
	mu      sync.Mutex
	ids     []string
	now     atomic.Int32
	highest atomic.Int32
	// gate, when set before any request, holds the first request until
	// it is closed.
	gate  chan struct{}
	first atomic.Bool
}

func newOrderedEndpoint(t *testing.T, hold time.Duration) *orderedEndpoint {
	t.Helper()
	e := &orderedEndpoint{}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := e.now.Add(1)
		for h := e.highest.Load(); n > h && !e.highest.CompareAndSwap(h, n); h = e.highest.Load() {
		}
		e.mu.Lock()
		e.ids = append(e.ids, r.Header.Get("webhook-id"))
		e.mu.Unlock()
		if e.gate != nil && e.first.CompareAndSwap(false, true) {
			<-e.gate
		}
		time.Sleep(hold) // a slow endpoint (what is simulated, not a synchronisation)
		e.now.Add(-1)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *orderedEndpoint) received() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.ids...)
}

// Tasks over the cap wait in line and are attempted in arrival order, one
// at a time, each handed the slot of the attempt before it: admission is
// asked once, nothing is deferred, no attempt is spent on waiting.
func TestTasksOverTheCapWaitInLineInOrder(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	adm := &capped{}
	r.opts.Admission = adm
	r.opts.Policy.Schedule = []time.Duration{0} // one attempt: a spent one would dead-letter
	// Three workers, of which one tenant may hold two (the stage keeps one
	// for the others): one makes the first attempt while the other takes
	// the rest, alone, so that they reach the line in stream order (with
	// more, workers race to it).
	r.opts.Workers = 3
	ep := newOrderedEndpoint(t, 20*time.Millisecond)
	// The first attempt is held until every other task waits in line:
	// ended sooner (a loaded machine), its worker would take tasks from
	// the consumer beside the other one, and they would race to the line.
	ep.gate = make(chan struct{})
	sub := r.subscribe(t, ep.srv.URL)
	const tasks = 8
	var want []string
	for i := range tasks {
		id := fmt.Sprintf("evt_line_%d", i)
		r.task(t, sub, id)
		want = append(want, id)
	}
	r.run(t)
	eventually(t, "the other tasks waiting in line", func() bool { return testutil.ToFloat64(r.m.AdmissionParkedNow) == tasks-1 })
	close(ep.gate)
	eventually(t, "every task delivered and settled", func() bool { return len(ep.received()) == tasks && r.settled(t) })

	// The two workers race for the first two tasks; every task after the
	// first attempted waited in line and comes out in the order it joined.
	got := ep.received()
	rest := slices.DeleteFunc(slices.Clone(want), func(id string) bool { return id == got[0] })
	if fmt.Sprint(got[1:]) != fmt.Sprint(rest) {
		t.Fatalf("received %v; want %s then, in arrival order, %v", got, got[0], rest)
	}
	if h := ep.highest.Load(); h != 1 {
		t.Fatalf("%d requests at once; the cap is 1", h)
	}
	adm.mu.Lock()
	admitted, inFlight := adm.admitted, adm.inFlight
	adm.mu.Unlock()
	if admitted != 1 || inFlight != 0 {
		t.Fatalf("admission gave %d slots (%d still out); want 1, passed from task to task, then given back", admitted, inFlight)
	}
	if n := testutil.ToFloat64(r.m.TasksDeferred); n != 0 {
		t.Fatalf("%v tasks deferred; want 0", n)
	}
	if n := testutil.ToFloat64(r.m.AdmissionParked); n != tasks-1 {
		t.Fatalf("%v tasks waited in line; want %d", n, tasks-1)
	}
}

// A line whose subscription is disabled while it waits is dead-lettered
// task by task, and the slot is given back.
func TestLineOfADisabledSubscriptionIsDeadLettered(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	adm := &capped{}
	r.opts.Admission = adm
	ep := newOrderedEndpoint(t, 300*time.Millisecond)
	sub := r.subscribe(t, ep.srv.URL)
	for i := range 4 {
		r.task(t, sub, fmt.Sprintf("evt_dis_%d", i))
	}
	r.run(t)
	eventually(t, "the first attempt under way and three in line", func() bool {
		return len(ep.received()) == 1 && testutil.ToFloat64(r.m.AdmissionParked) == 3
	})
	updated, rev, err := r.store.Update(context.Background(), sub.GetId(), func(s *hooklinev1.Subscription) error {
		s.Disabled = true
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cache.Apply(context.Background(), rev, tenant, sub.GetId(), updated); err != nil {
		t.Fatal(err)
	}
	eventually(t, "three dead letters and nothing left", func() bool {
		return r.streamMsgs(t, stream.DeadLetter) == 3 && r.settled(t)
	})
	if n := len(ep.received()); n != 1 {
		t.Fatalf("the endpoint got %d requests; want only the one before the disable", n)
	}
	adm.mu.Lock()
	defer adm.mu.Unlock()
	if adm.inFlight != 0 {
		t.Fatalf("%d slots still out", adm.inFlight)
	}
}

// At shutdown the tasks still in line are deferred (a new message each,
// nothing spent), not abandoned: a second stage delivers them.
func TestShutdownDefersTheLine(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 30 * time.Second})
	adm := &capped{}
	r.opts.Admission = adm
	r.opts.Policy.Schedule = []time.Duration{0}
	ep := newOrderedEndpoint(t, 200*time.Millisecond)
	sub := r.subscribe(t, ep.srv.URL)
	const tasks = 5
	for i := range tasks {
		r.task(t, sub, fmt.Sprintf("evt_stop_%d", i))
	}
	cancel, done := r.start()
	eventually(t, "one attempt under way and the rest in line", func() bool {
		return len(ep.received()) == 1 && testutil.ToFloat64(r.m.AdmissionParked) == tasks-1
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(r.m.AdmissionDeferred.WithLabelValues("shutdown")); n != tasks-1 {
		t.Fatalf("%v tasks deferred at shutdown; want %d", n, tasks-1)
	}
	// Another stage (a restarted replica) delivers them, within AckWait:
	// they are new messages, not redeliveries of unacked ones.
	r.run(t)
	eventually(t, "every task delivered once", func() bool { return len(ep.received()) == tasks && r.settled(t) })
	seen := map[string]int{}
	for _, id := range ep.received() {
		seen[id]++
	}
	if len(seen) != tasks {
		t.Fatalf("received %v; want each of %d tasks once", ep.received(), tasks)
	}
}

// When the consumer goes away by itself (deleted), Run returns its error
// instead of waiting forever for the line poller (which used to stop only
// with Run's context).
func TestRunReturnsWhenTheConsumerIsDeleted(t *testing.T) {
	t.Parallel()
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	d := deliver.New(r.deps, r.opts)
	done := make(chan error, 1)
	go func() { done <- d.Run(context.Background()) }()
	eventually(t, "the consumer in use", func() bool {
		c, err := r.js.Consumer(context.Background(), stream.Deliveries, stream.DeliverConsumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting > 0
	})
	if err := r.js.DeleteConsumer(context.Background(), stream.Deliveries, stream.DeliverConsumer); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its consumer was deleted")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its consumer was deleted")
	}
}
