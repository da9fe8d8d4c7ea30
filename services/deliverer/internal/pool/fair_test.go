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
	"github.com/hookline/hookline/services/deliverer/internal/config"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// tenantOf is the test's key: the second token of s.<tenant>.<n>.
func tenantOf(m jetstream.Msg) string { return strings.Split(m.Subject(), ".")[1] }

// keyed creates stream S (s.>) and consumer c, publishes backlog messages
// of tenant "flood" then one of tenant "victim", and returns the consumer.
func keyed(t *testing.T, ackWait time.Duration, backlog int) jetstream.Consumer {
	t.Helper()
	cons, js := consumer(t, ackWait, 0)
	ctx := context.Background()
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
// tenant followed by one of another (holdFirst), and returns the subjects
// in the order they were handled.
func order(t *testing.T, key func(jetstream.Msg) string) []string {
	got, _ := holdFirst(t, key, 300)
	subjects := make([]string, len(got))
	for i, h := range got {
		subjects[i] = h.subject
	}
	return subjects
}

// served is a message the one worker of holdFirst handled: when RunFair
// received it (pool.Received) and when it was handled.
type served struct {
	subject           string
	received, handled time.Time
}

// holdFirst runs RunFair with one worker over keyed's backlog messages of
// one tenant and the victim's; the worker holds the first message until
// every other waits in the buffer, then handles them all. It returns them
// in the order handled, and when the first was let go.
func holdFirst(t *testing.T, key func(jetstream.Msg) string, backlog int) (got []served, released time.Time) {
	t.Helper()
	cons := keyed(t, 30*time.Second, backlog)
	it, err := cons.Messages(pool.Pull(8, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		waiting atomic.Int64
	)
	changed := make(chan struct{}, 1) // the count waiting changed
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(ctx, it, pool.Fair{Workers: 1, Buffer: 1000, Key: key, KeepAlive: 10 * time.Second,
			Waiting: func(n int) {
				waiting.Store(int64(n))
				select {
				case changed <- struct{}{}:
				default:
				}
			}}, func(hctx context.Context, m jetstream.Msg) {
			received := pool.Received(hctx)
			mu.Lock()
			first := len(got) == 0
			mu.Unlock()
			if first {
				// In hand: wait until every other message waits in the
				// buffer (counted while this one is in hand, not before
				// the worker took it).
				for waiting.Load() != int64(backlog) {
					<-changed
				}
				mu.Lock()
				released = time.Now()
				mu.Unlock()
			}
			mu.Lock()
			got = append(got, served{subject: m.Subject(), received: received, handled: time.Now()})
			n := len(got)
			mu.Unlock()
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
		mu.Lock()
		defer mu.Unlock()
		t.Fatalf("not all handled: %d of %d, %d waiting", len(got), backlog+1, waiting.Load())
	}
	return got, released
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
	expired := make(chan struct{})
	time.AfterFunc(3*ackWait, func() { close(expired) }) // the first handler outlasts AckWait twice over
	acksOnce(t, keyed(t, ackWait, 5), 8, pool.Fair{Workers: 1, Buffer: 100, Key: tenantOf, KeepAlive: ackWait / 3}, 6,
		func(m jetstream.Msg, nth int32) {
			if nth == 1 {
				stop := pool.KeepAlive(m, ackWait/3) // the one in hand keeps itself alive, as dispatch does
				<-expired
				stop()
			}
		}, "a waiting message's AckWait ran out")
}

// At a stop the messages waiting in the buffer are handed back, not
// handled and not lost: a second run handles them.
func TestFairStopHandsBackWaitingMessages(t *testing.T) {
	t.Parallel()
	cons := keyed(t, 30*time.Second, 20)
	run := func(stopAfter int32) (handled int32) {
		it, err := cons.Messages(pool.Pull(4, 0)...)
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

// The message the fetcher holds while the buffer is full is kept alive
// too: with one worker and room for one, the third message waited for
// room through the first handler's three AckWaits and was redelivered
// (the fetcher took it from the iterator and blocked in put, where no
// keep-alive saw it).
func TestFairKeepsAliveTheMessageWaitingForRoom(t *testing.T) {
	t.Parallel()
	const ackWait = 1500 * time.Millisecond
	expired := make(chan struct{})
	time.AfterFunc(3*ackWait, func() { close(expired) })
	acksOnce(t, keyed(t, ackWait, 2), 2, pool.Fair{Workers: 1, Buffer: 1, Key: tenantOf, KeepAlive: ackWait / 3}, 3, // flood.0, flood.1, victim.0
		func(m jetstream.Msg, nth int32) {
			if nth == 1 {
				stop := pool.KeepAlive(m, ackWait/3)
				<-expired
				stop()
			}
		}, "the one waiting for room ran out of AckWait")
}

// At a stop the messages waiting in the buffer are handed back at once,
// not after the handlers in hand finish: another replica gets them while
// this one's last attempt still runs (they used to wait for it, and for
// a whole AckWait when the process was killed meanwhile).
func TestFairHandsBackWaitingMessagesWithoutWaitingForHandlers(t *testing.T) {
	t.Parallel()
	const rest = 9
	cons := keyed(t, 30*time.Second, rest) // flood.0..8, victim.0
	it, err := cons.Messages(pool.Pull(1, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	allWaiting, otherGot := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var handled atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(ctx, it, pool.Fair{Workers: 1, Buffer: 100, Key: tenantOf,
			Waiting: func(n int) {
				if n == rest {
					once.Do(func() { close(allWaiting) })
				}
			}},
			func(_ context.Context, m jetstream.Msg) {
				handled.Add(1)
				<-allWaiting
				cancel() // stop while one is in hand and the rest wait
				select {
				case <-otherGot:
				case <-time.After(20 * time.Second):
				}
				_ = m.Ack()
			}, zap.NewNop())
	}()
	<-allWaiting
	other, err := cons.Messages(pool.Pull(16, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	deadline := time.Now().Add(10 * time.Second)
	for got < rest && time.Now().Before(deadline) {
		m, err := other.Next(jetstream.NextMaxWait(time.Until(deadline)))
		if err != nil {
			continue
		}
		_ = m.Ack()
		got++
	}
	other.Stop()
	close(otherGot)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got != rest || handled.Load() != 1 {
		t.Fatalf("another replica got %d of the %d waiting messages while the first one's handler ran (first handled %d)", got, rest, handled.Load())
	}
}

// A message that waited in the iterator's own buffer while the queue was
// full has its wait counted from when it was delivered, not from when it
// entered the queue: one that waited 2.2 s of its 3 s AckWait there, then
// 1.5 s in the queue, was first told it is in progress a KeepAlive after
// it entered the queue, too late, and was redelivered.
func TestFairCountsTheWaitInTheIteratorBuffer(t *testing.T) {
	t.Parallel()
	const ackWait = 3 * time.Second
	const keep = ackWait / 3
	// flood.0 (held 2.2 s), flood.1 (1.5 s), victim.0
	acksOnce(t, keyed(t, ackWait, 2), 4, pool.Fair{Workers: 1, Buffer: 1, Prefetch: 4, Key: tenantOf, KeepAlive: keep}, 3,
		func(m jetstream.Msg, nth int32) {
			if hold := map[int32]time.Duration{1: 2200 * time.Millisecond, 2: 1500 * time.Millisecond}[nth]; hold > 0 {
				stop := pool.KeepAlive(m, keep)
				<-time.After(hold)
				stop()
			}
		}, "the one that waited in the iterator ran out of AckWait")
}

// With the default buffer, a replica that started first leaves the
// consumer's window room for another replica's workers: it holds at most
// three quarters of MaxAckPending in all (waiting, in hand and in its
// iterator), not a buffer of three quarters plus its workers and their
// prefetch. (MaxAckPending 16 and 4 workers: the first replica held all
// 16, 12 of them waiting, while the second had work for 2 of its 4
// workers; at HOOKLINE_MAX_ACK_PENDING=1000 and 128 workers alike.)
func TestFairDefaultBufferLeavesAnotherReplicaItsWorkers(t *testing.T) {
	t.Parallel()
	const window, workers = 16, 4
	prefetch, buffer := pool.SplitBuffer(workers, config.Config{MaxAckPending: window, DispatchWorkers: workers}.DispatchBufferSize()) // as dispatch.Run
	_, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: window})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.t%d.%d", i%5, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	var inHand atomic.Int32
	allBusy := make(chan struct{})
	var once sync.Once
	handle := func(_ context.Context, m jetstream.Msg) {
		if inHand.Add(1) == 2*workers {
			once.Do(func() { close(allBusy) })
		}
		select {
		case <-allBusy:
		case <-time.After(10 * time.Second):
		}
		inHand.Add(-1)
		_ = m.Ack()
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for replica := range 2 {
		it, err := cons.Messages(pool.Pull(prefetch, 0)...)
		if err != nil {
			t.Fatal(err)
		}
		full := make(chan struct{})
		var fullOnce sync.Once
		wg.Go(func() {
			if err := pool.RunFair(rctx, it, pool.Fair{Workers: workers, Buffer: buffer, Prefetch: prefetch, Key: tenantOf,
				Waiting: func(n int) {
					if n == buffer {
						fullOnce.Do(func() { close(full) })
					}
				}}, handle, zap.NewNop()); err != nil {
				t.Error(err)
			}
		})
		if replica == 0 {
			<-full // the first replica started first (a rolling deploy) and filled its buffer
		}
	}
	select {
	case <-allBusy:
	case <-time.After(8 * time.Second):
		t.Errorf("the two replicas' %d workers were never all busy at once (%d were when it gave up): the first held the window (buffer %d of MaxAckPending %d)",
			2*workers, inHand.Load(), buffer, window)
	}
	cancel()
	wg.Wait()
}

// When the connection is gone, handing the waiting messages back fails
// for every one of them: that is said once, with how many, not once per
// message (a replica's buffer holds 7,244 by default: as many warnings at
// once).
func TestFairSaysOnceThatWaitingMessagesCouldNotBeHandedBack(t *testing.T) {
	t.Parallel()
	const total = 11 // 1 in hand, 9 waiting, 1 with the fetcher
	nc, js := natstest.Start(t).Connect(t)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateConsumer(ctx, "S", jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for i := range total {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.t%d.%d", i%3, i), nil); err != nil {
			t.Fatal(err)
		}
	}
	it, err := cons.Messages(pool.Pull(1, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.WarnLevel)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waiting, fetching, closed := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var onceW sync.Once
	err = pool.RunFair(rctx, it, pool.Fair{Workers: 1, Buffer: 100,
		Key: func(m jetstream.Msg) string {
			if m.Subject() == fmt.Sprintf("s.t%d.%d", (total-1)%3, total-1) {
				close(fetching) // the last one: the fetcher holds it until the connection is gone
				<-closed
			}
			return tenantOf(m)
		},
		Waiting: func(n int) {
			if n == total-2 {
				onceW.Do(func() { close(waiting) })
			}
		}},
		func(_ context.Context, m jetstream.Msg) {
			<-waiting
			<-fetching
			nc.Close() // the connection is lost with the rest waiting
			close(closed)
			cancel()
		}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	if n := logs.Len(); n != 1 {
		t.Fatalf("%d warnings for %d messages not handed back, want 1", n, total-1)
	}
	if got := logs.All()[0].ContextMap()["messages"]; got != int64(total-1) {
		t.Fatalf("the warning says %v messages, want %d: %v", got, total-1, logs.All()[0])
	}
}

// acksOnce runs RunFair with f over cons (an iterator prefetching
// prefetch), handling each message with hold (given its number, from 1)
// then acking it, until the consumer's ack floor reaches n; it fails the
// test with what unless the n messages were delivered and handled once
// each (a waiting message whose AckWait ran out comes again).
func acksOnce(t *testing.T, cons jetstream.Consumer, prefetch int, f pool.Fair, n uint64, hold func(m jetstream.Msg, nth int32), what string) {
	t.Helper()
	it, err := cons.Messages(pool.Pull(prefetch, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var handled atomic.Int32
	go func() {
		done <- pool.RunFair(ctx, it, f, func(_ context.Context, m jetstream.Msg) {
			hold(m, handled.Add(1))
			_ = m.Ack()
		}, zap.NewNop())
	}()
	info := waitInfo(t, cons, "all acked", func(i *jetstream.ConsumerInfo) bool { return i.AckFloor.Stream == n })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if info.Delivered.Consumer != n || handled.Load() != int32(n) {
		t.Fatalf("%d messages delivered %d times, handled %d times: %s", n, info.Delivered.Consumer, handled.Load(), what)
	}
}

// SplitBuffer gives the iterator a quarter of the buffer (at least a
// worker's worth, at most MaxPrefetch) and keeps what a replica holds in
// all: the buffer and twice its workers (its workers' messages and a
// worker's worth prefetched, as before the split).
func TestSplitBufferKeepsWhatAReplicaHolds(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ workers, buffer, prefetch, queue int }{
		{128, 7244, 1024, 6348}, // the defaults
		{128, 100, 128, 100},    // a small buffer: a worker's worth prefetched, as before
		{4, 4, 4, 4},
		{64, 40000, pool.MaxPrefetch, 40000 - (pool.MaxPrefetch - 64)},
		{128, 3000, 750, 2378},
		{128, 1, 128, 1},
	} {
		p, q := pool.SplitBuffer(c.workers, c.buffer)
		if p != c.prefetch || q != c.queue {
			t.Errorf("SplitBuffer(%d, %d) = %d, %d; want %d, %d", c.workers, c.buffer, p, q, c.prefetch, c.queue)
		}
		if q > 1 && p+q+c.workers != c.buffer+2*c.workers {
			t.Errorf("SplitBuffer(%d, %d): a replica holds %d, not the buffer and twice its workers (%d)",
				c.workers, c.buffer, p+q+c.workers, c.buffer+2*c.workers)
		}
	}
}

// A handler learns when its message was received — taken from the
// iterator, before it waited in the buffer — not when a worker took it:
// dispatch matches an event against a registry view as of its receipt.
func TestFairTellsTheHandlerWhenItsMessageCame(t *testing.T) {
	t.Parallel()
	before := time.Now()
	got, released := holdFirst(t, tenantOf, 2) // flood 0, flood 1, victim 0
	if len(got) != 3 {
		t.Fatalf("handled %d messages, want 3", len(got))
	}
	for _, h := range got {
		if h.received.IsZero() || h.received.Before(before) || h.received.After(h.handled) {
			t.Errorf("%s: received %v, want between its publish (after %v) and its handling (%v)", h.subject, h.received, before, h.handled)
		}
		if h.subject != "s.flood.0" && !h.received.Before(released) {
			t.Errorf("%s waited in the buffer until %v, yet was received at %v: the time a worker took it, not when it came", h.subject, released, h.received)
		}
	}
	if !pool.Received(context.Background()).IsZero() {
		t.Error("Received without RunFair is not the zero time")
	}
}

// One key's flood never holds every worker: while the flood's messages
// hold all the workers they may (each waiting, as dispatch's wait for a
// busy server's publish acknowledgements), another key's message that
// comes later is handled at once by a worker kept back for it.
func TestFairKeepsAWorkerForTheOtherKeys(t *testing.T) {
	t.Parallel()
	const workers = 4
	perKey := pool.DefaultPerKey(workers)
	if perKey != workers-1 {
		t.Fatalf("DefaultPerKey(%d) = %d, want %d", workers, perKey, workers-1)
	}
	cons, js := consumer(t, 30*time.Second, 0)
	ctx := context.Background()
	for i := range 20 {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.flood.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	it, err := cons.Messages(pool.Pull(8, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	var inHand atomic.Int32
	full := make(chan struct{})    // the flood holds its share of the workers
	release := make(chan struct{}) // lets the flood's handlers go
	victim := make(chan struct{})
	var fullOnce sync.Once
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- pool.RunFair(rctx, it, pool.Fair{Workers: workers, Buffer: 100, Key: tenantOf, KeepAlive: 10 * time.Second},
			func(_ context.Context, m jetstream.Msg) {
				defer func() { _ = m.Ack() }()
				if tenantOf(m) == "victim" {
					close(victim)
					return
				}
				if inHand.Add(1) == int32(perKey) {
					fullOnce.Do(func() { close(full) })
				}
				<-release
			}, zap.NewNop())
	}()
	<-full
	if _, err := js.Publish(ctx, "s.victim.0", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-victim:
	case <-time.After(10 * time.Second):
		t.Errorf("another key's message waited 10 s while one key's flood held %d of %d workers", inHand.Load(), workers)
	}
	if n := inHand.Load(); n > int32(perKey) {
		t.Errorf("the flood held %d workers at once, more than its %d", n, perKey)
	}
	close(release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// busyKey runs RunFair over 20 messages of key flood with the given
// bounds, after one of key other when other is set (handled first and
// held until release: another key sharing the workers); handle runs
// each message and then waits for release. It returns after the caller's
// wait, with the most messages of flood handled at once that had not
// said Attempting, once every message is acked.
func busyKey(t *testing.T, f pool.Fair, other bool, attempt func(nth int32) bool, reached func(inHand, busy int32) bool) (maxBusy int32) {
	t.Helper()
	cons, js := consumer(t, 30*time.Second, 0)
	ctx := context.Background()
	n := int32(20)
	if other {
		if _, err := js.Publish(ctx, "s.other.0", nil); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for i := range 20 {
		if _, err := js.Publish(ctx, fmt.Sprintf("s.flood.%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	it, err := cons.Messages(pool.Pull(8, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu           sync.Mutex
		inHand, busy int32
		nth, acked   int32
		reachedOnce  sync.Once
		reachedCh    = make(chan struct{})
		release      = make(chan struct{})
		allAcked     = make(chan struct{})
		rctx, cancel = context.WithCancel(ctx)
		done         = make(chan error, 1)
	)
	f.Key = tenantOf
	f.KeepAlive = 10 * time.Second
	go func() {
		done <- pool.RunFair(rctx, it, f, func(hctx context.Context, m jetstream.Msg) {
			if tenantOf(m) == "other" {
				<-release
				_ = m.Ack()
				if atomic.AddInt32(&acked, 1) == n {
					close(allAcked)
				}
				return
			}
			mu.Lock()
			nth++
			i := nth
			inHand++
			busy++
			maxBusy = max(maxBusy, busy)
			if attempt(i) {
				// Two overlapping attempts, one ended: still attempting.
				pool.Attempting(hctx)
				end := pool.Attempting(hctx)
				end()
				end() // again: no effect
				busy--
			}
			if reached(inHand, busy) {
				reachedOnce.Do(func() { close(reachedCh) })
			}
			mu.Unlock()
			<-release
			mu.Lock()
			inHand--
			if !attempt(i) {
				busy--
			}
			mu.Unlock()
			_ = m.Ack()
			if atomic.AddInt32(&acked, 1) == n {
				close(allAcked)
			}
		}, zap.NewNop())
	}()
	select {
	case <-reachedCh:
	case <-time.After(10 * time.Second):
		mu.Lock()
		t.Errorf("waited 10 s with %d messages in hand, %d of them busy", inHand, busy)
		mu.Unlock()
	}
	close(release)
	select {
	case <-allAcked:
	case <-time.After(10 * time.Second):
		t.Errorf("%d of %d messages handled in 10 s", atomic.LoadInt32(&acked), n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	return maxBusy
}

// A key's messages that wait on nothing remote (dispatch: fan-outs that
// only store tasks) are handled PerKeyBusy at a time, while those whose
// handlers said Attempting (first attempts) no longer count: the four
// attempting and two busy are in hand together, and never more than two
// busy.
func TestFairBoundsAKeysBusyMessages(t *testing.T) {
	t.Parallel()
	f := pool.Fair{Workers: 8, Buffer: 100, PerKeyBusy: 2}
	maxBusy := busyKey(t, f, true,
		func(nth int32) bool { return nth <= 4 },
		func(inHand, busy int32) bool { return inHand == 6 && busy == 2 })
	if maxBusy > 2 {
		t.Errorf("%d messages of one key handled at once without attempting, more than PerKeyBusy 2", maxBusy)
	}
}

// While the buffer is full, every key's next message waits in the stream
// behind the busy key's, so the busy key is not held to PerKeyBusy: its
// messages fill the workers it may have (PerKey).
func TestFairLiftsTheBusyBoundWhileTheBufferIsFull(t *testing.T) {
	t.Parallel()
	if got, want := unboundedBusy(t, 3, true); got != want {
		t.Errorf("%d messages of one key handled at once behind a full buffer, want %d (PerKey)", got, want)
	}
}

// A key alone is not held to PerKeyBusy: no other key's message waits
// behind its queues, and a lone tenant's burst of tasks (ordered
// deliveries) fans out with every worker it may have.
func TestFairDoesNotBoundAKeyAlone(t *testing.T) {
	t.Parallel()
	if got, want := unboundedBusy(t, 100, false); got != want {
		t.Errorf("%d messages of a key alone handled at once, want %d (PerKey)", got, want)
	}
}

// unboundedBusy runs busyKey with 4 workers, PerKeyBusy 1 and buffer
// until the key has PerKey in hand, none attempting; it returns the most
// busy at once, and PerKey.
func unboundedBusy(t *testing.T, buffer int, other bool) (got, perKey int32) {
	t.Helper()
	perKey = int32(pool.DefaultPerKey(4))
	got = busyKey(t, pool.Fair{Workers: 4, Buffer: buffer, PerKeyBusy: 1}, other,
		func(int32) bool { return false },
		func(inHand, _ int32) bool { return inHand == perKey })
	return got, perKey
}
