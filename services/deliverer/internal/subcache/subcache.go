// Package subcache is the deliverer's in-process memo of subscription
// lookups, in front of the shared Redis cache (subscription.Cache).
//
// Without it every event costs one Redis round trip and a protojson decode
// of every subscription of its tenant (dispatch), and every attempt one more
// round trip and decode (deliver): half of the deliverer's CPU in `make
// bench`. The memo keeps the answers of ForEvent (per tenant and event
// type) and Get (per tenant and id), and applies each change a watch of the
// KV bucket (the truth) reports to the answers it holds: the changed record
// replaces the old one in every answer it is in, joins the answers of the
// event types it now matches, and leaves those it no longer matches (a
// delete leaves all). An edit therefore costs the memo one record's decode
// and a pass over its tenant's memoised answers, not a read and decode of
// every subscription of the tenant from Redis for each event type, which
// it cost when a change made the memo forget the tenant (2,000
// subscriptions, 4 event types: 13 ms of CPU per match after each edit,
// against 23 µs; BenchmarkEditWhileMatching). A record the memo cannot read
// (not protojson) still makes it forget the tenant. The watch is the
// memo's own, not the subscription.Syncer's
// that keeps Redis coherent: the Syncer's stops and replays whenever Redis
// fails, and the memo must keep learning of changes while Redis is down
// (the lookups it does not answer then fall back to the KV store).
//
// The watch starts after the bucket's last revision (the memo starts
// empty: the next cache holds everything up to there), so it reads the
// records changed since, never the whole bucket. Until it has caught up,
// and whenever it breaks, the memo is bypassed: every lookup goes to the
// next cache. A watch learns that its server went away only when
// heartbeats go missing (about 20 s after a nats-server restart, during
// which it saw no change): so the memo also stops trusting itself the
// moment the NATS connection drops or reconnects (WithConn), and watches
// again.
//
// The memo knows how current it is: seen, the newest revision its watch
// reported (every change up to it is applied to what the memo holds). A
// lookup needs a revision (the registry's last one when the lookup began,
// from a subscription.Horizon; for a task, the one its event was matched
// at): the memo answers only once seen reaches it, waiting up to CatchUp
// for its watch, and otherwise asks the next cache for that revision and
// restarts its watch (a watch that lags that long is presumed dead). What
// it fetches from the next cache it asks for at the revision it has seen
// at least, so a stored answer is never older than the memo's own
// knowledge; the changes of its tenant the watch reports while the fetch
// runs are applied to the answer before it is stored (a fetch is
// registered per tenant), and an answer fetched across a restart of the
// watch is not stored (a generation counter); entries expire after TTL as
// a safety net. Errors and "not found" are never memoised.
//
// Revisions count in one bucket: a bucket deleted and created again, or
// restored from an older backup, counts them again from lower down, and
// the memo's watch goes on without an error, reporting none of the new
// bucket's changes below the old revisions (while seen, the old bucket's,
// is above every revision a lookup then needs). So the memo remembers the
// origin of the bucket its watch began on (subscription.BucketState), and
// checks it against the state the Horizon read for each lookup that asks
// it, and every CheckEvery: when the origin differs, or the bucket's last
// revision is below what the watch had reported before the state was read,
// the memo stops answering at once, drops everything it holds, and watches
// the registry's bucket again, starting seen at its last revision; lookups
// go to the next cache (which detects the same itself) meanwhile, counted
// in Rewound.
//
// Current(rev) tells a writer when its change is seen. Callers must treat
// the returned subscriptions as read-only: they are shared.
package subcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	CatchUp = 250 * time.Millisecond
	// CheckEvery is how often the memo checks, lookups or not, that the
	// bucket it watches is still the one the registry holds (Run).
	CheckEvery      = time.Second
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// Source is what the memo sits in front of (subscription.Cache): lookups
// from a view that holds every registry change up to revision need.
type Source interface {
	ForEventAt(ctx context.Context, tenant, eventType string, need uint64) ([]*hooklinev1.Subscription, error)
	GetAt(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error)
}

// Horizon gives the revision a lookup that begins now must see, with the
// origin of the bucket it counts in (subscription.Horizon).
type Horizon interface {
	RequiredState(ctx context.Context) (subscription.BucketState, error)
}

// bucketWatch is one watch of the bucket: the origin of the bucket it
// began on, and whether it was found to follow another bucket than the
// registry's (a recreated or restored-backwards bucket's predecessor).
type bucketWatch struct {
	origin int64
	gone   atomic.Bool
	stop   chan struct{} // closed when gone is set
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

// change is one record the watch reported: sub is nil when deleted, or
// when the record names another tenant or id than its key (a lookup treats
// it as absent, as the Store and the Syncer do).
type change struct {
	id  string
	sub *hooklinev1.Subscription
}

// fetch is a lookup asking the next cache for a tenant's answer: the
// changes of that tenant reported meanwhile, to apply before the answer is
// stored; spoiled when one could not be read (the answer is not stored).
type fetch struct {
	changes []change
	spoiled bool
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
	gen   atomic.Uint64 // bumped whenever the memo is emptied
	// seen is the newest KV revision the current watch reported; a watch
	// starts it at the bucket's last revision when it begins (lower than
	// before when the bucket went back).
	seen atomic.Uint64
	// cur is the current watch: set (after seen) when a watch begins, nil
	// once it ended; never the same watch again.
	cur atomic.Pointer[bucketWatch]
	// learnt is the registry revision the latest lookup to ask learnt
	// (requiredSince), with the bucket generation it was read in; buckets
	// counts the buckets the memo found gone (recreated or restored
	// backwards), so that a revision of one is never handed on after.
	learnt  atomic.Pointer[learnt]
	buckets atomic.Uint64
	rewound atomic.Uint64 // watches found on another bucket than the registry's
	// lagUntil (unix nanos): a lookup waited CatchUp in vain; until then
	// lookups the memo cannot answer do not wait for it.
	lagUntil atomic.Int64
	lagged   atomic.Uint64 // lookups the memo could not answer in time
	// advanced is closed (and replaced) whenever seen moves.
	advMu    sync.Mutex
	advanced chan struct{}

	mu       sync.RWMutex
	tenants  map[string]*tenantMemo
	entries  int
	fetching map[string][]*fetch // by tenant
}

// Option changes a Memo.
type Option func(*Memo)

// WithConn is the NATS connection of the watch: the memo is bypassed from
// the moment it drops or reconnects until a new watch has replayed.
func WithConn(nc *nats.Conn) Option { return func(m *Memo) { m.conn = nc } }

// WithHorizon sets where ForEvent learns the revision it needs (default:
// none; every answer is as current as the memo's watch).
func WithHorizon(h Horizon) Option { return func(m *Memo) { m.horizon = h } }

// New returns a memo in front of next, kept current by watching kv (the
// subscriptions bucket). Run must run for the memo to be used.
func New(next Source, kv jetstream.KeyValue, log *zap.Logger, opts ...Option) *Memo {
	if log == nil {
		log = zap.NewNop()
	}
	m := &Memo{next: next, kv: kv, log: log, ttl: DefaultTTL, max: DefaultMaxEntries, now: time.Now,
		tenants: map[string]*tenantMemo{}, fetching: map[string][]*fetch{}, restart: make(chan struct{}, 1), advanced: make(chan struct{})}
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
	var prev *bucketWatch
	for {
		err := m.watch(ctx, prev)
		m.watching.Store(false)
		if w := m.cur.Swap(nil); w != nil {
			prev = w
		}
		m.clear()
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errInterrupted) || errors.Is(err, errLagging) || errors.Is(err, errRewound) {
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

// watch watches the bucket until the watch breaks, is found lagging or on
// another bucket than the registry's, or ctx ends; prev is the watch before
// (nil for the first).
func (m *Memo) watch(ctx context.Context, prev *bucketWatch) error {
	// The watch reads every change after floor, the bucket's last revision
	// before it began: the memo starts empty, and the next cache, asked
	// at floor at least, holds every change up to there. The changes
	// already made when the watch began end with a nil entry, and the memo
	// is used from then on, empty: it is current for every revision they
	// reached, and for floor. seen starts at floor: below what the watch
	// before reported when the bucket went back (the memo was bypassed and
	// emptied since that watch ended), so that a lookup needing a revision
	// of the new bucket waits for this watch to report it.
	st, err := subscription.ReadBucketState(ctx, m.kv)
	if err != nil {
		return err
	}
	floor := st.Last
	if prev != nil && !prev.gone.Load() && (prev.origin != st.Origin || floor < m.seen.Load()) {
		m.forgetLearnt()
		m.rewound.Add(1)
		m.log.Warn("subscription registry recreated or restored backwards while the memo watched again; watching the new bucket",
			zap.Int64("origin", prev.origin), zap.Int64("bucket_origin", st.Origin),
			zap.Uint64("seen", m.seen.Load()), zap.Uint64("last_revision", floor))
	}
	select {
	case <-m.restart: // a request from the watch being replaced
	default:
	}
	bw := &bucketWatch{origin: st.Origin, stop: make(chan struct{})}
	m.seen.Store(floor)
	m.cur.Store(bw)
	w, err := m.kv.WatchAll(ctx, jetstream.ResumeFromRevision(floor+1))
	if err != nil {
		return err
	}
	defer subscription.StopWatch(w)
	pctx, cancel := context.WithCancel(ctx)
	patrolled := make(chan struct{})
	go func() {
		defer close(patrolled)
		m.patrol(pctx, bw)
	}()
	defer func() {
		cancel()
		<-patrolled
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.interrupted:
			return errInterrupted
		case <-m.restart:
			return errLagging
		case <-bw.stop:
			return errRewound
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
			m.changed(e.Revision(), e.Key(), e.Operation(), e.Value())
		}
	}
}

// patrol checks every CheckEvery that watch w still follows the registry's
// bucket (check), until ctx ends or w is found not to: a lookup that
// carries the revision it needs (a delivery's) asks no Horizon when the
// memo has seen that revision, as it has every revision of a bucket
// created again, so matches alone would not notice the bucket went back
// while only deliveries run.
func (m *Memo) patrol(ctx context.Context, w *bucketWatch) {
	t := time.NewTicker(CheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		case <-t.C:
		}
		seen := m.seen.Load()
		var st subscription.BucketState
		var err error
		if m.horizon != nil {
			st, err = m.horizon.RequiredState(ctx) // shares the matches' requests
		} else {
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			st, err = subscription.ReadBucketState(rctx, m.kv)
			cancel()
		}
		if err != nil {
			continue // NATS unreachable: the watch notices an outage itself
		}
		m.check(w, seen, st)
	}
}

// check compares the bucket's state st, read after seen was read (while
// watch w was the memo's), with what w follows: when st names another
// bucket (it was deleted and created again), or its last revision is below
// seen (restored from an older backup), w follows a bucket that is gone
// (its watch goes on without an error, and reports none of the new
// bucket's changes below the old revisions). The memo then stops answering
// at once, drops what it holds, and has w replaced by a watch of the
// registry's bucket (which starts seen again, at its last revision);
// lookups go to the next cache meanwhile. A state of unknown origin (0)
// is checked by its revision alone.
func (m *Memo) check(w *bucketWatch, seen uint64, st subscription.BucketState) {
	if w == nil || m.cur.Load() != w {
		return // another watch since seen was read: its seen is not w's
	}
	if (st.Origin == 0 || st.Origin == w.origin) && st.Last >= seen {
		return
	}
	if !w.gone.CompareAndSwap(false, true) {
		return
	}
	m.forgetLearnt()
	m.clear()
	close(w.stop)
	m.wake() // the lookups waiting for the watch: it will not report their revision
	m.rewound.Add(1)
	m.log.Warn("subscription registry recreated or restored backwards: memo emptied, watching the new bucket; lookups go to redis meanwhile",
		zap.Int64("origin", w.origin), zap.Int64("bucket_origin", st.Origin),
		zap.Uint64("seen", seen), zap.Uint64("last_revision", st.Last))
}

// Rewound is how many times the memo found its watch following another
// bucket than the registry's (deleted and created again, or restored from
// an older backup), and dropped what it held and watched again.
func (m *Memo) Rewound() uint64 { return m.rewound.Load() }

// changed records a change the watch reported: revision rev of key, with
// its operation and value.
//
// seen moves and the change is applied under one write lock, so that
// neither order leaves a window: a lookup that finds seen at rev reads the
// memo only after the change is applied (memo reads take the read lock),
// and a fetch of the key's tenant either began after the change (it read
// seen at rev, and asks the next cache for a view that holds the change)
// or is registered, and gets the change to apply to its answer before it
// stores it.
func (m *Memo) changed(rev uint64, key string, op jetstream.KeyValueOp, value []byte) {
	if !m.watching.Load() {
		m.advance(rev) // catching up: the memo is cleared when it ends
		return
	}
	tenant, c, ok := readChange(key, op, value)
	m.mu.Lock()
	moved := rev > m.seen.Load()
	if moved {
		m.seen.Store(rev)
	}
	if ok {
		m.apply(tenant, c)
	} else {
		m.forget(tenant)
	}
	m.mu.Unlock()
	if moved {
		m.wake()
	}
}

// readChange reads a change of key; ok is false when it cannot be applied
// (a key that is not <tenant>.<id>, a record that is not protojson): then
// the tenant is forgotten, and the next cache answers.
func readChange(key string, op jetstream.KeyValueOp, value []byte) (tenant string, c change, ok bool) {
	tenant, id, found := strings.Cut(key, ".")
	if !found || subscription.ValidateTenant(tenant) != nil || subscription.ValidateID(id) != nil {
		return tenant, change{}, false
	}
	c.id = id
	if op != jetstream.KeyValuePut {
		return tenant, c, true
	}
	sub, err := subscription.Unmarshal(value)
	if err != nil {
		return tenant, change{}, false
	}
	if sub.GetTenant() == tenant && sub.GetId() == id {
		c.sub = sub // else foreign: delivered to nobody (subscription.ErrForeignRecord)
	}
	return tenant, c, true
}

// apply applies a change to what the memo holds of tenant, and hands it to
// the fetches of the tenant in flight; called with mu held. Answers are
// shared with callers: a changed answer is a new slice.
func (m *Memo) apply(tenant string, c change) {
	for _, f := range m.fetching[tenant] {
		f.changes = append(f.changes, c)
	}
	t := m.tenants[tenant]
	if t == nil {
		return
	}
	for et, e := range t.byType {
		if subs, changed := patch(e.subs, et, c); changed {
			t.byType[et] = forEventEntry{subs: subs, expires: e.expires}
		}
	}
	if e, ok := t.byID[c.id]; ok {
		if c.sub == nil {
			delete(t.byID, c.id) // "not found" is never memoised
			m.entries--
		} else {
			t.byID[c.id] = getEntry{sub: c.sub, expires: e.expires}
		}
	}
}

// forget drops what the memo holds of tenant, and what its fetches in
// flight would store; called with mu held.
func (m *Memo) forget(tenant string) {
	for _, f := range m.fetching[tenant] {
		f.spoiled = true
	}
	if t, ok := m.tenants[tenant]; ok {
		m.entries -= len(t.byType) + len(t.byID)
		delete(m.tenants, tenant)
	}
}

// delivers reports whether an event of eventType goes to sub: the filter
// of subscription.Cache.ForEventAt.
func delivers(sub *hooklinev1.Subscription, eventType string) bool {
	return !sub.GetDisabled() && subscription.MatchesAny(sub.GetEventTypes(), eventType)
}

// patch applies c to subs, the answer for eventType: the record of c.id
// leaves it, and c.sub joins it when it delivers eventType. subs is not
// modified; changed is false when the answer stays the same.
func patch(subs []*hooklinev1.Subscription, eventType string, c change) (out []*hooklinev1.Subscription, changed bool) {
	join := c.sub != nil && delivers(c.sub, eventType)
	at := slices.IndexFunc(subs, func(s *hooklinev1.Subscription) bool { return s.GetId() == c.id })
	switch {
	case at < 0 && !join:
		return subs, false
	case at < 0:
		out = make([]*hooklinev1.Subscription, len(subs), len(subs)+1)
		copy(out, subs)
		return append(out, c.sub), true
	case join:
		out = slices.Clone(subs)
		out[at] = c.sub
		return out, true
	}
	out = make([]*hooklinev1.Subscription, 0, len(subs)-1)
	out = append(out, subs[:at]...)
	return append(out, subs[at+1:]...), true
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
		if m.rewinding() {
			return false
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
	if !m.watching.Load() || m.rewinding() {
		return false
	}
	if m.conn == nil {
		return true
	}
	return m.conn.Status() == nats.CONNECTED && m.conn.Stats().Reconnects == m.epoch.Load()
}

// rewinding reports whether the current watch was found on another bucket
// than the registry's (check) and is being replaced.
func (m *Memo) rewinding() bool {
	w := m.cur.Load()
	return w != nil && w.gone.Load()
}

// Current reports whether lookups now reflect the subscription change at
// KV revision rev, once the next cache holds it: the watch has reported rev
// (and the memo applied it), or the memo is bypassed. A writer that needs
// its own change seen (the tests; a read-your-writes check) waits for it.
func (m *Memo) Current(rev uint64) bool {
	return !m.watching.Load() || m.rewinding() || m.seen.Load() >= rev
}

type watchError string

func (e watchError) Error() string { return string(e) }

const (
	errWatchClosed = watchError("kv watcher closed")
	errInterrupted = watchError("nats connection dropped or reconnected: watching again")
	errLagging     = watchError("watch did not report a revision the registry has: watching again")
	errRewound     = watchError("subscription registry recreated or restored backwards: watching the new bucket")
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
	return m.ForEventSince(ctx, time.Now(), tenant, eventType)
}

// ForEventSince is ForEvent for an event this process received at since
// (its monotonic clock): the view holds every registry change
// acknowledged before since, which is every change acknowledged before
// the event was published (the server stored the event before it handed
// it out). Any registry request sent after since proves that, so a lookup
// whose event waited (in dispatch's buffer, behind a busy moment) takes
// the revision another lookup learnt from a request sent after the event
// came, instead of waiting for a request of its own: one round trip, on a
// busy server 2–15 ms, taken off the event's way (and a waiting event
// can then be matched while the registry does not answer). A zero since
// is now.
func (m *Memo) ForEventSince(ctx context.Context, since time.Time, tenant, eventType string) (subs []*hooklinev1.Subscription, rev uint64, err error) {
	if since.IsZero() {
		since = time.Now() // not known: received now, at the latest
	}
	var need uint64
	if m.horizon != nil {
		if need, err = m.requiredSince(ctx, since); err != nil {
			return nil, 0, err
		}
	}
	subs, err = m.forEvent(ctx, tenant, eventType, need)
	return subs, need, err
}

// learnt is a registry revision a lookup learnt, when that lookup asked
// (the request it was answered by was sent after began), and the memo's
// bucket generation (Memo.buckets) before it asked.
type learnt struct {
	began   time.Time
	last    uint64
	buckets uint64
}

// requiredSince is the registry revision a lookup for an event received
// at since must see: the newest a lookup learnt that asked after since,
// in the bucket the memo follows now, else one learnt now (required).
// Strictly after: two equal readings of a coarse clock do not tell which
// came first.
func (m *Memo) requiredSince(ctx context.Context, since time.Time) (uint64, error) {
	buckets := m.buckets.Load()
	if l := m.learnt.Load(); l != nil && l.began.After(since) && l.buckets == buckets {
		return l.last, nil
	}
	began := time.Now()
	need, err := m.required(ctx)
	if err != nil {
		return 0, err
	}
	next := &learnt{began: began, last: need, buckets: buckets}
	for {
		l := m.learnt.Load()
		if l != nil && (l.buckets > buckets || l.buckets == buckets && !l.began.Before(began)) {
			break // a lookup that asked later, or of a later bucket, has said already
		}
		if m.learnt.CompareAndSwap(l, next) {
			break
		}
	}
	return need, nil
}

// forgetLearnt retires the revision lookups learnt, and any a lookup
// still asking will store: they count in a bucket the memo found gone
// (learnt under the generation before, never reused).
func (m *Memo) forgetLearnt() { m.buckets.Add(1) }

// required is the registry revision a lookup that begins now must see. The
// same request names the bucket that revision counts in: the memo checks
// that its watch follows that bucket (check), with seen read before the
// request was sent, so that a lookup right after the bucket was recreated
// or restored backwards is answered by the next cache, never from the
// bucket before.
func (m *Memo) required(ctx context.Context) (uint64, error) {
	w := m.cur.Load()
	seen := m.seen.Load()
	st, err := m.horizon.RequiredState(ctx)
	if err != nil {
		return 0, fmt.Errorf("subscription registry revision: %w", err)
	}
	m.check(w, seen, st)
	return st.Last, nil
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
	f, gen, at := m.begin(tenant, need)
	subs, err := m.next.ForEventAt(ctx, tenant, eventType, at)
	m.finish(f, gen, tenant, err == nil, func(t *tenantMemo) int {
		keep := subs
		for _, c := range f.changes {
			keep, _ = patch(keep, eventType, c)
		}
		_, had := t.byType[eventType]
		t.byType[eventType] = forEventEntry{subs: keep, expires: now.Add(m.ttl)}
		return added(had)
	})
	if err != nil {
		return nil, err
	}
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
		if last, err := m.required(ctx); err == nil {
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
	f, gen, at := m.begin(tenant, need)
	sub, err := m.next.GetAt(ctx, tenant, id, at)
	m.finish(f, gen, tenant, err == nil, func(t *tenantMemo) int {
		keep := sub
		for _, c := range f.changes {
			if c.id == id {
				keep = c.sub
			}
		}
		if keep == nil {
			return 0 // deleted meanwhile: "not found" is never memoised
		}
		_, had := t.byID[id]
		t.byID[id] = getEntry{sub: keep, expires: now.Add(m.ttl)}
		return added(had)
	})
	if err != nil {
		return nil, err
	}
	return sub, nil
}

// begin registers a fetch of tenant's answer and returns it with the
// generation it starts at and the revision it must ask the next cache for:
// need, or what the watch has seen if more, so that the answer is not
// older than the changes the memo already applied (a Redis cache the
// producer writes after the KV bucket, and a syncer applies from a watch
// of its own, can lag this watch). Every change of the tenant with a
// higher revision is reported after begin, and handed to the fetch. (The
// answer may hold a newer record than a change handed to it, when the
// next cache is ahead of the watch: the record applied then is still
// current up to seen, and the watch brings the newer one next.)
func (m *Memo) begin(tenant string, need uint64) (f *fetch, gen, at uint64) {
	f = &fetch{}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fetching[tenant] = append(m.fetching[tenant], f)
	return f, m.gen.Load(), max(need, m.seen.Load())
}

func added(had bool) int {
	if had {
		return 0
	}
	return 1
}

// finish ends fetch f of tenant, begun at generation gen, and when ok
// stores its answer through put (which applies f's changes to it and
// returns how many entries it added), unless the memo was emptied since
// (the answer may predate a restarted watch), the watch is down, or a
// change of the tenant could not be read.
func (m *Memo) finish(f *fetch, gen uint64, tenant string, ok bool, put func(*tenantMemo) int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fs := m.fetching[tenant]
	if i := slices.Index(fs, f); i >= 0 {
		fs = slices.Delete(fs, i, i+1)
	}
	if len(fs) == 0 {
		delete(m.fetching, tenant)
	} else {
		m.fetching[tenant] = fs
	}
	if !ok || f.spoiled || m.gen.Load() != gen || !m.trusted() {
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
