package pool_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// tenantOf is the test's key: the second token of s.<tenant>.<n>.
func tenantOf(m jetstream.Msg) string { return strings.Split(m.Subject(), ".")[1] }

// keyed creates stream S (s.>) and consumer c, publishes backlog messages
// of tenant "flood" then one of tenant "victim", and returns the consumer.
func keyed(t *testing.T, ackWait time.Duration, backlog int) jetstream.Consumer {
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
	for i := range backlog {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.flood.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "s.victim.0", nil); err != nil {
		t.Fatal(err)
	}
	return cons
}

// order runs RunFair with one worker over a backlog of 300 messages of one
// tenant followed by one of another; the worker holds the first message
// until every other waits in the buffer, then handles them all. It
// returns the subjects in the order they were handled.
func order(t *testing.T, key func(jetstream.Msg) string) []string {
	const backlog = 300
	cons := keyed(t, 30*time.Second, backlog)
	it, err := cons.Messages(pool.Pull(8)...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		handled []string
		waiting atomic.Int64
	)
	all := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(ctx, it, pool.Fair{Workers: 1, Buffer: 1000, Key: key, KeepAlive: 10 * time.Second,
			Waiting: func(n int) {
				waiting.Store(int64(n))
				if n == backlog { // every message but the one in hand
					once.Do(func() { close(all) })
				}
			}}, func(_ context.Context, m jetstream.Msg) {
			mu.Lock()
			first := len(handled) == 0
			handled = append(handled, m.Subject())
			n := len(handled)
			mu.Unlock()
			if first {
				<-all
			}
			_ = m.Ack()
			if n == backlog+1 {
				cancel()
			}
		}, zap.NewNop())
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("not all handled: %d of %d, %d waiting", len(handled), backlog+1, waiting.Load())
	}
	return handled
}

// A tenant's message fetched behind another tenant's backlog is served at
// its turn: after the message in hand and at most one more of the
// backlog (whose turn came first), where one FIFO (every message under one
// key, which is what dispatch did before) serves it last, after 300.
func TestFairServesAnotherTenantAheadOfABacklog(t *testing.T) {
	t.Parallel()
	fifo := order(t, func(jetstream.Msg) string { return "" })
	if got := fifo[len(fifo)-1]; got != "s.victim.0" {
		t.Fatalf("one queue: the victim was not last but %q was", got)
	}
	fair := order(t, tenantOf)
	if fair[1] != "s.victim.0" && fair[2] != "s.victim.0" {
		t.Fatalf("by tenant: the victim's message was not among the first three served: %v", fair[:4])
	}
	// Each tenant's own messages keep their order.
	prev := -1
	for _, s := range fair {
		if !strings.HasPrefix(s, "s.flood.") {
			continue
		}
		var n int
		fmt.Sscanf(s, "s.flood.%d", &n)
		if n != prev+1 {
			t.Fatalf("flood handled out of order: %d after %d", n, prev)
		}
		prev = n
	}
}

// A message that waits in the buffer longer than its AckWait is not
// redelivered meanwhile: it is told it is in progress every KeepAlive.
// (AckWait 1.5 s so that the wait outlasts it quickly.)
func TestFairKeepsWaitingMessagesAlive(t *testing.T) {
	t.Parallel()
	const ackWait = 1500 * time.Millisecond
	cons := keyed(t, ackWait, 5)
	it, err := cons.Messages(pool.Pull(8)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var handled atomic.Int32
	expired := make(chan struct{})
	time.AfterFunc(3*ackWait, func() { close(expired) }) // the first handler outlasts AckWait twice over
	go func() {
		done <- pool.RunFair(ctx, it, pool.Fair{Workers: 1, Buffer: 100, Key: tenantOf, KeepAlive: ackWait / 3},
			func(_ context.Context, m jetstream.Msg) {
				if handled.Add(1) == 1 {
					stop := pool.KeepAlive(m, ackWait/3) // the one in hand keeps itself alive, as dispatch does
					<-expired
					stop()
				}
				_ = m.Ack()
			}, zap.NewNop())
	}()
	info := waitInfo(t, cons, "all six acked", func(i *jetstream.ConsumerInfo) bool { return i.AckFloor.Stream == 6 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != 6 || handled.Load() != 6 {
		t.Fatalf("6 messages delivered %d times, handled %d times: a waiting message's AckWait ran out", info.Delivered.Consumer, handled.Load())
	}
}

// At a stop the messages waiting in the buffer are handed back, not
// handled and not lost: a second run handles them.
func TestFairStopHandsBackWaitingMessages(t *testing.T) {
	t.Parallel()
	cons := keyed(t, 30*time.Second, 20)
	run := func(stopAfter int32) (handled int32) {
		it, err := cons.Messages(pool.Pull(4)...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var n atomic.Int32
		gate := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- pool.RunFair(ctx, it, pool.Fair{Workers: 1, Buffer: 100, Key: tenantOf},
				func(_ context.Context, m jetstream.Msg) {
					if n.Add(1) == stopAfter {
						cancel() // stop while the rest wait in the buffer
						close(gate)
					}
					_ = m.Ack()
				}, zap.NewNop())
		}()
		if stopAfter > 0 {
			<-gate
		} else {
			waitInfo(t, cons, "all acked", func(i *jetstream.ConsumerInfo) bool { return i.AckFloor.Stream == 21 })
			cancel()
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return n.Load()
	}
	first := run(3)
	if first != 3 {
		t.Fatalf("handled %d after the stop asked at 3", first)
	}
	second := run(0)
	if first+second != 21 {
		t.Fatalf("handled %d + %d of 21: messages handed back at the stop were lost or handled twice", first, second)
	}
}
