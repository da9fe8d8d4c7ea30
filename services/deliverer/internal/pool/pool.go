// Package pool runs a bounded pool of workers over a JetStream pull
// iterator: consumer.Messages() with N goroutines calling Next(), which is
// how a consumer gets parallel handlers (Consume runs its callback serially).
package pool

import (
	"context"
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
