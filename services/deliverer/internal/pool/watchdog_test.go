package pool_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
)

var durable = jetstream.ConsumerConfig{Durable: "c", FilterSubject: "s.>", AckPolicy: jetstream.AckExplicitPolicy}

// watched starts Run over pool.Messages on the durable "c" of a stream S
// (subjects s.> and q.>) and counts the messages handled (acked).
type watched struct {
	js       jetstream.JetStream
	cons     jetstream.Consumer
	handled  atomic.Int32
	restarts *prometheus.CounterVec
	done     chan error
	stop     context.CancelFunc
}

func startWatched(t *testing.T, wrap func(jetstream.JetStream, jetstream.Consumer) jetstream.Consumer, stall time.Duration, handle pool.Handler) *watched {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>", "q.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", durable)
	if err != nil {
		t.Fatal(err)
	}
	w := &watched{js: js, cons: cons, done: make(chan error, 1),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "r"}, []string{"stage", "reason"})}
	if handle == nil {
		handle = func(_ context.Context, m jetstream.Msg) { _ = m.Ack(); w.handled.Add(1) }
	}
	src := jetstream.Consumer(cons)
	if wrap != nil {
		src = wrap(js, cons)
	}
	it, err := pool.Messages(ctx, src, 4, pool.Watch{Stage: "deliver", Restarts: w.restarts, Log: zap.NewNop(), Stall: stall})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	w.stop = cancel
	go func() { w.done <- pool.RunFair(rctx, it, pool.Fair{Workers: 4, PerKey: 4}, handle, zap.NewNop()) }()
	t.Cleanup(func() {
		cancel()
		<-w.done
	})
	return w
}

func (w *watched) publish(t *testing.T, n int) {
	t.Helper()
	for i := range n {
		if _, err := w.js.Publish(context.Background(), fmt.Sprintf("s.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
}

// awaitHandled waits until n messages were handled; it fails when Run
// returns first or 20 s pass.
func (w *watched) awaitHandled(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for w.handled.Load() < n {
		select {
		case err := <-w.done:
			w.done <- err
			t.Fatalf("Run returned (%v) after %d of %d messages", err, w.handled.Load(), n)
		default:
		}
		if time.Now().After(deadline) {
			info, _ := w.cons.Info(context.Background())
			t.Fatalf("%d of %d messages handled within 20s (consumer: %+v)", w.handled.Load(), n, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (w *watched) awaitWaitingPull(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := w.cons.Info(context.Background())
		if err == nil && info.NumWaiting > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no pull request arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deafFirst hands out, as the first iterator, one that pulls from a
// consumer with nothing to deliver (filter q.>): an iterator that is alive,
// heartbeats and all, and receives nothing while "c" has messages — what
// the stages' iterators looked like in the 60 s stalls of fault 10b.
// Later iterators are c's own.
type deafFirst struct {
	jetstream.Consumer
	deaf  jetstream.Consumer
	calls atomic.Int32
}

func (d *deafFirst) Messages(opts ...jetstream.PullMessagesOpt) (jetstream.MessagesContext, error) {
	if d.calls.Add(1) == 1 {
		return d.deaf.Messages(opts...)
	}
	return d.Consumer.Messages(opts...)
}

func deafened(t *testing.T) func(jetstream.JetStream, jetstream.Consumer) jetstream.Consumer {
	return func(js jetstream.JetStream, c jetstream.Consumer) jetstream.Consumer {
		q, err := js.CreateConsumer(context.Background(), "S", jetstream.ConsumerConfig{
			Durable: "quiet", FilterSubject: "q.>", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		return &deafFirst{Consumer: c, deaf: q}
	}
}

// A stage whose iterator receives nothing while its consumer has messages
// to deliver gets a new iterator and delivers them.
func TestMessagesReplacesAnIteratorThatReceivesNothing(t *testing.T) {
	t.Parallel()
	w := startWatched(t, deafened(t), time.Second, nil)
	w.publish(t, 10)
	w.awaitHandled(t, 10)
	if got := testutil.ToFloat64(w.restarts.WithLabelValues("deliver", pool.RestartStalled)); got != 1 {
		t.Fatalf("restarts{stalled} = %v, want 1", got)
	}
}

// A consumer deleted and created again (same name, same config) closes the
// iterator (409 Consumer Deleted); the stage goes on with the new one
// instead of stopping.
func TestMessagesReopensWhenTheConsumerIsRecreated(t *testing.T) {
	t.Parallel()
	w := startWatched(t, nil, time.Second, nil)
	w.publish(t, 3)
	w.awaitHandled(t, 3)
	w.awaitWaitingPull(t)
	ctx := context.Background()
	if err := w.js.DeleteConsumer(ctx, "S", "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.js.CreateConsumer(ctx, "S", durable); err != nil {
		t.Fatal(err)
	}
	// The new consumer starts at the stream's first message again: the 3
	// handled ones come back, then the 5 new.
	w.publish(t, 5)
	w.awaitHandled(t, 3+3+5)
	if got := testutil.ToFloat64(w.restarts.WithLabelValues("deliver", pool.RestartClosed)); got != 1 {
		t.Fatalf("restarts{closed} = %v, want 1", got)
	}
}

// A consumer deleted for good still stops the stage: Run says so.
func TestMessagesFailsWhenTheConsumerIsGone(t *testing.T) {
	t.Parallel()
	w := startWatched(t, nil, time.Second, nil)
	w.awaitWaitingPull(t)
	if err := w.js.DeleteConsumer(context.Background(), "S", "c"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-w.done:
		w.done <- err
		if err == nil {
			t.Fatal("Run returned nil for a deleted consumer")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run still running 20s after its consumer was deleted")
	}
}

// Workers all busy in their handlers are not a deaf iterator: no restart
// however long they take, while the consumer has messages pending.
func TestMessagesLeavesBusyWorkersAlone(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	var busy atomic.Int32
	w := startWatched(t, nil, 100*time.Millisecond, func(_ context.Context, m jetstream.Msg) {
		busy.Add(1)
		<-release
		_ = m.Ack()
	})
	w.publish(t, 20) // 4 in hand, 4 buffered, 12 pending
	deadline := time.Now().Add(20 * time.Second)
	for busy.Load() < 4 {
		if time.Now().After(deadline) {
			t.Fatal("workers did not take 4 messages")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Ten stall periods with every worker busy.
	time.Sleep(time.Second)
	close(release)
	if got := testutil.ToFloat64(w.restarts.WithLabelValues("deliver", pool.RestartStalled)); got != 0 {
		t.Fatalf("restarts{stalled} = %v with every worker busy, want 0", got)
	}
}

func TestRestartReasonsAreTheMetricLabels(t *testing.T) {
	if !slices.Equal(pool.RestartReasons, metrics.PullRestartReasons) {
		t.Fatalf("pool.RestartReasons %v, metrics.PullRestartReasons %v", pool.RestartReasons, metrics.PullRestartReasons)
	}
}
