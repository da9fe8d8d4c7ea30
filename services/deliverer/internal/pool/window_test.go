package pool_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// PerKeyBusy is lifted while the consumer's ack window is exhausted, not
// only while the buffer is full: replicas share the window (each buffer is
// sized to three quarters of it), so with another replica holding its
// share this replica's buffer can never fill, the server hands out nothing
// more, every other tenant's event waits in the stream behind the flood,
// and the flood would be held to PerKeyBusy while the other workers idle.
//
// Here (dispatch's own sizing at MaxAckPending 16, 4 workers) another
// replica holds 12 of the window (its three quarters) and this one the
// remaining 4: one in hand, three waiting in a buffer of 4, a victim's
// event in the stream behind the flood, and another tenant's event taken
// just before the flood's (so that the flood is not alone). The flood's
// messages fill the workers they may have (PerKey), as they do when the
// buffer is full.
func TestFairLiftsTheBusyBoundWhileTheAckWindowIsExhausted(t *testing.T) {
	t.Parallel()
	const window, workers = 16, 4
	prefetch, buffer := pool.SplitBuffer(workers, config.Config{MaxAckPending: window, DispatchWorkers: workers}.DispatchBufferSize())
	perKey := int32(pool.DefaultPerKey(workers))
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxAckPending: window})
	if err != nil {
		t.Fatal(err)
	}
	other := window * 3 / 4
	for i := range 40 {
		if i == other {
			if _, err := js.Publish(ctx, "s.early.0", nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := js.Publish(ctx, fmt.Sprintf("s.flood.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "s.victim.0", nil); err != nil {
		t.Fatal(err)
	}

	// The other replica: it holds three quarters of the window (what its
	// own buffer, iterator and workers hold under the flood).
	batch, err := cons.Fetch(other, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for range batch.Messages() {
		held++
	}
	if held != other {
		t.Fatalf("the other replica got %d messages, want %d (err %v)", held, other, batch.Error())
	}

	it, err := cons.Messages(pool.Pull(prefetch, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		inHand       atomic.Int32
		waiting      atomic.Int32
		reached      = make(chan struct{})
		once         sync.Once
		release      = make(chan struct{})
		rctx, cancel = context.WithCancel(ctx)
		done         = make(chan error, 1)
	)
	go func() {
		done <- pool.RunFair(rctx, it, pool.Fair{Workers: workers, Buffer: buffer, Prefetch: prefetch, Key: tenantOf,
			KeepAlive: 10 * time.Second, PerKeyBusy: 1, WindowFull: pool.AckWindowFull(cons),
			Waiting: func(n int) { waiting.Store(int32(n)) }},
			func(_ context.Context, m jetstream.Msg) {
				if tenantOf(m) == "early" {
					_ = m.Ack()
					return
				}
				if inHand.Add(1) == perKey {
					once.Do(func() { close(reached) })
				}
				<-release
				inHand.Add(-1)
				_ = m.Ack()
			}, zap.NewNop())
	}()
	select {
	case <-reached:
	case <-time.After(10 * time.Second):
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Errorf("the flood held %d of its %d workers for 10 s, %d of its messages waiting in a buffer of %d, while the ack window was exhausted "+
			"(ack pending %d of %d) and %d messages, another tenant's among them, waited in the stream behind it",
			inHand.Load(), perKey, waiting.Load(), buffer, info.NumAckPending, window, info.NumPending)
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
