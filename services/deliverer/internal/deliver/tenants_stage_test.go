package deliver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deliver"
	"github.com/hookline/hookline/services/deliverer/internal/deliver/delivertest"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gatedAdmission holds every admission of one tenant's tasks until its
// gate opens, so that each of them keeps the worker that took it, as a
// handler slowed by a busy server does (a flood's deferrals coming due,
// each storing its scheduled copy). Every other tenant is admitted at once.
type gatedAdmission struct {
	tenant string
	gate   chan struct{}
	held   atomic.Int32
}

func (g *gatedAdmission) Admit(ctx context.Context, sub *hooklinev1.Subscription, limit int) (deliver.Slot, deliver.Refusal, error) {
	if sub.GetTenant() == g.tenant {
		g.held.Add(1)
		select {
		case <-g.gate:
		case <-ctx.Done():
			return nil, deliver.Refusal{}, ctx.Err()
		}
	}
	return delivertest.AdmitAll{}.Admit(ctx, sub, limit)
}

// A task of another tenant, stored behind a backlog of one tenant's tasks
// that each hold a worker, is delivered while they still hold them: the
// stage serves tenants in turn and keeps a worker for the others. Taken
// in stream order, every worker held one of the backlog's tasks and the
// other tenant's task waited for the backlog.
func TestAnotherTenantsTaskIsNotHeldBehindATenantsBacklog(t *testing.T) {
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	adm := &gatedAdmission{tenant: tenant, gate: make(chan struct{})}
	var open sync.Once
	release := func() { open.Do(func() { close(adm.gate) }) }
	r.opts.Admission = adm
	busy := endpoint(t, 200, 0)
	other := endpoint(t, 200, 0)
	subA := r.subscribeAs(t, tenant, busy.srv.URL)
	subB := r.subscribeAs(t, "globex", other.srv.URL)
	// Fewer than the stage fetches ahead (a worker's worth and
	// QueuePerWorker more per worker): the backlog fits in its buffer.
	const backlog = 10
	for i := range backlog {
		r.task(t, subA, fmt.Sprintf("evt_busy_%d", i))
	}
	r.task(t, subB, "evt_other")
	r.run(t)
	t.Cleanup(release) // before the stage stops (cleanups run last first)

	eventually(t, "the other tenant's task delivered while the backlog holds its workers", func() bool {
		return other.n.Load() == 1
	})
	if n := busy.n.Load(); n != 0 {
		t.Fatalf("busy tenant's endpoint got %d requests with its admissions held; want 0", n)
	}
	// One tenant's tasks hold all of the 4 workers but one.
	eventually(t, "the busy tenant's tasks in every worker it may have", func() bool { return adm.held.Load() >= 3 })
	if held := adm.held.Load(); held != 3 {
		t.Fatalf("busy tenant's tasks holding workers = %d; want 3 of 4", held)
	}
	release()
	eventually(t, "the backlog delivered and every task settled", func() bool {
		return busy.n.Load() == backlog && r.settled(t)
	})
}

// Tasks still waiting in the stage's queue when it stops are deferred,
// as the tasks waiting in line are, not handed back with a nak: a nak
// counts one more delivery against MaxRedeliveries each time a replica
// stops with them queued, and after a few stops (a rolling deploy during
// a backlog) they were dead-lettered without an attempt.
func TestTasksQueuedAtStopAreDeferredNotCountedAsRedelivered(t *testing.T) {
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	r.opts.MaxRedeliveries = 1
	ep := endpoint(t, 200, 0)
	sub := r.subscribeAs(t, tenant, ep.srv.URL)
	const tasks = 10
	for i := range tasks {
		r.task(t, sub, fmt.Sprintf("evt_queued_%d", i))
	}
	// Stop twice with the tasks queued: their workers (3 of 4, the others'
	// reserve left) hold the first ones in admission until after the stop.
	for stop := range 2 {
		adm := &gatedAdmission{tenant: tenant, gate: make(chan struct{})}
		r.opts.Admission = adm
		cancel, done := r.start()
		eventually(t, fmt.Sprintf("stop %d: the tasks taken and queued (or dead-lettered)", stop+1), func() bool {
			return adm.held.Load() >= 3 || r.streamMsgs(t, stream.DeadLetter) > 0
		})
		cancel()
		close(adm.gate) // the tasks in hand are attempted as the stage stops
		if err := <-done; err != nil {
			t.Fatalf("stop %d: Run: %v", stop+1, err)
		}
	}
	r.opts.Admission = delivertest.AdmitAll{}
	r.run(t)
	deliveredOnceEach(t, r, ep, tasks)
}

// deliveredOnceEach waits until every task is settled and checks that
// none was dead-lettered and ep received each once.
func deliveredOnceEach(t *testing.T, r *rig, ep *counter, tasks int32) {
	t.Helper()
	eventually(t, "every task settled", func() bool { return r.settled(t) })
	if n := r.streamMsgs(t, stream.DeadLetter); n != 0 {
		t.Fatalf("%d tasks dead-lettered; want none", n)
	}
	if n := ep.n.Load(); n != tasks {
		t.Fatalf("endpoint got %d requests; want %d", n, tasks)
	}
}

// hungScheduler stands for a server that stops answering: once hung,
// every Schedule waits for its context to end.
type hungScheduler struct {
	next  deliver.Scheduler
	hung  atomic.Bool
	calls atomic.Int32
}

func (s *hungScheduler) Schedule(ctx context.Context, c settle.Copy) error {
	if !s.hung.Load() {
		return s.next.Schedule(ctx, c)
	}
	s.calls.Add(1)
	<-ctx.Done()
	return ctx.Err()
}

// A stop while the server does not answer costs one round of deferrals,
// not a timeout per queued task: after the first deferral fails, the rest
// are handed back with a nak, which does not wait. Waiting out each
// deferral kept the stop for about queued/16 timeouts (2,500 queued tasks
// at 10 s: over 26 minutes against a 30 s shutdown). Nothing is lost: the
// stage started again delivers every task.
func TestAStopWhileTheServerHangsNaksTheQueueAfterOneFailedDeferral(t *testing.T) {
	r := newRig(t, stream.Config{AckWait: 30 * time.Second})
	sched := &hungScheduler{next: r.deps.Scheduler}
	sched.hung.Store(true) // nothing is scheduled before the stop
	r.deps.Scheduler = sched
	adm := &gatedAdmission{tenant: tenant, gate: make(chan struct{})}
	r.opts.Admission = adm
	ep := endpoint(t, 200, 0)
	sub := r.subscribeAs(t, tenant, ep.srv.URL)
	const tasks = 60
	for i := range tasks {
		r.task(t, sub, fmt.Sprintf("evt_stop_%d", i))
	}
	cancel, done := r.start()
	cons, err := r.js.Consumer(context.Background(), stream.Deliveries, stream.DeliverConsumer)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "workers held and every task fetched", func() bool {
		info, err := cons.Info(context.Background())
		return err == nil && info.NumPending == 0 && adm.held.Load() >= 3
	})
	cancel()
	close(adm.gate) // the tasks in hand are attempted as the stage stops
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The queue's 16 hand-back goroutines may each have begun a deferral
	// before the first failed, and the fetcher one more.
	if n := sched.calls.Load(); n > 17 {
		t.Fatalf("%d deferrals waited for a server that did not answer; want at most one round (17)", n)
	}
	sched.hung.Store(false)
	r.opts.Admission = delivertest.AdmitAll{}
	r.run(t)
	deliveredOnceEach(t, r, ep, tasks)
}

// refusingAdmission refuses every attempt for want of a slot until its gate
// opens (each task waits in its subscription's line), then admits all.
type refusingAdmission struct{ gate chan struct{} }

func (a refusingAdmission) Admit(ctx context.Context, sub *hooklinev1.Subscription, limit int) (deliver.Slot, deliver.Refusal, error) {
	select {
	case <-a.gate:
		return delivertest.AdmitAll{}.Admit(ctx, sub, limit)
	default:
		return nil, deliver.Refusal{Reason: deliver.RefusedFull}, nil
	}
}

// countingScheduler counts the scheduled copies (deferrals and retries)
// of each tenant's tasks.
type countingScheduler struct {
	next     deliver.Scheduler
	mu       sync.Mutex
	byTenant map[string]int
}

func (s *countingScheduler) Schedule(ctx context.Context, c settle.Copy) error {
	s.mu.Lock()
	s.byTenant[c.Tenant]++
	s.mu.Unlock()
	return s.next.Schedule(ctx, c)
}

func (s *countingScheduler) count(tenant string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byTenant[tenant]
}

// While one tenant's tasks fill every line's room (LinesMax), another
// tenant's task that must wait for a slot waits in its line, in place of
// one of the first tenant's (which is deferred), and is never deferred
// itself. Before, it was deferred, by at least a second, as often as it
// came back while the flood held every line's room.
func TestAnotherTenantsTaskWaitsInLineWhileATenantHoldsEveryLinesRoom(t *testing.T) {
	r := newRig(t, stream.Config{AckWait: 10 * time.Second})
	// A small LinesMax stands for a flood's lines at the default 7,500.
	r.opts.LinesMax = 4
	gate := make(chan struct{})
	r.opts.Admission = refusingAdmission{gate: gate}
	sched := &countingScheduler{next: r.deps.Scheduler, byTenant: map[string]int{}}
	r.deps.Scheduler = sched
	flood := endpoint(t, 200, 0)
	other := endpoint(t, 200, 0)
	subA := r.subscribeAs(t, tenant, flood.srv.URL)
	subB := r.subscribeAs(t, "globex", other.srv.URL)
	const floodTasks = 6
	for i := range floodTasks {
		r.task(t, subA, fmt.Sprintf("evt_flood_%d", i))
	}
	r.run(t)
	eventually(t, "the flood's tasks in line up to LinesMax, the rest deferred", func() bool {
		return testutil.ToFloat64(r.m.AdmissionParked) == 4 && sched.count(tenant) >= floodTasks-4
	})
	r.task(t, subB, "evt_other")
	eventually(t, "the other tenant's task waiting in line", func() bool {
		return testutil.ToFloat64(r.m.AdmissionParked) == 5
	})
	if n := sched.count("globex"); n != 0 {
		t.Fatalf("the other tenant's task was deferred %d times; want it in line", n)
	}
	close(gate)
	eventually(t, "every task settled", func() bool {
		return other.n.Load() == 1 && flood.n.Load() == floodTasks && r.settled(t)
	})
	if n := sched.count("globex"); n != 0 {
		t.Fatalf("the other tenant's task was deferred %d times; want none", n)
	}
	if n := r.streamMsgs(t, stream.DeadLetter); n != 0 {
		t.Fatalf("%d tasks dead-lettered; want none", n)
	}
}
