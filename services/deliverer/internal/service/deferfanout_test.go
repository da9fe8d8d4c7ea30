package service_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A delivery whose subscription's line is full in this deliverer is stored
// by dispatch already deferred — the scheduled copy the deliver stage
// would have left on taking its task, under the task's dedup id — and no
// task is stored for it: a flood to a slow endpoint costs one stored
// message per delivery, not the task and then its deferral. Every event is
// still delivered once the endpoint answers. max_in_flight 1 so that a
// test fills the line (its room is 4 × the cap while nothing is measured).
func TestFullLineIsDeferredAtFanOut(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	var (
		mu      sync.Mutex
		got     = map[string]int{}
		release = make(chan struct{})
		once    sync.Once
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")]++
		mu.Unlock()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	free := func() { once.Do(func() { close(release) }) }
	t.Cleanup(free)
	sub, _ := e.subscribe(t, srv.URL, "order.created")
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.MaxInFlight = 1 })
	m := e.svc.Metrics
	direct := func(r string) float64 { return testutil.ToFloat64(m.Direct.WithLabelValues(r)) }

	// The first event holds the only slot (its attempt hangs); the next
	// four fill the line behind it.
	for i := range 5 {
		e.publish(t, "order.created", fmt.Sprintf("evt_full_%02d", i), `{}`)
	}
	eventually(t, await, "four tasks waiting in line", func() bool { return testutil.ToFloat64(m.AdmissionParkedNow) == 4 })
	tasks := testutil.ToFloat64(m.TasksPublished)

	const more = 6
	for i := 5; i < 5+more; i++ {
		e.publish(t, "order.created", fmt.Sprintf("evt_full_%02d", i), `{}`)
	}
	eventually(t, await, "the events behind the full line dispatched", func() bool {
		return direct("deferred")+testutil.ToFloat64(m.TasksPublished)-tasks == more
	})
	if d, stored := direct("deferred"), testutil.ToFloat64(m.TasksPublished)-tasks; d != more || stored != 0 {
		t.Fatalf("behind a full line: %g deferred at fan-out, %g tasks stored; want %d and 0", d, stored, more)
	}
	if n := e.streamMsgs(t, stream.Deliveries, stream.RetryPrefix+".>"); n != more {
		t.Fatalf("%d schedules in DELIVERIES; want %d (one per deferred delivery)", n, more)
	}

	free()
	eventually(t, await, "every event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 5+more
	})
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	mu.Lock()
	defer mu.Unlock()
	for id, n := range got {
		if n != 1 {
			t.Errorf("%s sent %d times; want once", id, n)
		}
	}
}
