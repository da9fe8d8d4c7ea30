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

func TestRunFairHandlesInParallelAndStopsCleanly(t *testing.T) {
	t.Parallel()
	const workers, msgs = 4, 50
	_, it := setup(t, msgs)
	var handled, inFlight, maxInFlight atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(ctx, it, pool.Fair{Workers: workers, PerKey: workers}, func(_ context.Context, m jetstream.Msg) {
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

func TestRunFairFailsWhenTheConsumerGoesAway(t *testing.T) {
	t.Parallel()
	js, it := setup(t, 0)
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(context.Background(), it, pool.Fair{Workers: 2}, func(context.Context, jetstream.Msg) {}, zap.NewNop())
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
