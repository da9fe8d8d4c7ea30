package subscription

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

// The consistency rule of the subscription view (docs/guarantees.md):
// an event is matched, and a task delivered, against a view that holds
// every registry change acknowledged before the lookup began. Every layer
// knows how current it is as a KV revision (its watermark): the Redis cache
// through WatermarkKey, the deliverers' memo through its own watch. A
// lookup first learns the registry's last revision (Horizon.Required, from
// a request sent after the lookup began) and uses a layer only when that
// layer's watermark reaches it; otherwise it waits briefly for the layer
// or reads the KV bucket itself.

// WatermarkKey holds the Redis cache's watermark: the highest KV revision
// W such that every change with a revision up to W is in the cache. Only
// Syncers advance it, after applying a change from their watch (which sees
// every change, in order) or after a complete replay; it is absent after a
// flush, which reads as 0 (nothing proven current).
const WatermarkKey = "hookline:subs:wm"

// advanceScript raises the watermark to ARGV[1] while the cache is ready.
// ARGV[2] is the watermark this Syncer last set: finding a lower one means
// Redis lost writes it acknowledged (a restart from an older snapshot, a
// failover to a replica that lagged), so the cache is marked not ready and
// replayed. Revisions are compared as decimal strings (length, then bytes).
// Returns 1 when the watermark is at least ARGV[1], 0 when the cache is not
// ready, -1 when Redis lost writes.
//
//	KEYS[1] watermark   KEYS[2] ready hash   ARGV[1] revision   ARGV[2] last set by the caller
var advanceScript = redis.NewScript(`
local function older(a, b)
  return #a < #b or (#a == #b and a < b)
end
if redis.call('HEXISTS', KEYS[2], '*') == 0 then return 0 end
local cur = redis.call('GET', KEYS[1]) or '0'
if older(cur, ARGV[2]) then
  redis.call('HDEL', KEYS[2], '*')
  redis.call('DEL', KEYS[1])
  return -1
end
if older(cur, ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
`)

// errRedisLostWrites restarts a Syncer's watch: a full replay.
var errRedisLostWrites = errors.New("redis lost subscription writes it had acknowledged (older snapshot or failover); replaying")

// advanceWatermark raises the cache's watermark to rev; prev is what this
// Syncer last set (0 for none). It returns the watermark to remember.
func (s *Syncer) advanceWatermark(ctx context.Context, rev, prev uint64) (uint64, error) {
	if rev <= prev {
		return prev, nil
	}
	res, err := advanceScript.Run(ctx, s.cache.rdb, []string{WatermarkKey, ReadyKey},
		strconv.FormatUint(rev, 10), strconv.FormatUint(prev, 10)).Int()
	switch {
	case err != nil:
		return prev, err
	case res < 0:
		return 0, errRedisLostWrites
	case res == 0:
		return prev, nil // not ready: the replay that marks it ready sets it
	}
	return rev, nil
}

// parseWatermark reads WatermarkKey's value ("" or unreadable: 0).
func parseWatermark(v string) uint64 {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// Horizon tells a lookup which registry revision its view must reach: the
// registry's last revision, read by a request sent after the lookup began
// (so it covers every change acknowledged before the event being matched
// was published). Concurrent lookups share requests: one is in flight at a
// time, every lookup that began while it was in flight waits for the next
// one, and a round starts at least MinRoundGap after the previous one
// began, so the cost is at most one small request (a stream info, about
// 1 KB) per MinRoundGap however many lookups there are. Measured without
// the gap: one per round trip, 3,000–6,000/s for a busy deliverer.
type Horizon struct {
	state   func(context.Context) (BucketState, error)
	timeout time.Duration
	gap     time.Duration

	mu      sync.Mutex
	running bool
	began   time.Time // when the last round began
	next    *horizonRound
}

// MinRoundGap is the least time between the starts of two Horizon rounds:
// it bounds the requests to 1,000/s per process and adds at most that to
// a lookup's wait.
const MinRoundGap = time.Millisecond

type horizonRound struct {
	done    chan struct{}
	st      BucketState
	err     error
	waiters int
}

// NewHorizon returns a Horizon over the store's last revision.
func NewHorizon(store *Store) *Horizon {
	return &Horizon{state: store.state, timeout: 5 * time.Second, gap: MinRoundGap}
}

func newHorizon(last func(context.Context) (uint64, error)) *Horizon {
	return &Horizon{state: func(ctx context.Context) (BucketState, error) {
		n, err := last(ctx)
		return BucketState{Last: n}, err
	}, timeout: 5 * time.Second, gap: MinRoundGap}
}

// Required returns the revision a view must reach to answer a lookup that
// began now. It fails when the registry cannot be asked (NATS down): then
// no view can be proven current.
func (h *Horizon) Required(ctx context.Context) (uint64, error) {
	st, err := h.RequiredState(ctx)
	return st.Last, err
}

// RequiredState is Required with the bucket's origin, read by the same
// request: a view whose revisions count in another bucket (its watch began
// before the bucket was deleted and created again) cannot answer, however
// high its own revision, and a Last below the revision a view has seen
// means the bucket was restored backwards (BucketState).
func (h *Horizon) RequiredState(ctx context.Context) (BucketState, error) {
	if h == nil {
		return BucketState{}, nil
	}
	h.mu.Lock()
	if h.next == nil {
		h.next = &horizonRound{done: make(chan struct{})}
	}
	r := h.next
	r.waiters++
	if !h.running {
		h.start()
	}
	h.mu.Unlock()
	select {
	case <-r.done:
		return r.st, r.err
	case <-ctx.Done():
		return BucketState{}, ctx.Err()
	}
}

// start runs the pending round; called with mu held. The round's request
// is sent once MinRoundGap has passed since the previous one began; until
// then lookups keep joining it (its request is still sent after each of
// them began).
func (h *Horizon) start() {
	h.running = true
	wait := h.gap - time.Since(h.began)
	go func() {
		if wait > 0 {
			time.Sleep(wait)
		}
		h.mu.Lock()
		r := h.next
		h.next, h.began = nil, time.Now()
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
		r.st, r.err = h.state(ctx)
		cancel()
		close(r.done)
		h.mu.Lock()
		h.running = false
		if h.next != nil {
			h.start()
		}
		h.mu.Unlock()
	}()
}

// BucketLastRevision is the newest revision of the subscriptions bucket kv
// (the last sequence of its stream), read from the stream's leader.
func BucketLastRevision(ctx context.Context, kv jetstream.KeyValue) (uint64, error) {
	st, err := ReadBucketState(ctx, kv)
	return st.Last, err
}

// BucketState is what a view must know of the subscriptions bucket to
// tell whether its revisions still count from where the view's did.
type BucketState struct {
	// Last is the newest revision (the stream's last sequence).
	Last uint64
	// Origin identifies the bucket's stream: its creation time (unix
	// nanoseconds). A bucket deleted and created again has another one,
	// and its revisions start over from 1. A stream restored from a backup
	// (nats stream restore) keeps the backed-up stream's creation time:
	// its revisions went back without a new origin, which only Last below
	// a revision the view already holds reveals.
	Origin int64
}

// ReadBucketState reads the bucket's state from its stream's leader.
func ReadBucketState(ctx context.Context, kv jetstream.KeyValue) (BucketState, error) {
	st, err := kv.Status(ctx)
	if err != nil {
		return BucketState{}, fmt.Errorf("subscription registry status: %w", err)
	}
	b, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || b.StreamInfo() == nil {
		return BucketState{}, errors.New("subscription registry status: no stream state")
	}
	info := b.StreamInfo()
	return BucketState{Last: info.State.LastSeq, Origin: info.Created.UnixNano()}, nil
}
