package pool_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func setup(t *testing.T, msgs int) (jetstream.JetStream, jetstream.MessagesContext) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4))
	if err != nil {
		t.Fatal(err)
	}
	return js, it
}

func TestRunHandlesInParallelAndStopsCleanly(t *testing.T) {
	t.Parallel()
	const workers, msgs = 4, 50
	_, it := setup(t, msgs)
	var handled, inFlight, maxInFlight atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pool.Run(ctx, it, workers, func(_ context.Context, m jetstream.Msg) {
			if md, _ := m.Metadata(); md.Sequence.Stream == 7 && md.NumDelivered == 1 {
				panic("a bug met message 7") // the worker survives; the message comes back
			}
			n := inFlight.Add(1)
			for {
				cur := maxInFlight.Load()
				if n <= cur || maxInFlight.CompareAndSwap(cur, n) {
					break
				}
			}
			_ = m.Ack()
			inFlight.Add(-1)
			if handled.Add(1) == msgs {
				cancel()
			}
		}, zap.NewNop())
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if handled.Load() != msgs || maxInFlight.Load() > workers {
		t.Fatalf("handled %d (want %d), at most %d at once (bound %d)", handled.Load(), msgs, maxInFlight.Load(), workers)
	}
}

func TestRunFailsWhenTheConsumerGoesAway(t *testing.T) {
	t.Parallel()
	js, it := setup(t, 0)
	done := make(chan error, 1)
	go func() {
		done <- pool.Run(context.Background(), it, 2, func(context.Context, jetstream.Msg) {}, zap.NewNop())
	}()
	// Delete it once the iterator's pull request is waiting on it.
	cons, err := js.Consumer(context.Background(), "S", "c")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.NumWaiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pull request arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := js.DeleteConsumer(context.Background(), "S", "c"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run returned nil after its consumer was deleted")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Run kept running without its consumer")
	}
}

// stream creates stream S and a consumer c with ackWait, publishes msgs and
// returns the consumer.
func consumer(t *testing.T, ackWait time.Duration, msgs int) (jetstream.Consumer, jetstream.JetStream) {
	t.Helper()
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, AckWait: ackWait})
	if err != nil {
		t.Fatal(err)
	}
	for i := range msgs {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	return cons, js
}

// waitInfo polls the consumer until ok says so.
func waitInfo(t *testing.T, cons jetstream.Consumer, what string, ok func(*jetstream.ConsumerInfo) bool) *jetstream.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer never reached %s: %+v", what, info)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A message buffered behind a slow one keeps its AckWait: an attempt that
// waited most of AckWait for a worker, then took most of it again, is not
// redelivered (issue 12, item 6: an endpoint answering in 14.5s got an
// event twice with AckWait = HTTP timeout + 5s).
func TestBufferedMessageIsNotRedeliveredWhileItWaits(t *testing.T) {
	t.Parallel()
	const ackWait, hold = 2 * time.Second, 1300 * time.Millisecond
	cons, _ := consumer(t, ackWait, 2)
	it, err := cons.Messages(jetstream.PullMaxMessages(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- pool.Run(ctx, it, 1, func(_ context.Context, m jetstream.Msg) {
			time.Sleep(hold) // the attempt: most of AckWait, no InProgress of its own
			_ = m.Ack()
		}, zap.NewNop())
	}()
	info := waitInfo(t, cons, "both acked", func(i *jetstream.ConsumerInfo) bool { return i.AckFloor.Stream == 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 2 {
		t.Fatalf("2 messages delivered %d times: the buffered one's AckWait ran out while it waited for the worker", info.Delivered.Consumer)
	}
}

// A stop waits for the messages in hand only: those still buffered are
// handed back unhandled (another replica takes them), so a SIGTERM never
// starts a second round of slow attempts that would outlast its budget.
//
// Not parallel: Held is the process's.
func TestStopHandsBackBufferedMessages(t *testing.T) {
	cons, _ := consumer(t, 30*time.Second, 3)
	it, err := cons.Messages(jetstream.PullMaxMessages(3))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	started, release := make(chan uint64, 3), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- pool.Run(ctx, it, 1, func(_ context.Context, m jetstream.Msg) {
			md, _ := m.Metadata()
			started <- md.Sequence.Stream
			<-release
			_ = m.Ack()
		}, zap.NewNop())
	}()
	first := <-started
	waitInfo(t, cons, "all three delivered", func(i *jetstream.ConsumerInfo) bool { return i.NumAckPending == 3 })
	held := pool.Held()
	if len(held) != 1 || held[0].Seq != first || held[0].Subject == "" {
		t.Fatalf("Held() = %+v, want the one message in hand (seq %d)", held, first)
	}
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	close(started)
	for seq := range started {
		t.Errorf("seq %d handled after the stop: it was buffered, not in hand", seq)
	}
	if h := pool.Held(); len(h) != 0 {
		t.Errorf("Held() = %+v after every message was settled", h)
	}
	// The two handed back are pending again, not lost.
	waitInfo(t, cons, "two redeliverable", func(i *jetstream.ConsumerInfo) bool {
		return i.AckFloor.Stream == 1 && i.NumAckPending+int(i.NumPending) == 2
	})
}
