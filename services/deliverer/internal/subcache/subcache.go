// Package subcache is the deliverer's in-process memo of subscription
// lookups, in front of the shared Redis cache (subscription.Cache).
//
// Without it every event costs one Redis round trip and a protojson decode
// of every subscription of its tenant (dispatch), and every attempt one more
// round trip and decode (deliver): half of the deliverer's CPU in `make
// bench`. The memo keeps the answers of ForEvent (per tenant and event
// type) and Get (per tenant and id) and forgets a tenant's answers as soon
// as a watch of the KV bucket (the truth) reports a change to any of its
// subscriptions. The watch is the memo's own, not the subscription.Syncer's
// that keeps Redis coherent: the Syncer's stops and replays whenever Redis
// fails, and the memo must keep learning of changes while Redis is down
// (the lookups it does not answer then fall back to the KV store).
//
// Until the watch has replayed the current keys (revisions only), and
// whenever it breaks, the memo is bypassed: every lookup goes to the next
// cache. A watch learns that its server went away only when heartbeats go
// missing (about 20 s after a nats-server restart, during which it saw no
// change): so the memo also stops trusting itself the moment the NATS
// connection drops or reconnects (WithConn), and watches again.
//
// The memo knows how current it is: seen, the newest revision its watch
// reported (every change up to it has invalidated its tenant). A lookup
// needs a revision (the registry's last one when the lookup began, from a
// subscription.Horizon; for a task, the one its event was matched at): the
// memo answers only once seen reaches it, waiting up to CatchUp for its
// watch, and otherwise asks the next cache for that revision and restarts
// its watch (a watch that lags that long is presumed dead). What it fetches
// from the next cache it asks for at the revision it has seen at least, so
// a stored answer is never older than the memo's own knowledge; an answer
// that raced with a change is not stored (a global generation counter);
// entries expire after TTL as a safety net. Errors and "not found" are
// never memoised. Current(rev) tells a writer when its change is seen.
// Callers must treat the returned subscriptions as read-only: they are
// shared.
package subcache

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Defaults.
const (
	// DefaultTTL bounds how long an answer is reused even without a change.
	DefaultTTL = time.Minute
	// DefaultMaxEntries bounds the memo; past it, it starts over empty.
	DefaultMaxEntries = 100000
	// CatchUp is how long a lookup waits for the watch to report the
	// revision it needs before it asks the next cache and has the watch
	// restarted.
	CatchUp         = 250 * time.Millisecond
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Source is what the memo sits in front of (subscription.Cache): lookups
// from a view that holds every registry change up to revision need.
type Source interface {
	ForEventAt(ctx context.Context, tenant, eventType string, need uint64) ([]*hooklinev1.Subscription, error)
	GetAt(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error)
}

// Horizon gives the revision a lookup that begins now must see
// (subscription.Horizon).
type Horizon interface {
	Required(ctx context.Context) (uint64, error)
}

type forEventEntry struct {
	subs    []*hooklinev1.Subscription
	expires time.Time
}

type getEntry struct {
	sub     *hooklinev1.Subscription
	expires time.Time
}

type tenantMemo struct {
	byType map[string]forEventEntry
	byID   map[string]getEntry
}

// Memo memoises subscription lookups; see the package documentation.
type Memo struct {
	next Source
	kv   jetstream.KeyValue
	log  *zap.Logger
	ttl  time.Duration
	max  int
	now  func() time.Time

	// interrupted says the connection dropped or came back (WithConn).
	interrupted <-chan struct{}
	conn        *nats.Conn

	horizon Horizon
	restart chan struct{} // a lookup found the watch lagging

	watching atomic.Bool
	// epoch is the connection's reconnect count when the watch replayed.
	epoch atomic.Uint64
	gen   atomic.Uint64 // bumped by every change seen
	seen  atomic.Uint64 // newest KV revision the watch reported
	// lagUntil (unix nanos): a lookup waited CatchUp in vain; until then
	// lookups the memo cannot answer do not wait for it.
	lagUntil atomic.Int64
	lagged   atomic.Uint64 // lookups the memo could not answer in time
	// advanced is closed (and replaced) whenever seen moves.
	advMu    sync.Mutex
	advanced chan struct{}

	mu      sync.RWMutex
	tenants map[string]*tenantMemo
	entries int
}

// Option changes a Memo.
type Option func(*Memo)

// WithConn is the NATS connection of the watch: the memo is bypassed from
// the moment it drops or reconnects until a new watch has replayed.
func WithConn(nc *nats.Conn) Option { return func(m *Memo) { m.conn = nc } }

// WithHorizon sets where ForEvent learns the revision it needs (default:
// none; every answer is as current as the memo's watch).
func WithHorizon(h Horizon) Option { return func(m *Memo) { m.horizon = h } }

// New returns a memo in front of next, invalidated by watching kv (the
// subscriptions bucket). Run must run for the memo to be used.
func New(next Source, kv jetstream.KeyValue, log *zap.Logger, opts ...Option) *Memo {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Memo{next: next, kv: kv, log: log, ttl: DefaultTTL, max: DefaultMaxEntries, now: time.Now,
		tenants: map[string]*tenantMemo{}, restart: make(chan struct{}, 1), advanced: make(chan struct{})}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Run watches the bucket until ctx ends (then nil), restarting the watch
// with backoff when it breaks; the memo is bypassed while it is down.
func (m *Memo) Run(ctx context.Context) error {
	m.interrupted = natsconn.Interruptions(ctx, m.conn)
	backoff := watchBackoffMin
	for {
		err := m.watch(ctx)
		m.watching.Store(false)
		m.clear()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errInterrupted) || errors.Is(err, errLagging) {
			backoff = watchBackoffMin
		}
		m.log.Warn("subscription memo watch interrupted; lookups go to redis meanwhile", zap.Error(err), zap.Duration("backoff", backoff))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

func (m *Memo) watch(ctx context.Context) error {
	// Keys and revisions only: the memo forgets, it never reads a value.
	// The replay of the current keys ends with a nil entry and the memo is
	// used from then on, empty: it is current for every revision replayed,
	// and for every revision up to the bucket's last one before the watch
	// began (the replay's own may be lower when the newest were purged).
	floor, err := subscription.BucketLastRevision(ctx, m.kv)
	if err != nil {
		return err
	}
	select {
	case <-m.restart: // a request from the watch being replaced
	default:
	}
	w, err := m.kv.WatchAll(ctx, jetstream.MetaOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.interrupted:
			return errInterrupted
		case <-m.restart:
			return errLagging
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchClosed
			}
			if e == nil {
				m.advance(floor)
				m.clear()
				m.epoch.Store(m.reconnects())
				m.watching.Store(true)
				continue
			}
			m.changed(e.Revision(), e.Key())
		}
	}
}

// changed records a change the watch reported: revision rev of key.
//
// seen moves and the tenant is forgotten under one write lock, so that
// neither order leaves a window: a lookup that finds seen at rev reads the
// memo only after the tenant is gone (memo reads take the read lock), and
// one that stores an answer does so before the tenant is forgotten (and it
// goes with it) or after, when the generation it read first has moved.
// Within the lock seen moves before the generation: a fetch that reads
// the new generation (fetchRev) then reads seen at rev at least, and asks
// the next cache for a view that holds the change.
func (m *Memo) changed(rev uint64, key string) {
	if !m.watching.Load() {
		m.advance(rev) // replaying: the memo is cleared when it ends
		return
	}
	tenant, _, _ := strings.Cut(key, ".")
	m.mu.Lock()
	moved := rev > m.seen.Load()
	if moved {
		m.seen.Store(rev)
	}
	m.gen.Add(1)
	if t, ok := m.tenants[tenant]; ok {
		m.entries -= len(t.byType) + len(t.byID)
		delete(m.tenants, tenant)
	}
	m.mu.Unlock()
	if moved {
		m.wake()
	}
}

// Lagged is how many lookups found the memo's watch behind the revision
// they needed for longer than CatchUp (or while it was known to lag) and
// asked the next cache.
func (m *Memo) Lagged() uint64 { return m.lagged.Load() }

// advance raises seen to rev and wakes the lookups waiting for it.
func (m *Memo) advance(rev uint64) {
	if rev <= m.seen.Load() {
		return
	}
	m.seen.Store(rev)
	m.wake()
}

// wake tells the lookups waiting for seen to move that it moved.
func (m *Memo) wake() {
	m.advMu.Lock()
	close(m.advanced)
	m.advanced = make(chan struct{})
	m.advMu.Unlock()
}

// caughtUp reports whether the memo may answer a lookup that needs
// revision need: trusted, and its watch has reported need (waiting up to
// CatchUp for it, unless the watch was already found lagging).
func (m *Memo) caughtUp(ctx context.Context, need uint64) bool {
	if !m.trusted() {
		return false
	}
	if m.seen.Load() >= need {
		return true
	}
	if time.Now().UnixNano() < m.lagUntil.Load() {
		m.lagged.Add(1)
		return false
	}
	timer := time.NewTimer(CatchUp)
	defer timer.Stop()
	for {
		m.advMu.Lock()
		ch := m.advanced
		m.advMu.Unlock()
		if m.seen.Load() >= need {
			return m.trusted()
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		case <-timer.C:
			m.lagged.Add(1)
			m.lagUntil.Store(time.Now().Add(time.Second).UnixNano())
			m.log.Warn("subscription memo watch lags the registry; lookups go to redis and the watch restarts",
				zap.Uint64("seen", m.seen.Load()), zap.Uint64("needed", need))
			select {
			case m.restart <- struct{}{}:
			default:
			}
			return false
		}
	}
}

// reconnects is how often the watch's connection reconnected so far.
func (m *Memo) reconnects() uint64 {
	if m.conn == nil {
		return 0
	}
	return m.conn.Stats().Reconnects
}

// trusted reports whether the memo may answer: its watch replayed, and
// the connection it watches on is the same one, still up. The check is
// synchronous: the status events that stop the watch arrive
// asynchronously, and a lookup right after a reconnect must not be
// answered from before it while they are on their way.
func (m *Memo) trusted() bool {
	if !m.watching.Load() {
		return false
	}
	if m.conn == nil {
		return true
	}
	return m.conn.Status() == nats.CONNECTED && m.conn.Stats().Reconnects == m.epoch.Load()
}

// Current reports whether lookups now reflect the subscription change at
// KV revision rev, once the next cache holds it: the watch has reported rev
// (and forgotten its tenant), or the memo is bypassed. A writer that needs
// its own change seen (the tests; a read-your-writes check) waits for it.
func (m *Memo) Current(rev uint64) bool {
	return !m.watching.Load() || m.seen.Load() >= rev
}

type watchError string

func (e watchError) Error() string { return string(e) }

const (
	errWatchClosed = watchError("kv watcher closed")
	errInterrupted = watchError("nats connection dropped or reconnected: watching again")
	errLagging     = watchError("watch did not report a revision the registry has: watching again")
)

func (m *Memo) clear() {
	m.gen.Add(1)
	m.mu.Lock()
	m.tenants = map[string]*tenantMemo{}
	m.entries = 0
	m.mu.Unlock()
}

// ForEvent answers from the memo, else from the next cache (and
// remembers), from a view that holds every registry change acknowledged
// before the call; rev is the revision that view is current at, which the
// event's tasks carry so that their lookups (Get) use a view as current.
// It fails when that revision cannot be learnt (the registry is
// unreachable).
func (m *Memo) ForEvent(ctx context.Context, tenant, eventType string) (subs []*hooklinev1.Subscription, rev uint64, err error) {
	var need uint64
	if m.horizon != nil {
		if need, err = m.required(ctx); err != nil {
			return nil, 0, err
		}
	}
	subs, err = m.forEvent(ctx, tenant, eventType, need)
	return subs, need, err
}

// required is the registry revision a lookup that begins now must see.
func (m *Memo) required(ctx context.Context) (uint64, error) {
	need, err := m.horizon.Required(ctx)
	if err != nil {
		return 0, fmt.Errorf("subscription registry revision: %w", err)
	}
	return need, nil
}

func (m *Memo) forEvent(ctx context.Context, tenant, eventType string, need uint64) ([]*hooklinev1.Subscription, error) {
	if !m.caughtUp(ctx, need) {
		return m.next.ForEventAt(ctx, tenant, eventType, need)
	}
	now := m.now()
	m.mu.RLock()
	if t := m.tenants[tenant]; t != nil {
		if e, ok := t.byType[eventType]; ok && now.Before(e.expires) {
			m.mu.RUnlock()
			return e.subs, nil
		}
	}
	m.mu.RUnlock()
	gen, at := m.fetchRev(need)
	subs, err := m.next.ForEventAt(ctx, tenant, eventType, at)
	if err != nil {
		return nil, err
	}
	m.store(gen, tenant, func(t *tenantMemo) int {
		_, had := t.byType[eventType]
		t.byType[eventType] = forEventEntry{subs: subs, expires: now.Add(m.ttl)}
		return added(had)
	})
	return subs, nil
}

// Get answers from the memo, else from the next cache (and remembers a
// subscription found; "not found" and errors are not remembered), from a
// view that holds every registry change up to revision need. need 0 (a
// task that does not carry its match's revision: a test delivery, a
// replay, a task from before the revision existed) asks the Horizon, as a
// match does; a need the memo has not seen is capped at the Horizon's.
func (m *Memo) Get(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error) {
	switch {
	case m.horizon == nil:
	case need == 0:
		var err error
		if need, err = m.required(ctx); err != nil {
			return nil, err
		}
	case need > m.seen.Load():
		// Either the watch lags, or need is beyond anything the registry
		// holds: a forged header, or a task from before the bucket was
		// restored or recreated (its revisions start lower then). No view
		// can reach such a revision; waiting for it would cost CatchUp, a
		// restarted watch and a read of the KV leader on every attempt. The
		// registry's last revision is as current as any view can be.
		if last, err := m.horizon.Required(ctx); err == nil {
			need = min(need, last)
		}
	}
	if !m.caughtUp(ctx, need) {
		return m.next.GetAt(ctx, tenant, id, need)
	}
	now := m.now()
	m.mu.RLock()
	if t := m.tenants[tenant]; t != nil {
		if e, ok := t.byID[id]; ok && now.Before(e.expires) {
			m.mu.RUnlock()
			return e.sub, nil
		}
	}
	m.mu.RUnlock()
	gen, at := m.fetchRev(need)
	sub, err := m.next.GetAt(ctx, tenant, id, at)
	if err != nil {
		return nil, err
	}
	m.store(gen, tenant, func(t *tenantMemo) int {
		_, had := t.byID[id]
		t.byID[id] = getEntry{sub: sub, expires: now.Add(m.ttl)}
		return added(had)
	})
	return sub, nil
}

// fetchRev returns the generation a fetch starts at and the revision it
// must ask the next cache for: need, or what the watch has seen if more,
// so that the answer is not older than the changes the memo already
// forgot (a Redis cache the producer writes after the KV bucket, and a
// syncer applies from a watch of its own, can lag this watch). The
// generation is read first: a change whose revision the fetch missed moves
// the generation after it was read, and the answer is not stored.
func (m *Memo) fetchRev(need uint64) (gen, at uint64) {
	gen = m.gen.Load()
	return gen, max(need, m.seen.Load())
}

func added(had bool) int {
	if had {
		return 0
	}
	return 1
}

// store records an answer fetched at generation gen, unless a change was
// seen since (the answer may predate it) or the watch is down.
func (m *Memo) store(gen uint64, tenant string, put func(*tenantMemo) int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gen.Load() != gen || !m.trusted() {
		return
	}
	if m.entries >= m.max {
		m.tenants = map[string]*tenantMemo{}
		m.entries = 0
	}
	t := m.tenants[tenant]
	if t == nil {
		t = &tenantMemo{byType: map[string]forEventEntry{}, byID: map[string]getEntry{}}
		m.tenants[tenant] = t
	}
	m.entries += put(t)
}
