package publish

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestBatchRetriesAFullAsyncWindow: with an async window of 2, a batch of
// 50 hits ErrTooManyStalledMsgs over and over; every event still lands and
// every future is checked.
func TestBatchRetriesAFullAsyncWindow(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	m := metrics.New()
	p, err := New(nc, Config{Timeout: 5 * time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	p.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2), jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	p.stallWait = time.Microsecond // give up on a full window at once
	evs := make([]Event, 50)
	for i := range evs {
		evs[i] = Event{ID: fmt.Sprintf("e%d", i), Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte(fmt.Sprint(i))}
	}
	res, err := p.PublishBatch(context.Background(), evs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 50 || res[49].ID != "e49" || res[49].Duplicate {
		t.Fatalf("results %v", res)
	}
	if p.stalls.Load() == 0 {
		t.Fatal("the async window never filled: the retry path was not exercised")
	}
	s, _ := js.Stream(context.Background(), stream.Events)
	info, _ := s.Info(context.Background())
	if info.State.Msgs != 50 {
		t.Fatalf("EVENTS holds %d, want 50", info.State.Msgs)
	}
	if got := testutil.ToFloat64(m.EventsPublished.WithLabelValues(metrics.ResultAccepted)); got != 50 {
		t.Fatalf("accepted counter %v", got)
	}
}

// TestBatchWithoutStreamFails: unacknowledged publishes are reported, never
// claimed accepted.
func TestBatchWithoutStreamFails(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	nc, _ := ns.Connect(t)
	m := metrics.New()
	p, err := New(nc, Config{Timeout: time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.PublishBatch(context.Background(), []Event{{ID: "x", Tenant: "acme", Type: "t", Data: []byte("1")}})
	if err == nil {
		t.Fatal("a batch to a missing stream was acknowledged")
	}
	if _, err := p.Publish(context.Background(), Event{ID: "y", Tenant: "acme", Type: "t", Data: []byte("1")}); err == nil {
		t.Fatal("an event to a missing stream was acknowledged")
	}
	if got := testutil.ToFloat64(m.EventsPublished.WithLabelValues(metrics.ResultFailed)); got != 2 {
		t.Fatalf("failed counter %v, want 2", got)
	}
}

// TestGroupCommitKeepsEachEventsOutcome: with group commit running, a
// batch request's events go through the group; a batch holding a
// retried event (its id already stored) still stores the new ones once and
// reports the old one as a duplicate; single publishes report their own
// outcome; and nothing is published through the group after Run ends.
func TestGroupCommitKeepsEachEventsOutcome(t *testing.T) {
	t.Parallel()
	m := metrics.New()
	p, js := groupPublisher(t, m, (*Publisher).WithGroupCommit)
	ctx := context.Background()
	runCtx, stop := context.WithCancel(ctx)
	done := runGroup(runCtx, p)
	evs := make([]Event, 100)
	for i := range evs {
		evs[i] = Event{ID: fmt.Sprintf("e%d", i), Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte(fmt.Sprint(i))}
	}
	if _, err := p.PublishBatch(ctx, evs[:10]); err != nil {
		t.Fatal(err)
	}
	res, err := p.PublishBatch(ctx, evs)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.ID != evs[i].ID || r.Duplicate != (i < 10) {
			t.Fatalf("result %d: %+v", i, r)
		}
	}
	one, err := p.Publish(ctx, evs[50])
	if err != nil || !one.Duplicate {
		t.Fatalf("republished event: %+v, %v", one, err)
	}
	// Through the group, whether as atomic batches or (small ones) one
	// by one: how the queue splits depends on timing.
	if st := p.group.Stats(); st.Messages < 111 {
		t.Fatalf("the group gave %d messages an outcome, want every publish's (111): %+v", st.Messages, st)
	}
	s, _ := js.Stream(ctx, stream.Events)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 100 {
		t.Fatalf("EVENTS holds %d, want 100", info.State.Msgs)
	}
	if got := testutil.ToFloat64(m.EventsPublished.WithLabelValues(metrics.ResultAccepted)); got != 100 {
		t.Fatalf("accepted counter %v", got)
	}
	stop()
	<-done
	before := p.group.Stats()
	if _, err := p.Publish(ctx, Event{ID: "after", Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte("1")}); err != nil {
		t.Fatal(err)
	}
	if p.group.Stats() != before {
		t.Fatal("a publish after Run went through the stopped group")
	}
}

// TestBatchGroupCommitLeavesSinglesAlone: with group commit for batch
// requests only (the default), a batch request's events and their id
// marks go through the group (one fsync per atomic batch under
// sync_interval: always), while a single publish and its mark are stored
// one by one, as without group commit: grouping concurrent single
// publishes cost 40 % of their rate under the default fsync.
func TestBatchGroupCommitLeavesSinglesAlone(t *testing.T) {
	t.Parallel()
	p, js := groupPublisher(t, metrics.New(), (*Publisher).WithBatchGroupCommit)
	ctx := context.Background()
	if err := p.BindIDs(ctx); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := runGroup(runCtx, p)
	defer func() { stop(); <-done }()
	evs := make([]Event, 50)
	for i := range evs {
		evs[i] = Event{ID: fmt.Sprintf("b%d", i), Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte(fmt.Sprint(i))}
	}
	if _, err := p.PublishBatch(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if st := p.group.Stats(); st.Messages != 50 || st.Batches < 1 {
		t.Fatalf("the batch request through the group: %+v; want its 50 events, in atomic batches", st)
	}
	// The batch's marks are written after its events, without waiting.
	deadline := time.Now().Add(10 * time.Second)
	for p.marks.Stats().Messages < 50 {
		if time.Now().After(deadline) {
			t.Fatalf("the batch's marks through the group: %+v; want 50", p.marks.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	group, marks := p.group.Stats(), p.marks.Stats()
	for i := range 20 {
		res, err := p.Publish(ctx, Event{ID: fmt.Sprintf("s%d", i), Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte("1")})
		if err != nil || res.Duplicate {
			t.Fatalf("single publish %d: %+v, %v", i, res, err)
		}
	}
	if p.group.Stats() != group || p.marks.Stats() != marks {
		t.Fatalf("single publishes went through the group: events %+v → %+v, marks %+v → %+v", group, p.group.Stats(), marks, p.marks.Stats())
	}
	s, _ := js.Stream(ctx, stream.Events)
	info, _ := s.Info(ctx)
	if info.State.Msgs != 70 {
		t.Fatalf("EVENTS holds %d, want 70", info.State.Msgs)
	}
	// A retried single is still recognised by its mark.
	if res, err := p.Publish(ctx, Event{ID: "s3", Tenant: "acme", Type: "t", OccurredAt: time.Now(), Data: []byte("1")}); err != nil || !res.Duplicate {
		t.Fatalf("republished single: %+v, %v; want a duplicate", res, err)
	}
}

// groupPublisher is a Publisher on a fresh nats-server with Hookline's
// streams, its group commit set up by with.
func groupPublisher(t *testing.T, m *metrics.Metrics, with func(*Publisher) *Publisher) (*Publisher, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	p, err := New(nc, Config{Timeout: 5 * time.Second, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	with(p)
	return p, js
}

// runGroup runs p's group commit until ctx ends and returns once it runs;
// the channel closes when Run has returned.
func runGroup(ctx context.Context, p *Publisher) <-chan struct{} {
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for !p.groupRunning.Load() {
		time.Sleep(time.Millisecond) // Run sets it first thing
	}
	return done
}
