package pool

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Fair tunes RunFair.
type Fair struct {
	// Workers handle messages in parallel.
	Workers int
	// Buffer is how many messages may wait for a worker, taken from the
	// consumer ahead of the workers (at least 1), and BufferBytes how
	// many bytes of payload and headers they may hold (0: no byte bound;
	// the last message let in may pass it, however large).
	Buffer      int
	BufferBytes int64
	// Prefetch is the iterator's PullMaxMessages (default Workers): how
	// many messages it may hold that RunFair has not taken yet, their
	// AckWait running.
	Prefetch int
	// Key names the queue a message waits in (dispatch: its tenant).
	Key func(jetstream.Msg) string
	// KeepAlive: a message that has waited this long is told it is in
	// progress, and again every KeepAlive, so that its AckWait never runs
	// out while it waits (a third of AckWait).
	KeepAlive time.Duration
	// Waiting reports how many messages wait after each change (nil: not
	// reported).
	Waiting func(n int)
	// PerKey is the most messages of one key handled at once (default
	// DefaultPerKey): the workers beyond it are kept for the other keys,
	// so that a message of another key finds one free at once even while
	// one key's flood holds every other worker (each waiting for its
	// publishes' acknowledgements from a busy server).
	PerKey int
	// PerKeyBusy: no message of a key is taken while this many of its
	// messages in hand are busy, that is, their handlers are not in an
	// Attempting (waiting on a remote endpoint); an attempt that ends
	// counts busy again, so the busy may pass it by the attempts that
	// ended (0: no bound but PerKey). Dispatch: how many of a tenant's events
	// are fanned out into stored tasks at once. Storing is the broker's
	// work: a few fan-outs at once keep it as busy as many do, and the
	// many only lengthen the queues every other tenant's delivery waits
	// in (this process's run queue, its NATS connection, the server's).
	// The bound holds only while another key shares the workers: it has
	// messages waiting or in hand, or had one taken within OthersWithin.
	// A key alone is never held back: nobody waits behind its queues. It
	// is lifted while the buffer is full, or the consumer's ack window is
	// (WindowFull), since then every key's next message waits in the
	// stream behind the busy key's.
	PerKeyBusy int
	// OthersWithin is how long after another key's message was taken a
	// key is still held to PerKeyBusy (default DefaultOthersWithin), so
	// that a key whose messages come one at a time, a few seconds apart,
	// finds the busy key's queues as short as one that sends steadily.
	OthersWithin time.Duration
	// Release hands back a message still waiting when the run stops
	// (nil: NakWithDelay(ReleaseDelay), so that another replica, or this
	// one restarted, has it after ReleaseDelay). The messages the queue
	// holds are released by up to releasers goroutines at once; errors
	// are counted and said once, at the end.
	Release func(jetstream.Msg) error
	// WindowFull reports whether the consumer hands out nothing more for
	// now while messages wait in the stream (AckWindowFull): replicas
	// share its MaxAckPending, so a flood can take it all while this
	// replica's buffer has room. Asked every WindowCheck while a key's
	// messages wait only for PerKeyBusy (nil: never).
	WindowFull func(context.Context) bool
}

// DefaultOthersWithin is Fair.OthersWithin's default.
const DefaultOthersWithin = 10 * time.Second

// releasers is how many messages RunFair hands back at once when it stops
// (Fair.Release may be a round trip each).
const releasers = 16

// EachAtOnce calls fn for every item, on up to n goroutines at once, and
// returns when every call has: handing back what a stage holds when it
// stops, where each call may be a round trip to the server.
func EachAtOnce[T any](items []T, n int, fn func(T)) {
	next := make(chan T)
	var wg sync.WaitGroup
	for range min(n, len(items)) {
		wg.Go(func() {
			for it := range next {
				fn(it)
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
}

// WindowCheck is how often RunFair asks Fair.WindowFull while a key waits
// for PerKeyBusy.
const WindowCheck = 100 * time.Millisecond

// AckWindowFull is Fair.WindowFull for cons: its acknowledgements pending
// are at its MaxAckPending and messages wait in the stream behind them
// (false when that cannot be told: the bound then holds).
func AckWindowFull(cons jetstream.Consumer) func(context.Context) bool {
	return func(ctx context.Context) bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		info, err := cons.Info(ctx)
		if err != nil {
			return false
		}
		return info.Config.MaxAckPending > 0 && info.NumAckPending >= info.Config.MaxAckPending && info.NumPending > 0
	}
}

// DefaultPerKey keeps a sixteenth of the workers (at least one, when there
// are two or more) for the keys other than the busiest: 120 of 128.
func DefaultPerKey(workers int) int {
	if workers <= 1 {
		return 1
	}
	return workers - max(1, workers/16)
}

// MaxPrefetch bounds what SplitBuffer gives the iterator.
const MaxPrefetch = 1024

// SplitBuffer divides the messages a stage may fetch ahead of its workers
// (buffer) between the iterator's prefetch (Fair.Prefetch) and the queue
// RunFair serves by key (Fair.Buffer). The fetcher moves messages from the
// iterator to the queue as fast as the server hands them out, but the
// iterator asks for at most prefetch at a time, and again once half are
// taken: a backlog of n reaches the queue in about 2n/prefetch pulls, each
// a round trip to a server that is busy storing the backlog's work. At a
// worker's worth (128 in dispatch) another tenant's event behind a flood
// of 5,000 waited some 80 round trips, 100-250 ms on two loaded cores,
// before the queue could serve it in turn. So the iterator gets a quarter
// of the buffer, at least workers and at most MaxPrefetch, and the queue
// is smaller by what the iterator holds beyond a worker's worth: a replica
// holds what it held before, the buffer and twice its workers.
//
// Why not more: while the queue is full (a flood larger than it), the
// messages in the iterator wait in the order they came, and nobody tells
// them they are in progress until the fetcher takes them. One that waits
// there longer than AckWait is delivered again, and its event fanned out
// twice. At MaxPrefetch that takes a full queue draining slower than
// MaxPrefetch per AckWait (17 events/s at the default 60 s: a tenant's
// events matching a thousand subscriptions each on two cores); at 2,048
// it took 34/s.
func SplitBuffer(workers, buffer int) (prefetch, queue int) {
	workers = max(workers, 1)
	prefetch = max(workers, min(buffer/4, MaxPrefetch))
	queue = max(1, buffer-(prefetch-workers))
	return prefetch, queue
}

// SplitBytes divides the buffer's byte bound as SplitBuffer divides its
// events: a pull asks for at most an eighth of it (and the iterator, which
// asks again once half is taken, holds about a quarter), but always for
// at least two of the largest messages the server takes, which a pull
// must be able to hold; the queue keeps the rest, at least 1 MiB. When
// the largest message is not known (maxPayload 0: not connected), a pull
// has no byte bound (0), as before the split, rather than one that a
// server with a larger max_payload could leave an event stuck behind.
func SplitBytes(buffer, maxPayload int64) (pull int, queue int64) {
	if maxPayload <= 0 {
		return 0, buffer
	}
	p := max(buffer/8, 2*maxPayload)
	return int(p), max(buffer-2*p, 1<<20)
}

// RunFair calls handle with Workers goroutines until ctx ends, with a
// fair buffer between the consumer and the workers: up to Buffer messages are taken from the iterator as soon as it has
// them and queued by Key; the workers serve the keys in turn, one message
// of each key that has any waiting. One key's backlog, as long as it fits
// in the buffer, therefore delays another key's message by at most one
// message per busy key, not by the backlog: the other key's message is
// fetched at once, behind the backlog in the stream but ahead of it here.
// Within a key, messages are handled in the order they came.
//
// Messages wait in the buffer with their AckWait running: each is told it
// is in progress once it has waited KeepAlive (counted from when it may
// have been delivered to the iterator), and every KeepAlive after that,
// until a worker takes it. Stopping: no new message is handled once ctx
// ends, and those still waiting are handed back (Fair.Release) at once,
// while the handlers in hand finish; it returns when they have. It
// returns an error when the iterator closes by itself (consumer deleted,
// connection closed). A handler that panics is logged with its stack and
// its message nak'ed (PanicNakDelay); the other workers go on.
func RunFair(ctx context.Context, it jetstream.MessagesContext, o Fair, handle Handler, log *zap.Logger) error {
	if o.Workers < 1 {
		o.Workers = 1
	}
	if o.Buffer < 1 {
		o.Buffer = 1
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 20 * time.Second
	}
	if o.Key == nil {
		o.Key = func(jetstream.Msg) string { return "" }
	}
	if o.Prefetch < 1 {
		o.Prefetch = o.Workers
	}
	if o.PerKey < 1 {
		o.PerKey = DefaultPerKey(o.Workers)
	}
	if o.OthersWithin <= 0 {
		o.OthersWithin = DefaultOthersWithin
	}
	hctx := context.WithoutCancel(ctx)
	q := newFairQueue(o)
	stop := context.AfterFunc(ctx, func() {
		it.Drain()
		q.close()
	})
	defer stop()

	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	// Handing back fails for every message at once when the connection is
	// gone: said once, at the end, not once per message of the buffer.
	var (
		relMu     sync.Mutex
		relFailed int
		relErr    error
	)
	handBack := o.Release
	if handBack == nil {
		handBack = func(msg jetstream.Msg) error { return msg.NakWithDelay(ReleaseDelay) }
	}
	release := func(msg jetstream.Msg) {
		if err := handBack(msg); err != nil {
			relMu.Lock()
			relFailed++
			relErr = err
			relMu.Unlock()
		}
	}

	// The fetcher moves messages from the iterator to the queue. It waits
	// for room before it takes one, never with one in hand (a message held
	// while the queue is full had no keep-alive). Meanwhile the iterator's
	// own buffered messages wait with their AckWait running: the iterator
	// asks for messages only within Next and holds at most Prefetch asked
	// for and not yet taken, so a message was delivered after the one
	// taken Prefetch messages before it. That time (twice Prefetch back,
	// as an iterator that missed a heartbeat asks anew while its old pull
	// may still deliver) is when its wait counts from: one that has
	// waited KeepAlive by then is told it is in progress at once.
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		defer q.close()
		taken := make([]time.Time, 2*o.Prefetch) // ring: when the last messages were taken
		start := time.Now()
		for i := range taken {
			taken[i] = start
		}
		for n := 0; ; n++ {
			q.waitRoom()
			msg, err := it.Next()
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				if ctx.Err() == nil {
					errOnce.Do(func() { runErr = fmt.Errorf("message iterator closed: %w", err) })
				}
				return
			}
			if err != nil {
				continue // not terminal: the iterator keeps pulling
			}
			slot := n % len(taken)
			since := taken[slot]
			now := time.Now()
			taken[slot] = now
			if ctx.Err() != nil {
				release(msg)
				continue
			}
			stale, ok := q.put(o.Key(msg), msg, since, now)
			if !ok {
				release(msg)
				continue
			}
			if stale {
				_ = msg.InProgress()
			}
		}
	}()

	// The keeper keeps waiting messages alive, and hands them back the
	// moment the queue closes, not once the handlers in hand finish (until
	// then another replica could not have them, and a process killed
	// meanwhile left them to their AckWait).
	keepDone := make(chan struct{})
	go func() {
		defer close(keepDone)
		t := time.NewTicker(o.KeepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-q.closed:
				EachAtOnce(q.rest(), releasers, release)
				return
			case now := <-t.C:
				for _, m := range q.stale(now) {
					_ = m.InProgress()
				}
			}
		}
	}()

	// The window watch lifts PerKeyBusy while the consumer's ack window
	// is full, asking only while a key waits for that bound alone.
	windowDone := make(chan struct{})
	go func() {
		defer close(windowDone)
		if o.WindowFull == nil || o.PerKeyBusy <= 0 {
			return
		}
		t := time.NewTicker(WindowCheck)
		defer t.Stop()
		for {
			select {
			case <-q.closed:
				return
			case <-t.C:
			}
			q.liftBusy(q.heldBack() && o.WindowFull(ctx))
		}
	}()

	for range o.Workers {
		wg.Go(func() {
			for {
				msg, key, received, ok := q.take()
				if !ok {
					return
				}
				if ctx.Err() != nil {
					q.finish(key, false)
					release(msg)
					continue
				}
				h := &handling{q: q, key: key}
				safely(context.WithValue(WithReceived(hctx, received), handlingKey{}, h), held.track(msg), handle, log)
				q.finish(key, h.done())
			}
		})
	}
	wg.Wait()
	<-fetched
	<-keepDone
	<-windowDone
	for _, msg := range q.rest() {
		release(msg)
	}
	it.Stop()
	if relFailed > 0 {
		log.Warn("messages not handed back at stop: redelivered once their AckWait runs out",
			zap.Int("messages", relFailed), zap.Error(relErr))
	}
	return runErr
}

// fairQueue holds the messages waiting for a worker, a FIFO per key, and
// the keys with messages waiting in the order they are served.
type fairQueue struct {
	o  Fair
	mu sync.Mutex
	// work wakes a worker waiting in take: one at a time (Signal) when a
	// message is put, a message in hand ends or stops being busy, and each
	// worker that takes one wakes the next while messages wait, so that a
	// put does not wake every idle worker only for all but one to find
	// nothing it may take (128 workers, most of them idle while a flood is
	// held to a few fan-outs: a fifth of the deliverer's CPU went to those
	// wake-ups). A change that may free several keys at once (the ack
	// window, a held key's window passing, closing) wakes them all.
	work *sync.Cond
	// room wakes the fetcher waiting for room (waitRoom).
	room *sync.Cond
	// waiters: workers waiting in take and not yet woken; idleWakes: how
	// often one woke and found nothing it may take (what a wake-up costs
	// for nothing).
	waiters, idleWakes int
	keys               map[string]*keyQueue
	ring               []*keyQueue    // keys with messages waiting, next to serve first
	inHand             map[string]int // messages of each key being handled
	// attempting counts those of inHand whose handlers said they wait on
	// a remote endpoint (Attempting).
	attempting map[string]int
	// windowFull: the consumer's ack window was full when last asked
	// (Fair.WindowFull), which lifts PerKeyBusy.
	windowFull bool
	// lastTaken: the two keys whose messages were taken last, newest
	// first, each with when: the newest taken of every key but k is
	// lastTaken[0] when its key is not k, else lastTaken[1].
	lastTaken [2]taken
	now       func() time.Time
	// wake broadcasts at wakeAt, when a key held back only by another
	// key's recent take is alone (nothing else would wake its workers).
	wake    *time.Timer
	wakeAt  time.Time
	n       int
	bytes   int64
	done    bool
	closed  chan struct{}
	closeMu sync.Once
}

type taken struct {
	key string
	at  time.Time
}

type keyQueue struct {
	key  string
	msgs []waiting
}

type waiting struct {
	msg      jetstream.Msg
	size     int64
	touched  time.Time // when it came (at the earliest), or was last told it is in progress
	received time.Time // when the fetcher took it: after the server handed it out
}

func newFairQueue(o Fair) *fairQueue {
	q := &fairQueue{o: o, keys: map[string]*keyQueue{}, inHand: map[string]int{}, attempting: map[string]int{}, closed: make(chan struct{}), now: time.Now}
	q.work = sync.NewCond(&q.mu)
	q.room = sync.NewCond(&q.mu)
	return q
}

func msgSize(m jetstream.Msg) int64 {
	n := int64(len(m.Data()))
	for k, vs := range m.Headers() {
		for _, v := range vs {
			n += int64(len(k) + len(v) + 4)
		}
	}
	return n
}

// waitRoom returns once the queue has room for a message, or is closed.
// It has one caller, the fetcher: take wakes it with room.Signal.
func (q *fairQueue) waitRoom() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for !q.done && q.n > 0 && q.full() {
		q.room.Wait()
	}
}

// put queues msg under key (after waitRoom: it does not wait), taken
// from the iterator at received, its wait counted from since; stale says
// that it has waited KeepAlive already and is to be told it is in
// progress now (counted as told). False when the queue is closed (msg not
// queued).
func (q *fairQueue) put(key string, msg jetstream.Msg, since, received time.Time) (stale, ok bool) {
	size := msgSize(msg)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.done {
		return false, false
	}
	kq := q.keys[key]
	if kq == nil {
		kq = &keyQueue{key: key}
		q.keys[key] = kq
	}
	if len(kq.msgs) == 0 {
		q.ring = append(q.ring, kq)
	}
	if received.Sub(since) >= q.o.KeepAlive {
		since, stale = received, true
	}
	kq.msgs = append(kq.msgs, waiting{msg: msg, size: size, touched: since, received: received})
	q.n++
	q.bytes += size
	q.report()
	q.wakeOne()
	return stale, true
}

// take returns the first message of the next key in turn that has fewer
// than PerKey in hand, its key, and when it was received, waiting for
// one; false once the queue is closed (what still waits is left for
// rest). The caller says when it is done with it (finish).
func (q *fairQueue) take() (jetstream.Msg, string, time.Time, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var kq *keyQueue
	for woken := false; kq == nil; woken = true {
		if q.done {
			return nil, "", time.Time{}, false
		}
		for i, k := range q.ring {
			if q.mayTake(k.key) {
				kq = k
				q.ring = append(q.ring[:i], q.ring[i+1:]...)
				break
			}
		}
		if kq == nil {
			if woken {
				q.idleWakes++
			}
			q.wakeWhenAlone()
			q.waiters++
			q.work.Wait() // for a message, or a key below its share (wakeOne, wakeAll)
		}
	}
	w := kq.msgs[0]
	kq.msgs[0] = waiting{}
	kq.msgs = kq.msgs[1:]
	if len(kq.msgs) > 0 {
		q.ring = append(q.ring, kq) // its next message waits for its next turn
	} else {
		delete(q.keys, kq.key)
	}
	q.inHand[kq.key]++
	q.noteTaken(kq.key)
	q.n--
	q.bytes -= w.size
	q.report()
	q.room.Signal()
	if q.n > 0 {
		q.wakeOne() // the next worker, for what still waits
	}
	return w.msg, kq.key, w.received, true
}

// mayTake reports whether another message of key may be handled now:
// fewer than PerKey in hand, and not held back (boundBusy). Whatever
// loosens it must wake a waiting worker (wakeOne, or wakeAll when it may
// free several keys at once): workers are not all woken on every change.
func (q *fairQueue) mayTake(key string) bool {
	if q.inHand[key] >= q.o.PerKey {
		return false
	}
	return !q.boundBusy(key) || q.full() || q.windowFull
}

// boundBusy reports whether key is held to PerKeyBusy (lifted or not):
// PerKeyBusy of its messages in hand are busy while another key shares
// the workers.
func (q *fairQueue) boundBusy(key string) bool {
	return q.o.PerKeyBusy > 0 && q.busy(key) >= q.o.PerKeyBusy && q.shared(key)
}

// shared reports whether a key other than key had a message taken within
// OthersWithin, or has messages waiting or in hand.
func (q *fairQueue) shared(key string) bool {
	return q.now().Before(q.aloneAt(key)) || q.othersActive(key)
}

// aloneAt is when OthersWithin will have passed since a message of a key
// other than key was last taken (zero: none ever was).
func (q *fairQueue) aloneAt(key string) time.Time {
	t := q.lastTaken[0]
	if t.key == key {
		t = q.lastTaken[1]
	}
	if t.at.IsZero() {
		return time.Time{}
	}
	return t.at.Add(q.o.OthersWithin)
}

// othersActive reports whether a key other than key has messages waiting
// or in hand.
func (q *fairQueue) othersActive(key string) bool {
	for k := range q.inHand {
		if k != key {
			return true
		}
	}
	for _, k := range q.ring {
		if k.key != key {
			return true
		}
	}
	return false
}

// wakeWhenAlone arms wake for the earliest time a key held back only by
// another key's recent take will be alone (q.mu held). A key held while
// other keys have messages waiting or in hand is woken by their takes
// and finishes.
func (q *fairQueue) wakeWhenAlone() {
	if q.o.PerKeyBusy <= 0 || q.full() || q.windowFull {
		return
	}
	now := q.now()
	var at time.Time
	for _, k := range q.ring {
		if q.busy(k.key) < q.o.PerKeyBusy {
			continue
		}
		t := q.aloneAt(k.key)
		if !now.Before(t) || q.othersActive(k.key) {
			continue // not held, or woken by the others' takes and finishes
		}
		if at.IsZero() || t.Before(at) {
			at = t
		}
	}
	if at.IsZero() || q.wake != nil && !q.wakeAt.After(at) {
		return
	}
	if q.wake != nil {
		q.wake.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(at.Sub(now), func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		if q.wake == t {
			q.wake = nil
		}
		q.wakeAll()
	})
	q.wake, q.wakeAt = t, at
}

// wakeOne wakes one worker waiting in take, if one waits (q.mu held).
func (q *fairQueue) wakeOne() {
	if q.waiters > 0 {
		q.waiters--
		q.work.Signal()
	}
}

// wakeAll wakes every worker waiting in take (q.mu held).
func (q *fairQueue) wakeAll() {
	q.waiters = 0
	q.work.Broadcast()
}

// noteTaken records that a message of key was taken now.
func (q *fairQueue) noteTaken(key string) {
	now := q.now()
	if q.lastTaken[0].key != key {
		q.lastTaken[1] = q.lastTaken[0]
	}
	q.lastTaken[0] = taken{key: key, at: now}
}

// busy is how many of key's messages in hand are not attempting.
func (q *fairQueue) busy(key string) int { return q.inHand[key] - q.attempting[key] }

// heldBack reports whether a key's messages wait while it is held to
// PerKeyBusy (lifted or not).
func (q *fairQueue) heldBack() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, k := range q.ring {
		if q.boundBusy(k.key) {
			return true
		}
	}
	return false
}

// liftBusy says whether the consumer's ack window is full.
func (q *fairQueue) liftBusy(full bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if full != q.windowFull {
		q.windowFull = full
		q.wakeAll()
	}
}

// full reports whether the fetcher waits for room (waitRoom).
func (q *fairQueue) full() bool {
	return q.n >= q.o.Buffer || (q.o.BufferBytes > 0 && q.bytes >= q.o.BufferBytes)
}

// finish says a message of key taken is handled; attempting, that its
// handler had said so (Attempting).
func (q *fairQueue) finish(key string, attempting bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.inHand[key]--; q.inHand[key] <= 0 {
		delete(q.inHand, key)
	}
	if attempting {
		q.countAttempting(key, -1)
	}
	q.wakeOne()
}

// countAttempting adds by to key's attempting count (q.mu held).
func (q *fairQueue) countAttempting(key string, by int) {
	if q.attempting[key] += by; q.attempting[key] <= 0 {
		delete(q.attempting, key)
	}
}

// attempt counts a message of key in hand as attempting (by 1 or -1).
func (q *fairQueue) attempt(key string, by int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.countAttempting(key, by)
	q.wakeOne() // the key may be below PerKeyBusy now
}

// handling is a message in a handler's hands, for Attempting.
type handling struct {
	q        *fairQueue
	key      string
	mu       sync.Mutex
	attempts int // Attempting not yet ended
	finished bool
}

type handlingKey struct{}

// Attempting tells RunFair that the handler's message waits on a remote
// endpoint (dispatch: a first attempt holding a direct token), not on this
// process or the broker, until the returned func is called: meanwhile it
// does not count against Fair.PerKeyBusy. Attempts may overlap (one
// message's several first attempts); the message counts as attempting
// while any runs. Outside RunFair, no effect.
func Attempting(ctx context.Context) (end func()) {
	h, _ := ctx.Value(handlingKey{}).(*handling)
	if h == nil {
		return func() {}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.finished {
		return func() {}
	}
	if h.attempts++; h.attempts == 1 {
		h.q.attempt(h.key, 1)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			h.mu.Lock()
			defer h.mu.Unlock()
			if h.finished {
				return
			}
			if h.attempts--; h.attempts == 0 {
				h.q.attempt(h.key, -1)
			}
		})
	}
}

// done ends the handling (an attempt the handler left running no longer
// counts) and says whether it was still counted attempting, for finish.
func (h *handling) done() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.finished = true
	return h.attempts > 0
}

type receivedKey struct{}

// WithReceived tells a handler when its message was received (Received).
func WithReceived(ctx context.Context, at time.Time) context.Context {
	return context.WithValue(ctx, receivedKey{}, at)
}

// Received is when RunFair took the handler's message from the iterator:
// after the server handed it out, so after it was stored (dispatch: any
// registry request sent since then sees every subscription change
// acknowledged before the event was published). The zero time when not
// known.
func Received(ctx context.Context) time.Time {
	at, _ := ctx.Value(receivedKey{}).(time.Time)
	return at
}

// stale returns the messages that have waited KeepAlive since they came
// or were last told they are in progress, marking them told now.
func (q *fairQueue) stale(now time.Time) []jetstream.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []jetstream.Msg
	for _, kq := range q.ring {
		for i := range kq.msgs {
			if now.Sub(kq.msgs[i].touched) >= q.o.KeepAlive {
				kq.msgs[i].touched = now
				out = append(out, kq.msgs[i].msg)
			}
		}
	}
	return out
}

func (q *fairQueue) close() {
	q.closeMu.Do(func() {
		q.mu.Lock()
		q.done = true
		if q.wake != nil {
			q.wake.Stop()
		}
		q.wakeAll()
		q.room.Broadcast()
		q.mu.Unlock()
		close(q.closed)
	})
}

// rest empties the queue, returning what waited in it.
func (q *fairQueue) rest() []jetstream.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []jetstream.Msg
	for _, kq := range q.ring {
		for _, w := range kq.msgs {
			out = append(out, w.msg)
		}
	}
	q.ring, q.keys, q.n, q.bytes = nil, map[string]*keyQueue{}, 0, 0
	q.report()
	return out
}

func (q *fairQueue) report() {
	if q.o.Waiting != nil {
		q.o.Waiting(q.n)
	}
}
