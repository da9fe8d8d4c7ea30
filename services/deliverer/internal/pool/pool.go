// Package pool runs a bounded pool of workers over a JetStream pull
// iterator: consumer.Messages() with N goroutines calling Next(), which is
// how a consumer gets parallel handlers (Consume runs its callback serially).
package pool

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// PanicNakDelay is how long a message whose handler panicked waits before
// it is redelivered. Its redeliveries are bounded like any other's (the
// deliver stage dead-letters a task past HOOKLINE_MAX_REDELIVERIES).
const PanicNakDelay = 5 * time.Second

// ReleaseDelay is how long a message that was still buffered when the pool
// stopped (never handed to its handler) waits before it is redelivered, to
// another replica or to this one restarted.
const ReleaseDelay = time.Second

// Handler handles one message and settles it (ack, nak, term). Its context
// is not cancelled at shutdown: an attempt in flight finishes, bounded by
// the handler's own timeouts.
type Handler func(ctx context.Context, msg jetstream.Msg)

// Run calls handle with workers goroutines until ctx ends, then drains the
// iterator (no more pulls) and returns when every worker is done. It
// returns an error when the iterator closes by itself (consumer deleted,
// connection closed).
//
// Buffered messages. The iterator pulls up to its PullMaxMessages ahead of
// the workers, and a buffered message's AckWait runs while it waits for a
// worker — up to the time the worker ahead of it holds its own message (an
// HTTP attempt). A message can only have waited as long as the worker
// that takes it was busy with its previous one, so a worker whose
// previous message took longer than slowHandle sends InProgress for the
// next one the moment it takes it: its handler starts with a whole
// AckWait, whatever it waited. (Sent for every message, it cost a fifth
// of nats-server's work per delivery at full speed.)
// AckWait must still exceed that wait (deliverer: HOOKLINE_ACK_WAIT ≥
// HOOKLINE_HTTP_TIMEOUT + 5s).
//
// Stopping. Once ctx ends no new message is handled: those still buffered
// are nak'ed (ReleaseDelay) without being handed to the handler, so a stop
// waits only for the messages already in hand, never for a second round
// of attempts.
//
// A handler that panics does not take the process down with the work of
// every other worker: the panic is logged with its stack and the message
// nak'ed for a later redelivery.
func Run(ctx context.Context, it jetstream.MessagesContext, workers int, handle Handler, log *zap.Logger) error {
	hctx := context.WithoutCancel(ctx)
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		runErr  error
	)
	for range workers {
		wg.Go(func() {
			var last time.Duration // the previous handler's time
			for {
				msg, err := it.Next()
				if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
					if ctx.Err() == nil {
						errOnce.Do(func() { runErr = fmt.Errorf("message iterator closed: %w", err) })
					}
					return
				}
				if err != nil {
					// Not terminal (a missed heartbeat, a reconnect): the
					// iterator keeps pulling. A terminal error stops it, and
					// the next Next says so.
					continue
				}
				if ctx.Err() != nil {
					// Buffered, never started: handed back, not attempted
					// after the stop.
					if err := msg.NakWithDelay(ReleaseDelay); err != nil {
						log.Warn("release buffered message at stop", zap.String("subject", msg.Subject()), zap.Error(err))
					}
					continue
				}
				// The AckWait of a message that may have waited long in
				// the buffer is restarted before its handler runs (see
				// above).
				if last > slowHandle {
					_ = msg.InProgress()
				}
				began := time.Now()
				safely(hctx, held.track(msg), handle, log)
				last = time.Since(began)
			}
		})
	}
	wg.Wait()
	it.Stop()
	return runErr
}

// PullExpiry is how long one pull request of a stage's iterator lives.
// nats.go's default, 30 s, was also how long a stage could sit idle with
// messages waiting when the server no longer held the iterator's pull:
// seen in make bench as 30 s stalls (consumer num_waiting 0, num_pending
// over a thousand). With 5 s, a lost pull is noticed (missed heartbeats,
// every 2.5 s) and replaced within seconds.
const PullExpiry = 5 * time.Second

// Pull is the options of a stage's message iterator: at most max messages
// buffered, pulls that expire after PullExpiry, and, when maxBytes > 0,
// no pull asking for more than maxBytes (keep it above the largest
// message: the server refuses a pull smaller than its next message).
func Pull(max, maxBytes int) []jetstream.PullMessagesOpt {
	if maxBytes > 0 {
		return []jetstream.PullMessagesOpt{jetstream.PullMaxMessagesWithBytesLimit(max, maxBytes), jetstream.PullExpiry(PullExpiry)}
	}
	return []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(max), jetstream.PullExpiry(PullExpiry)}
}

// slowHandle: after a handler this slow, the next message a worker takes
// may have waited in the buffer long enough to need a fresh AckWait.
const slowHandle = time.Second

func safely(ctx context.Context, msg *heldMsg, handle Handler, log *zap.Logger) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("message handler panicked; message nak'ed", zap.String("subject", msg.Subject()),
				zap.Any("panic", r), zap.Stack("stack"))
			_ = msg.NakWithDelay(PanicNakDelay)
		}
	}()
	handle(ctx, msg)
}

// Unsettled describes a message a handler took and has not settled yet
// (acked, nak'ed or terminated): an attempt in hand, or a task waiting in
// a line.
type Unsettled struct {
	Subject string
	// Seq is its stream sequence; Since when a worker took it.
	Seq   uint64
	Since time.Time
}

// Held lists every message of this process's pools taken and not yet
// settled, oldest first. A process that exits now abandons exactly these:
// JetStream redelivers each after AckWait, and one whose attempt had
// already been POSTed is delivered twice.
func Held() []Unsettled { return held.list() }

var held = &registry{msgs: map[*heldMsg]struct{}{}}

type registry struct {
	mu   sync.Mutex
	msgs map[*heldMsg]struct{}
}

func (r *registry) track(msg jetstream.Msg) *heldMsg {
	h := &heldMsg{Msg: msg, r: r, since: time.Now()}
	if md, err := msg.Metadata(); err == nil {
		h.seq = md.Sequence.Stream
	}
	r.mu.Lock()
	r.msgs[h] = struct{}{}
	r.mu.Unlock()
	return h
}

func (r *registry) list() []Unsettled {
	r.mu.Lock()
	out := make([]Unsettled, 0, len(r.msgs))
	for h := range r.msgs {
		out = append(out, Unsettled{Subject: h.Subject(), Seq: h.seq, Since: h.since})
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// heldMsg is a message in a handler's hands: it leaves the registry when
// it is settled (whether the settling call succeeded or not: either way
// the handler is done with it).
type heldMsg struct {
	jetstream.Msg
	r     *registry
	seq   uint64
	since time.Time
}

func (h *heldMsg) settled() {
	h.r.mu.Lock()
	delete(h.r.msgs, h)
	h.r.mu.Unlock()
}

func (h *heldMsg) Ack() error { defer h.settled(); return h.Msg.Ack() }
func (h *heldMsg) DoubleAck(ctx context.Context) error {
	defer h.settled()
	return h.Msg.DoubleAck(ctx)
}
func (h *heldMsg) Nak() error { defer h.settled(); return h.Msg.Nak() }
func (h *heldMsg) NakWithDelay(d time.Duration) error {
	defer h.settled()
	return h.Msg.NakWithDelay(d)
}
func (h *heldMsg) Term() error { defer h.settled(); return h.Msg.Term() }
func (h *heldMsg) TermWithReason(reason string) error {
	defer h.settled()
	return h.Msg.TermWithReason(reason)
}

// KeepAlive sends InProgress every interval until stop is called, so that
// a message in hand (a task whose attempt runs long, an event whose first
// attempts run from dispatch) is not redelivered meanwhile.
func KeepAlive(msg jetstream.Msg, every time.Duration) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		timer   *time.Timer
	)
	mu.Lock()
	defer mu.Unlock()
	timer = time.AfterFunc(every, func() {
		_ = msg.InProgress()
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			timer.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		timer.Stop()
	}
}
