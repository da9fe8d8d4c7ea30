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
// connection drops or reconnects (WithConn), and watches again. Errors and "not found" are never memoised. A fetch that raced with
// a change is not stored (a global generation counter); a changed tenant is
// forgotten again Settle later, in case Redis learnt of the change after
// the watch; and entries expire after TTL as a safety net. Current(rev)
// tells a writer when its change is seen.
// Callers must treat the returned subscriptions as read-only: they are
// shared.
package subcache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
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
	// Settle is how long after a change its tenant is forgotten a second
	// time (see watch).
	Settle          = 2 * time.Second
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Source is what the memo sits in front of (subscription.Cache).
type Source interface {
	ForEvent(ctx context.Context, tenant, eventType string) ([]*hooklinev1.Subscription, error)
	Get(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, error)
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

	watching atomic.Bool
	// epoch is the connection's reconnect count when the watch replayed.
	epoch atomic.Uint64
	gen   atomic.Uint64 // bumped by every change seen
	seen  atomic.Uint64 // newest KV revision the watch reported

	mu      sync.RWMutex
	tenants map[string]*tenantMemo
	entries int
}

// Option changes a Memo.
type Option func(*Memo)

// WithConn is the NATS connection of the watch: the memo is bypassed from
// the moment it drops or reconnects until a new watch has replayed.
func WithConn(nc *nats.Conn) Option { return func(m *Memo) { m.conn = nc } }

// New returns a memo in front of next, invalidated by watching kv (the
// subscriptions bucket). Run must run for the memo to be used.
func New(next Source, kv jetstream.KeyValue, log *zap.Logger, opts ...Option) *Memo {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Memo{next: next, kv: kv, log: log, ttl: DefaultTTL, max: DefaultMaxEntries, now: time.Now,
		tenants: map[string]*tenantMemo{}}
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
		if errors.Is(err, errInterrupted) {
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
	// used from then on, empty: it is current for every revision replayed.
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
		case e, ok := <-w.Updates():
			if !ok {
				return errWatchClosed
			}
			if e == nil {
				m.clear()
				m.epoch.Store(m.reconnects())
				m.watching.Store(true)
				continue
			}
			if m.watching.Load() {
				tenant, _, _ := strings.Cut(e.Key(), ".")
				m.invalidate(tenant)
				// Redis may learn of the change after this watch did (the
				// producer writes the KV first, then Redis; the syncer
				// applies it from a watch of its own): an answer fetched
				// from Redis in between could be the old one. Forget the
				// tenant once more when Redis has surely caught up.
				time.AfterFunc(Settle, func() { m.invalidate(tenant) })
			}
			if r := e.Revision(); r > m.seen.Load() {
				m.seen.Store(r)
			}
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
)

func (m *Memo) invalidate(tenant string) {
	m.gen.Add(1)
	m.mu.Lock()
	if t, ok := m.tenants[tenant]; ok {
		m.entries -= len(t.byType) + len(t.byID)
		delete(m.tenants, tenant)
	}
	m.mu.Unlock()
}

func (m *Memo) clear() {
	m.gen.Add(1)
	m.mu.Lock()
	m.tenants = map[string]*tenantMemo{}
	m.entries = 0
	m.mu.Unlock()
}

// ForEvent answers from the memo, else from the next cache (and remembers).
func (m *Memo) ForEvent(ctx context.Context, tenant, eventType string) ([]*hooklinev1.Subscription, error) {
	if !m.trusted() {
		return m.next.ForEvent(ctx, tenant, eventType)
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
	gen := m.gen.Load()
	subs, err := m.next.ForEvent(ctx, tenant, eventType)
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
// subscription found; "not found" and errors are not remembered).
func (m *Memo) Get(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, error) {
	if !m.trusted() {
		return m.next.Get(ctx, tenant, id)
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
	gen := m.gen.Load()
	sub, err := m.next.Get(ctx, tenant, id)
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
