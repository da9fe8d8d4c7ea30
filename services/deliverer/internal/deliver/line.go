package deliver

import (
	"cmp"
	"container/list"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
)

// Lines are the tasks that wait for an admission slot, one line per
// subscription, in arrival order. A task in line holds no worker: it is an
// unacknowledged JetStream message kept alive with InProgress, so a crash
// loses nothing (JetStream redelivers it after AckWait).
//
// A line is bounded so that one subscription cannot hold the consumer's
// MaxAckPending from the others: it takes at most what its endpoint is
// expected to serve within MaxWait — its measured attempt duration divided
// by its cap, or its rate limit — and never more than PerLineMax, nor more
// than TotalMax over all lines (and ordered subscriptions' key lines:
// Others); when all lines hold TotalMax, a task of a
// tenant holding less than its share of it takes the place of the last
// task of a tenant holding more (see share). A task that finds its line full is
// deferred instead, by the time the tasks ahead of it (in line and
// deferred before it) are expected to take at the pace the line is served
// (see deferral), so that it is deferred about once rather than bounced
// until a slot happens to be free.
//
// A line refused for want of a slot asks again after a backoff (PollEvery,
// doubled by each refusal in a row, at most PollMax) — every question is
// a Redis round trip — unless a slot it waits for is freed in this
// process first: the line that has waited longest for that scope (a
// tenant's, a destination's) is then woken at once (Wake).
type lines struct {
	cfg lineConfig

	mu   sync.Mutex
	byID map[string]*line
	// busy are the lines with tasks (Due scans only these).
	busy  map[string]*line
	total int
	// held is how many of total each tenant's lines hold (see share).
	held map[string]int
	// waiters are the lines whose head was refused for want of a shared
	// slot, by scope (see Scopes), in the order they were refused: a slot
	// of that scope freed in this process wakes the first.
	waiters map[string]*list.List
}

type lineConfig struct {
	// MaxWait bounds the expected wait of a task that joins a line.
	MaxWait time.Duration
	// PerLineMax and TotalMax bound the tasks in one line and in all.
	PerLineMax, TotalMax int
	// MinPerLine is what a line may always hold, in multiples of its cap
	// (before any attempt was measured, and for slow endpoints).
	MinPerCap int
	// Unmeasured is the attempt duration assumed before one was measured
	// (the HTTP timeout: the worst case).
	Unmeasured time.Duration
	// DefaultLimit and DefaultCeiling bound the in-flight cap of a
	// subscription without max_in_flight (see Limit).
	DefaultLimit, DefaultCeiling int
	// PollEvery is a refused line's first wait before it asks again;
	// each refusal in a row doubles it, up to PollMax.
	PollEvery, PollMax time.Duration
	Now                func() time.Time
	// Others counts the tasks waiting elsewhere in the stage that TotalMax
	// bounds too (ordered subscriptions' key lines); nil: none. Called
	// with the lines' lock held.
	Others func() int
}

// FastAttempt is the attempt duration under which an endpoint's answer
// lets a subscription without max_in_flight take one more slot.
const FastAttempt = 250 * time.Millisecond

// line is one subscription's.
type line struct {
	q []*job
	// tenant is the subscription's (its tasks', counted in lines.held).
	tenant string
	// seenLimit and seenPerSecond are the cap and rate limit the line was
	// last joined under: what a task taken out of it for another tenant
	// (lines.evictFor) is deferred at.
	seenLimit     int
	seenPerSecond float64
	// avg is the moving average of this subscription's attempt durations
	// (0 until one was measured).
	avg time.Duration
	// deferredUntil is when the tasks this process deferred for want of
	// room in the line are expected to have been served, at deferredPace
	// a task.
	deferredUntil time.Time
	deferredPace  time.Duration
	// notBefore: the head is not asked for before this (a rate limit or a
	// probe in flight said when, or the backoff of refusals for want of a
	// slot). held: notBefore is a wait of the head's own (Hold, Unclaim),
	// not a backoff, which a slot freed here ends at once; a first attempt
	// from dispatch does not join a line held past its own wait
	// (JoinWithin).
	notBefore time.Time
	held      bool
	// direct is how many of q are first attempts from dispatch (a job
	// with a wake channel).
	direct int
	// polling: a goroutine is asking admission for the head.
	polling bool
	// refusals: the head was refused this many times in a row for want
	// of a slot (its next poll backs off with it).
	refusals int
	// waitsOn is the scope of the slot the line waits for, and elem its
	// place among that scope's waiters (nil when it is not there).
	waitsOn string
	elem    *list.Element
	// wokenFor is the scope of the freed slot that woke the line: when
	// the line does not take it (refused for another reason, or empty),
	// the wake passes to the scope's next waiter. woken: the wake came
	// while the line was being polled (it asks once more at once).
	wokenFor string
	woken    bool
	// limit is the cap of a subscription without max_in_flight (0 until
	// its first attempt: DefaultLimit).
	limit int
	// sending is how many of its attempts this process has in flight, and
	// progress when one last ended (or, when none was in flight, began):
	// attempts in flight with none ended for FastAttempt mean the
	// endpoint has turned slow before any slow answer is measured.
	sending  int
	progress time.Time
	// fresh is how many of the attempts in flight began longer than the
	// average attempt after progress: they have not stalled as long as
	// the others.
	fresh int
	// ended is when one of its attempts last ended here.
	ended time.Time
	// conc is how many attempts the line has had in flight here while it
	// had tasks waiting and attempts in flight, averaged over time (about
	// the last concWindow; see served), and concAt when it was last
	// brought up to date (zero before tasks first waited). emptied is when
	// the line last became empty.
	conc    float64
	concAt  time.Time
	emptied time.Time
	// concCap is the cap conc was last measured under.
	concCap int
	// probing: an unmeasured subscription's first attempt from dispatch
	// was let through, and no attempt has answered since.
	probing bool
}

func newLines(cfg lineConfig) *lines {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = 20 * time.Millisecond
	}
	cfg.PollMax = max(cfg.PollMax, cfg.PollEvery)
	return &lines{cfg: cfg, byID: map[string]*line{}, busy: map[string]*line{}, held: map[string]int{}, waiters: map[string]*list.List{}}
}

func (ls *lines) get(id string) *line {
	l := ls.byID[id]
	if l == nil {
		l = &line{}
		ls.byID[id] = l
	}
	return l
}

// unmeasuredPace is the attempt duration assumed when spreading the
// deferrals of a line none of whose attempts was measured yet (a replica
// that just started, taking over a crashed one's backlog): a fast
// endpoint's. Assuming the HTTP timeout there deferred a burst by many
// minutes; an endpoint that turns out slow only defers its tasks once more,
// at its measured pace.
const unmeasuredPace = 10 * time.Millisecond

// maxDeferral bounds a deferral for want of room in a line, so that a
// wrong estimate costs a task one more deferral, not hours.
const maxDeferral = 15 * time.Minute

// interval is the expected time between two tasks of a line served with
// limit slots and, when set, a rate limit of perSecond; an unmeasured line
// is taken at unmeasured.
func (ls *lines) interval(l *line, limit int, perSecond float64, unmeasured time.Duration) time.Duration {
	d := l.avg
	if d <= 0 {
		d = unmeasured
	}
	return intervalOf(d, float64(max(limit, 1)), perSecond)
}

// intervalOf is the time between two tasks of attempts taking d each,
// conc at once on average (at least 1), and at most perSecond when set.
func intervalOf(d time.Duration, conc float64, perSecond float64) time.Duration {
	iv := time.Duration(float64(d) / max(conc, 1))
	if perSecond > 0 {
		// A stored rate below the least the API accepts is taken as that
		// (1e-300/s would overflow a Duration).
		iv = max(iv, time.Duration(float64(time.Second)/max(perSecond, subscription.MinRateLimit)))
	}
	return max(iv, time.Microsecond)
}

// stalledAvg is l's average attempt time as if every attempt it has had in
// flight since the last one ended answered now, when none has ended for
// longer than the average (at most the timeout, the longest an attempt
// takes): weighed as Observe would weigh those answers, an eighth each, in
// turn (one answer moves a measured line's average an eighth of the way,
// the ten of a cap three quarters of it; attempts begun since do not count,
// they have not stalled as long); all of the stall for an unmeasured line. An endpoint
// whose attempts stop ending has turned slow before its slow answers are
// in (a flood fanned out meanwhile); one slow answer among fast ones moves
// the estimate no more than its answer will. An unmeasured line is taken
// at unmeasured at least, as interval takes it.
func (ls *lines) stalledAvg(l *line, now time.Time, unmeasured time.Duration) time.Duration {
	var stall time.Duration
	if l.sending > 0 {
		stall = min(now.Sub(l.progress), ls.cfg.Unmeasured)
	}
	switch {
	case l.avg <= 0:
		return max(stall, unmeasured)
	case stall > l.avg:
		kept := math.Pow(7.0/8, float64(max(l.sending-l.fresh, 1)))
		return stall - time.Duration(float64(stall-l.avg)*kept)
	}
	return l.avg
}

// concWindow is about how far back served averages a line's attempts in
// flight: long enough to smooth the gaps between an attempt's end and the
// next one's start, short enough to follow a share that changes (another
// line of the tenant empties).
const concWindow = time.Second

// served is how many attempts at once l is served with while tasks wait in
// it: the attempts it had in flight here, averaged over about the last
// concWindow of its waiting, starting from limit when tasks began to wait
// (after the line was empty for longer than concWindow), and at least what
// it has in flight now (a cap that just grew); at least one, at most
// limit, and moved by as much as the cap grows. Time with nothing in flight (its head held by a rate limit, a
// probe, a refusal) does not count: the line is not served below its share
// then, it waits. Below its cap when admission gives it less: the tenant's
// share of the workers split between its busy lines, a destination's cap,
// the slots other replicas hold (each replica's line is served by its
// own), so that its deferrals are priced at the pace it is served at, not
// the cap's, and come back when there is room for them rather than to be
// deferred again.
func (ls *lines) served(l *line, now time.Time, limit int) float64 {
	ls.track(l, now)
	c := float64(max(limit, 1))
	if l.concAt.IsZero() || (len(l.q) == 0 && now.Sub(l.emptied) > concWindow) {
		return c
	}
	if limit > l.concCap {
		// The cap grew (an adaptive limit): the line has the new slots.
		l.conc += float64(limit - l.concCap)
	}
	l.concCap = limit
	return min(max(l.conc, float64(l.sending), 1), c)
}

// track brings l's average of attempts in flight up to now; only time
// with tasks waiting and attempts in flight moves it. It is called before
// sending changes, and as the line empties or fills.
func (ls *lines) track(l *line, now time.Time) { ls.advance(l, now, len(l.q) > 0) }

// advance is track for a stretch since concAt during which tasks waited
// or not.
func (ls *lines) advance(l *line, now time.Time, waiting bool) {
	if l.concAt.IsZero() {
		return
	}
	dt := now.Sub(l.concAt)
	if dt <= 0 {
		return
	}
	l.concAt = now
	if !waiting || l.sending == 0 {
		return
	}
	kept := math.Exp(-float64(dt) / float64(concWindow))
	l.conc = float64(l.sending) + (l.conc-float64(l.sending))*kept
}

// Join puts j at the end of its subscription's line when there is room,
// and returns 0 and whether j is the line's first task; otherwise it
// returns how long to defer j for (at least one second: the resolution of
// a scheduled retry). When every line together holds TotalMax and j's
// tenant holds less than its share, a task another tenant holds beyond
// its share makes room for j: it is returned, with its deferral, for the
// caller to defer (see evictFor).
func (ls *lines) Join(id string, j *job, limit int, perSecond float64) (time.Duration, bool, *overflow) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.get(id)
	l.seenLimit, l.seenPerSecond = limit, perSecond
	if len(l.q) >= ls.room(l, limit, perSecond) {
		return ls.deferral(l, limit, perSecond), false, nil
	}
	out, ok := ls.placeFor(j.t.Tenant)
	if !ok {
		return ls.deferral(l, limit, perSecond), false, nil
	}
	return 0, ls.enqueue(id, l, j, limit), out
}

// placeFor reports whether a task of tenant fits within TotalMax: while
// every line together holds less, or by taking another tenant's place
// (evictFor; the task taken is returned for the caller to defer).
func (ls *lines) placeFor(tenant string) (evicted *overflow, ok bool) {
	if !ls.full() {
		return nil, true
	}
	evicted = ls.evictFor(tenant)
	return evicted, evicted != nil
}

// share is how many tasks tenant's lines may hold together while every
// line together holds TotalMax: TotalMax split evenly between the tenants
// with tasks in line, tenant among them. A tenant alone may take all of
// TotalMax; another tenant's tasks then still join, in its place (evictFor),
// instead of each being deferred because one tenant's flood holds every
// line's room.
func (ls *lines) share(tenant string) int {
	n := len(ls.held)
	if ls.held[tenant] == 0 {
		n++
	}
	return max(ls.cfg.TotalMax/n, 1)
}

// evictFor makes room in TotalMax for one more task of tenant, when tenant
// holds less than its share: it takes a task out of a line of a tenant
// holding more than its share (see victim) and returns it with its
// deferral at that line's pace (nil when there is none to take).
func (ls *lines) evictFor(tenant string) *overflow {
	from, i := ls.victim(tenant)
	if from == nil {
		return nil
	}
	j := from.q[i]
	from.q = append(from.q[:i], from.q[i+1:]...)
	ls.count(from, -1)
	return &overflow{j: j, delay: ls.deferral(from, from.seenLimit, from.seenPerSecond)}
}

// victim is the line and place of the task evictFor would take for a task
// of tenant (nil when tenant holds its share, or nothing may be taken):
// among the tenants holding more than their share, the most first, and
// their lines, the longest first, the last stored task — the one that
// would have waited longest. A line's head (its poller may be admitting
// it) and first attempts from dispatch (no stored task to defer) are
// never taken, and the head of an ordering key only when nothing else
// may be (its deferral holds its key's followers too).
func (ls *lines) victim(tenant string) (*line, int) {
	over := ls.overShare(tenant)
	slices.SortFunc(over, func(a, b *line) int {
		if c := cmp.Compare(ls.held[b.tenant], ls.held[a.tenant]); c != 0 {
			return c
		}
		return cmp.Compare(len(b.q), len(a.q))
	})
	for _, keyHeads := range []bool{false, true} {
		for _, l := range over {
			if i := l.lastTakeable(keyHeads); i > 0 {
				return l, i
			}
		}
	}
	return nil, -1
}

// overShare lists the lines that may give a task of tenant their place:
// with tasks behind their head, of tenants holding more than their share,
// while tenant holds less (none otherwise).
func (ls *lines) overShare(tenant string) []*line {
	share := ls.share(tenant)
	if ls.held[tenant] >= share {
		return nil
	}
	var over []*line
	for _, l := range ls.busy {
		if l.tenant != tenant && ls.held[l.tenant] > share && len(l.q) > 1 {
			over = append(over, l)
		}
	}
	return over
}

// lastTakeable is the place of the last task behind l's head that may
// give its place to another tenant's (0: none): a stored task, not a first
// attempt from dispatch, and the head of an ordering key only when
// keyHeads.
func (l *line) lastTakeable(keyHeads bool) int {
	for i := len(l.q) - 1; i > 0; i-- {
		if j := l.q[i]; j.wake == nil && (keyHeads || !j.head) {
			return i
		}
	}
	return 0
}

// full reports whether every line together, and the tasks waiting
// elsewhere that count toward it (Others), hold TotalMax.
func (ls *lines) full() bool {
	n := ls.total
	if ls.cfg.Others != nil {
		n += ls.cfg.Others()
	}
	return n >= ls.cfg.TotalMax
}

// Full reports whether every line together, with the key lines (Others),
// holds TotalMax.
func (ls *lines) Full() bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.full()
}

// canTake reports whether a task of tenant may take another's place in
// TotalMax (as victim would find one, without ordering the candidates:
// dispatch asks it for each delivery it fans out at the bound).
func (ls *lines) canTake(tenant string) bool {
	for _, l := range ls.overShare(tenant) {
		if l.lastTakeable(true) > 0 {
			return true
		}
	}
	return false
}

// count adds n to the tasks l holds in every line's total and its
// tenant's.
func (ls *lines) count(l *line, n int) {
	ls.total += n
	if ls.held[l.tenant] += n; ls.held[l.tenant] <= 0 {
		delete(ls.held, l.tenant)
	}
}

// enqueue puts j at the end of id's line l, capped at limit, and reports
// whether it is the line's first.
func (ls *lines) enqueue(id string, l *line, j *job, limit int) bool {
	j.parkedAt = ls.cfg.Now()
	if len(l.q) == 0 {
		l.tenant = j.t.Tenant
		if l.concAt.IsZero() || j.parkedAt.Sub(l.emptied) > concWindow {
			// Tasks wait from now: what the line is served at starts as
			// its cap, and moves to what admission lets it have (served).
			l.conc, l.concAt, l.concCap = float64(max(limit, 1)), j.parkedAt, limit
		} else {
			ls.track(l, j.parkedAt) // empty for a moment: its share holds
		}
	}
	l.q = append(l.q, j)
	if j.wake != nil {
		l.direct++
	}
	ls.count(l, 1)
	ls.busy[id] = l
	return len(l.q) == 1
}

// left counts j out of l's first attempts from dispatch, when it was one
// (j was taken out of l.q).
func (l *line) left(j *job) {
	if j.wake != nil {
		l.direct--
	}
}

// JoinWithin puts j at the end of id's line when the tasks ahead of it
// are expected to be served within wait, and reports whether it did.
// While the line moves (an attempt of it ended here within FastAttempt)
// that is measured at its pace: its average attempt time divided by
// limit, or its rate limit when slower; without a rate limit, at least
// behind twice the cap. A line that stands still (its head waits for a
// shared slot) takes it behind fewer than twice the cap, as before any
// pace was known, and fewer still when a rate limit serves less within
// wait (at least one). A line whose head is held past wait by a wait of
// its own (a rate limit, a probe, a circuit) takes none: the attempt
// could only time out. When every line together holds TotalMax, j takes
// another tenant's place as Join's task does, and the task it took is
// returned for the caller to defer.
func (ls *lines) JoinWithin(id string, j *job, limit int, perSecond float64, wait time.Duration) (joined, first bool, evicted *overflow) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.get(id)
	l.seenLimit, l.seenPerSecond = limit, perSecond
	now := ls.cfg.Now()
	if l.held && l.notBefore.After(now.Add(wait)) {
		return false, false, nil
	}
	room := 2 * limit
	paced := max(1, int(wait/ls.interval(l, limit, perSecond, ls.cfg.Unmeasured)))
	switch moving := now.Sub(l.ended) < FastAttempt; {
	case moving && perSecond > 0:
		room = paced
	case moving:
		room = max(room, paced)
	case perSecond > 0:
		room = min(room, paced)
	}
	if len(l.q) >= room {
		return false, false, nil
	}
	evicted, ok := ls.placeFor(j.t.Tenant)
	if !ok {
		return false, false, nil
	}
	if len(l.q) == 0 {
		// A new line, after admission refused j for want of a slot just
		// now: its first kick asks at once, not after the backoff an
		// emptied line left (a line on no scope's waiters is woken by
		// no freed slot, so the attempt would wait out its DirectWait).
		l.notBefore = time.Time{}
	}
	return true, ls.enqueue(id, l, j, limit), evicted
}

// room is how many tasks l may hold: what its endpoint is expected to
// serve within MaxWait, at least MinPerCap × limit, at most PerLineMax.
func (ls *lines) room(l *line, limit int, perSecond float64) int {
	return min(max(int(ls.cfg.MaxWait/ls.interval(l, limit, perSecond, ls.cfg.Unmeasured)), ls.cfg.MinPerCap*limit), ls.cfg.PerLineMax)
}

// deferral is how long to defer a task that finds l full: until the tasks
// in line and those deferred before it are expected to have been served
// (at least a second, at most maxDeferral).
//
// The pace is stalledAvg's attempt time (attempts in flight that stopped
// ending count as if they answered now) over served's attempts at once (what
// admission lets the line have, which can be less than its cap), so that a
// flood fanned out while its endpoint's first slow answers are on the way,
// or to a line served below its cap, is not all due again, and deferred
// again, within seconds.
//
// What is reserved for the tasks deferred before is a count of them,
// priced at the pace of the moment: when the pace changes (a stall ended
// by a fast answer, or the endpoint measured slower), the reservation
// stretches or shrinks with it, so that a stall priced into it is not
// handed to every later overflow once it is over. It reaches no further
// than maxDeferral: the tasks past it are deferred by maxDeferral and
// estimated again when they come back.
func (ls *lines) deferral(l *line, limit int, perSecond float64) time.Duration {
	now := ls.cfg.Now()
	iv := intervalOf(ls.stalledAvg(l, now, unmeasuredPace), ls.served(l, now, limit), perSecond)
	if ahead := l.deferredUntil.Sub(now); ahead > 0 && l.deferredPace > 0 && iv != l.deferredPace {
		repriced := min(float64(ahead)/float64(l.deferredPace)*float64(iv), float64(maxDeferral))
		l.deferredUntil = now.Add(time.Duration(repriced))
	}
	l.deferredPace = iv
	start := now.Add(time.Duration(len(l.q)) * iv)
	if l.deferredUntil.After(start) {
		start = l.deferredUntil
	}
	l.deferredUntil = minTime(start.Add(iv), now.Add(maxDeferral))
	return max(l.deferredUntil.Sub(now), time.Second)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// DeferralIfFull is, when id's line is full here (or has tasks while
// every line together holds TotalMax and no task may give its place to its
// tenant's: see victim), how long a task that would join it
// is to be deferred for (as Join's), and true; 0 and false when it has
// room. Dispatch asks it before storing a task that the
// deliver stage would defer the moment it took it.
func (ls *lines) DeferralIfFull(id string, limit int, perSecond float64) (time.Duration, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil || len(l.q) == 0 || (len(l.q) < ls.room(l, limit, perSecond) && (!ls.full() || ls.canTake(l.tenant))) {
		return 0, false
	}
	return ls.deferral(l, limit, perSecond), true
}

// Waiting reports whether id's line has tasks.
func (ls *lines) Waiting(id string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	return l != nil && len(l.q) > 0
}

// Fast reports whether id's attempts were measured here and are fast (a
// moving average under FastAttempt), and none it has in flight has gone
// FastAttempt without one ending (an endpoint that hangs is not fast
// while its first slow answers are still on the way): a delivery to it
// may be attempted from dispatch.
//
// A subscription not yet measured here is let through once: its first
// delivery is attempted from dispatch (a probe, which measures it), and
// until an attempt's answer is in, the others go through tasks. So a new
// subscription's, or a restarted deliverer's, first events do not wait
// behind every task in DELIVERIES (another tenant's flood) to be measured.
func (ls *lines) Fast(id string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil || l.avg <= 0 {
		l = ls.get(id)
		if l.probing || l.sending > 0 {
			return false
		}
		l.probing = true
		return true
	}
	return l.avg < FastAttempt &&
		(l.sending == 0 || ls.cfg.Now().Sub(l.progress) < FastAttempt)
}

// Moving reports whether first attempts from dispatch wait in id's line
// and an attempt of id ended here within the last within: the line is
// being served, and the direct tokens those attempts hold come back as it
// is (a line of stored tasks alone gives back none).
func (ls *lines) Moving(id string, within time.Duration) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	return l != nil && l.direct > 0 && ls.cfg.Now().Sub(l.ended) < within
}

// Begin notes that an attempt of id is being sent (Observe notes its end).
func (ls *lines) Begin(id string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.get(id)
	now := ls.cfg.Now()
	ls.track(l, now)
	switch {
	case l.sending == 0:
		l.progress, l.fresh = now, 0
	case now.Sub(l.progress) > l.avg:
		l.fresh++
	}
	l.sending++
}

// Pop takes the head of id's line (nil when empty).
func (ls *lines) Pop(id string) *job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil || len(l.q) == 0 {
		return nil
	}
	j := l.q[0]
	l.q[0] = nil
	l.q = l.q[1:]
	l.left(j)
	ls.count(l, -1)
	ls.idle(id, l)
	return j
}

// idle forgets a line that has become empty from the busy set.
func (ls *lines) idle(id string, l *line) {
	if len(l.q) == 0 {
		l.emptied = ls.cfg.Now()
		ls.advance(l, l.emptied, true) // tasks waited until now
		delete(ls.busy, id)
		ls.unqueue(l)
		l.refusals = 0
		l.direct, l.held = 0, false
	}
}

// overflow is a task taken out of a line by Trim, and its deferral.
type overflow struct {
	j     *job
	delay time.Duration
}

// Trim takes out of id's line the tasks beyond what the line may hold now
// (its endpoint may have slowed down since they joined), each with its
// deferral, as Join computes them.
func (ls *lines) Trim(id string, limit int, perSecond float64) []overflow {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil {
		return nil
	}
	room := ls.room(l, limit, perSecond)
	if len(l.q) <= room {
		return nil
	}
	cut := l.q[room:]
	l.q = l.q[:room:room]
	for _, j := range cut {
		l.left(j)
	}
	ls.count(l, -len(cut))
	ls.idle(id, l)
	out := make([]overflow, len(cut))
	for i, j := range cut {
		out[i] = overflow{j: j, delay: ls.deferral(l, limit, perSecond)}
	}
	return out
}

// Remove takes j out of id's line; false when it is not there.
func (ls *lines) Remove(id string, j *job) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil {
		return false
	}
	for i, q := range l.q {
		if q == j {
			l.q = append(l.q[:i], l.q[i+1:]...)
			l.left(j)
			ls.count(l, -1)
			ls.idle(id, l)
			return true
		}
	}
	return false
}

// Head is the head of id's line without taking it (nil when empty).
func (ls *lines) Head(id string) *job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil && len(l.q) > 0 {
		return l.q[0]
	}
	return nil
}

// Empty takes every task of id's line.
func (ls *lines) Empty(id string) []*job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil {
		return nil
	}
	out := l.q
	l.q = nil
	ls.count(l, -len(out))
	ls.idle(id, l)
	return out
}

// EmptyAll takes every task of every line.
func (ls *lines) EmptyAll() []*job {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []*job
	for id, l := range ls.busy {
		out = append(out, l.q...)
		l.q = nil
		ls.idle(id, l)
	}
	ls.busy = map[string]*line{}
	ls.total, ls.held = 0, map[string]int{}
	return out
}

// Limit is the in-flight cap of subscription id: max when it has one,
// else its line's adaptive limit.
func (ls *lines) Limit(id string, max uint32) int {
	if max > 0 {
		return int(max)
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil && l.limit > 0 {
		return l.limit
	}
	return ls.cfg.DefaultLimit
}

// Observe learns from an attempt of subscription id: its duration joins
// the line's average (a moving average over about the last eight), and
// when the subscription has no max_in_flight (adaptive) its limit moves:
//
//   - a 2xx faster than FastAttempt while tasks wait in line: one more
//     slot (up to DefaultCeiling) — a fast endpoint that keeps up with a
//     burst is given the concurrency to drain it;
//   - a timeout, a network error, a 429, a 5xx or a slow answer: half the
//     slots (down to DefaultLimit) — an endpoint that slows down or sheds
//     load is given less, at once.
//
// Other answers (a 404, say) say nothing about load.
func (ls *lines) Observe(id string, adaptive bool, res sender.Result) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.get(id)
	ls.track(l, ls.cfg.Now())
	if l.sending > 0 {
		l.sending--
	}
	l.fresh = 0 // the rest have been in flight since before this end
	l.progress = ls.cfg.Now()
	l.ended = l.progress
	l.probing = false
	if l.avg <= 0 {
		l.avg = res.Duration
	} else {
		l.avg += (res.Duration - l.avg) / 8
	}
	if !adaptive {
		return
	}
	if l.limit <= 0 {
		l.limit = ls.cfg.DefaultLimit
	}
	switch {
	case res.ErrorClass == sender.ClassCanceled:
	case res.OK() && res.Duration < FastAttempt:
		if len(l.q) > 0 {
			l.limit = min(l.limit+1, ls.cfg.DefaultCeiling)
		}
	case res.Duration >= FastAttempt || res.Status == 0 || res.Status == http.StatusTooManyRequests || res.Status >= 500:
		l.limit = max(l.limit/2, ls.cfg.DefaultLimit)
	}
}

// Claim marks id's line as polled by the caller; false when another
// goroutine polls it, or its head is not due before notBefore.
func (ls *lines) Claim(id string) bool {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil || l.polling || len(l.q) == 0 || ls.cfg.Now().Before(l.notBefore) {
		return false
	}
	l.polling = true
	return true
}

// Hold keeps id's head from being asked for before until, unless a
// goroutine polls the line (its own Unclaim decides then).
func (ls *lines) Hold(id string, until time.Time) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil && !l.polling && until.After(l.notBefore) {
		l.notBefore, l.held = until, true
	}
}

// Unclaim ends a Claim; the head is not asked for before notBefore. It
// returns the scope of a wake the line did not use ("" when none), for
// the caller to pass on (Wake).
func (ls *lines) Unclaim(id string, notBefore time.Time) (pass string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil {
		return ""
	}
	l.polling, l.woken = false, false
	l.notBefore, l.held = notBefore, true
	pass, l.wokenFor = l.wokenFor, ""
	return pass
}

// Admitted records that id's head was admitted: the line's backoff starts
// over, and it waits on no scope.
func (ls *lines) Admitted(id string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil {
		l.refusals, l.wokenFor, l.woken = 0, "", false
		l.held = false
		ls.unqueue(l)
	}
}

// Refused ends a Claim after the head was refused for want of a slot of
// scope: the line joins the scope's waiters (at the front when a freed
// slot of that scope had just woken it: somebody else took the slot) and
// is not asked for before its backoff — PollEvery, doubled by each
// refusal in a row, at most PollMax. again: a slot was freed while the
// line was being polled, and the caller asks once more now (the claim
// kept). pass is the scope of a wake the line did not use, for the caller
// to pass on (Wake).
func (ls *lines) Refused(id, scope string) (again bool, pass string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.byID[id]
	if l == nil {
		return false, ""
	}
	if l.woken {
		l.woken = false
		return true, ""
	}
	front := l.wokenFor == scope
	if !front {
		pass = l.wokenFor
	}
	l.wokenFor = ""
	l.refusals++
	l.polling = false
	l.notBefore, l.held = ls.cfg.Now().Add(ls.backoff(l.refusals)), false
	if l.elem != nil && l.waitsOn == scope {
		return false, pass
	}
	ls.unqueue(l)
	if scope == "" {
		return false, pass
	}
	w := ls.waiters[scope]
	if w == nil {
		w = list.New()
		ls.waiters[scope] = w
	}
	if front {
		l.elem = w.PushFront(id)
	} else {
		l.elem = w.PushBack(id)
	}
	l.waitsOn = scope
	return false, pass
}

// backoff is the wait after n refusals in a row: PollEvery × 2^(n-1), at
// most PollMax.
func (ls *lines) backoff(n int) time.Duration {
	d := ls.cfg.PollEvery
	for i := 1; i < n && d < ls.cfg.PollMax; i++ {
		d *= 2
	}
	return min(d, ls.cfg.PollMax)
}

// unqueue takes l out of the waiters of its scope.
func (ls *lines) unqueue(l *line) {
	if l.elem == nil {
		return
	}
	if w := ls.waiters[l.waitsOn]; w != nil {
		w.Remove(l.elem)
		if w.Len() == 0 {
			delete(ls.waiters, l.waitsOn)
		}
	}
	l.elem, l.waitsOn = nil, ""
}

// Wake is told that a slot of scope was freed in this process: the line
// that has waited longest for one is due at once, and its id returned for
// the caller to poll it ("" when no line waits on scope, or the line is
// being polled: it then asks once more when its poll is refused).
func (ls *lines) Wake(scope string) string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	w := ls.waiters[scope]
	for w != nil && w.Len() > 0 {
		id := w.Remove(w.Front()).(string)
		l := ls.byID[id]
		if w.Len() == 0 {
			delete(ls.waiters, scope)
		}
		if l == nil {
			continue
		}
		l.elem, l.waitsOn = nil, ""
		if len(l.q) == 0 {
			continue
		}
		l.wokenFor = scope
		if l.polling {
			l.woken = true
			return ""
		}
		l.notBefore, l.held = time.Time{}, false
		return id
	}
	return ""
}

// Nudge makes id's line due at once (its own subscription's slot was
// freed here): a line being polled asks once more when refused.
func (ls *lines) Nudge(id string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if l := ls.byID[id]; l != nil && len(l.q) > 0 {
		if l.polling {
			l.woken = true
			return
		}
		l.notBefore, l.held = time.Time{}, false
	}
}

// Due lists the lines with tasks whose head may be asked for now and that
// nobody polls.
func (ls *lines) Due() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.cfg.Now()
	var out []string
	for id, l := range ls.busy {
		if len(l.q) > 0 && !l.polling && !now.Before(l.notBefore) {
			out = append(out, id)
		}
	}
	return out
}

// Len is the number of tasks in every line.
func (ls *lines) Len() int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.total
}
