package deliver

import (
	"sort"
	"sync"
	"time"

	"github.com/hookline/hookline/services/deliverer/internal/ordering"
)

// keyLines are the tasks of ordered subscriptions that wait, in this
// process, for an earlier event of their ordering key: one line per key,
// in EVENTS sequence order. Like an admission line, a waiting task holds no
// worker: it is an unacknowledged message kept alive with InProgress.
//
// Only the first task of a line can be the key's next head, so a line is
// checked (ordering.Store.Check) through its first task: at once when the
// key's head finishes in this process, and every PollEvery otherwise (the
// head is on another replica) — never while this process holds the head.
type keyLines struct {
	mu    sync.Mutex
	byKey map[ordering.Key]*keyLine
	bySub map[string]int
	total int
	// heads counts the heads of each key in hand here (attempting, or in
	// an admission line).
	heads map[ordering.Key]int
}

type keyLine struct {
	q       []*job
	claimed bool
	// moved is when the key last made progress (a head started or
	// finished here, or the line was created).
	moved time.Time
	// polled is when the line was last checked.
	polled time.Time
	// pace is the moving average of the time a head of the key takes here,
	// from its check to its settling, starting from defaultKeyPace (one
	// slow first head, a new connection, does not make a burst look slow):
	// idle time between heads (a deferred task not back yet) is not in it.
	pace    time.Duration
	started time.Time
	// ahead is how many tasks the last check found before the first one
	// (-1 before a check).
	ahead int64
}

// defaultKeyPace is the time a key's head is assumed to take before one
// was measured: optimistic (a fast endpoint), so that a burst to one key
// waits here rather than being deferred by a guess; the measured pace
// (after two heads) shrinks what the key may hold if its endpoint is slow.
const defaultKeyPace = 2 * time.Millisecond

func newKeyLine(now time.Time) *keyLine {
	return &keyLine{moved: now, ahead: -1, pace: defaultKeyPace}
}

func newKeyLines() *keyLines {
	return &keyLines{byKey: map[ordering.Key]*keyLine{}, bySub: map[string]int{}, heads: map[ordering.Key]int{}}
}

func (j *job) orderingKey() ordering.Key {
	return ordering.Key{Subscription: j.t.SubscriptionID, Value: j.t.OrderingKey}
}

func (j *job) entry() ordering.Entry {
	return ordering.Entry{Key: j.orderingKey(), EventID: j.t.EventID, Seq: j.t.EventSeq}
}

// Join puts j in its key's line unless the line holds perKey tasks or its
// subscription already has perSub tasks waiting here (what key and
// admission lines hold together is bounded by the caller: lines.Full).
func (k *keyLines) Join(j *job, perKey, perSub int, now time.Time) bool {
	key := j.orderingKey()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.bySub[key.Subscription] >= perSub {
		return false
	}
	l := k.byKey[key]
	if l != nil && len(l.q) >= perKey {
		return false
	}
	if l == nil {
		l = newKeyLine(now)
		k.byKey[key] = l
	}
	i := sort.Search(len(l.q), func(i int) bool { return l.q[i].t.EventSeq > j.t.EventSeq })
	l.q = append(l.q, nil)
	copy(l.q[i+1:], l.q[i:])
	l.q[i] = j
	j.parkedAt = now
	k.bySub[key.Subscription]++
	k.total++
	return true
}

// Claim marks key's line as being checked and returns its first task; nil
// when the line is empty or already claimed.
func (k *keyLines) Claim(key ordering.Key, now time.Time) *job {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.byKey[key]
	if l == nil || l.claimed || len(l.q) == 0 {
		return nil
	}
	l.claimed = true
	l.polled = now
	return l.q[0]
}

// Unclaim ends a check.
func (k *keyLines) Unclaim(key ordering.Key) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.byKey[key]; l != nil {
		l.claimed = false
		k.dropIfEmpty(key, l)
	}
}

// Remove takes j out of its line; false when it was no longer there.
func (k *keyLines) Remove(j *job) bool {
	key := j.orderingKey()
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.byKey[key]
	if l == nil {
		return false
	}
	for i, o := range l.q {
		if o == j {
			l.q = append(l.q[:i], l.q[i+1:]...)
			k.bySub[key.Subscription]--
			k.total--
			k.dropIfEmpty(key, l)
			return true
		}
	}
	return false
}

// Empty takes every task out of key's line.
func (k *keyLines) Empty(key ordering.Key) []*job {
	k.mu.Lock()
	defer k.mu.Unlock()
	l := k.byKey[key]
	if l == nil {
		return nil
	}
	jobs := l.q
	l.q = nil
	k.bySub[key.Subscription] -= len(jobs)
	k.total -= len(jobs)
	k.dropIfEmpty(key, l)
	return jobs
}

// EmptyAll takes every task out of every line (shutdown).
func (k *keyLines) EmptyAll() []*job {
	k.mu.Lock()
	defer k.mu.Unlock()
	var jobs []*job
	for key, l := range k.byKey {
		jobs = append(jobs, l.q...)
		l.q = nil
		k.dropIfEmpty(key, l)
	}
	k.bySub = map[string]int{}
	k.total = 0
	return jobs
}

func (k *keyLines) dropIfEmpty(key ordering.Key, l *keyLine) {
	if len(l.q) == 0 && !l.claimed && k.heads[key] == 0 {
		delete(k.byKey, key)
	}
	if k.bySub[key.Subscription] <= 0 {
		delete(k.bySub, key.Subscription)
	}
}

// HeadStarted notes that this process holds key's head.
func (k *keyLines) HeadStarted(key ordering.Key, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.heads[key]++
	l := k.byKey[key]
	if l == nil {
		l = newKeyLine(now)
		k.byKey[key] = l
	}
	l.moved, l.started = now, now
}

// HeadEnded notes that key's head in hand here was settled (finished, or
// handed to a retry); it reports whether tasks of the key wait here.
func (k *keyLines) HeadEnded(key ordering.Key, finished bool, now time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.heads[key]--; k.heads[key] <= 0 {
		delete(k.heads, key)
	}
	l := k.byKey[key]
	if l == nil {
		return false
	}
	l.moved = now
	if finished && !l.started.IsZero() {
		l.pace = (l.pace*7 + now.Sub(l.started)) / 8
	}
	if len(l.q) == 0 {
		k.dropIfEmpty(key, l)
		return false
	}
	return true
}

// interval is how often a line whose head is elsewhere is checked: every
// when its first task is next, less often the further back it is (half
// the time the tasks ahead are expected to take, at most a second).
func (l *keyLine) interval(every time.Duration) time.Duration {
	if l.ahead <= 1 {
		return every
	}
	return min(max(time.Duration(l.ahead)*l.pace/2, every), time.Second)
}

// Checked records a check of key's line that found ahead tasks before its
// first: fewer than the last time is progress (a head finished elsewhere).
func (k *keyLines) Checked(key ordering.Key, ahead int64, now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.byKey[key]; l != nil {
		if l.ahead >= 0 && ahead < l.ahead {
			l.moved = now
		}
		l.ahead = ahead
	}
}

// Pace is the expected time between two heads of key.
func (k *keyLines) Pace(key ordering.Key) time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l := k.byKey[key]; l != nil {
		return l.pace
	}
	return defaultKeyPace
}

// Due returns the lines to check now: not claimed, no head of their key
// in hand here, not checked within every. Lines that made no progress for
// longer than stuck are returned in stale instead, emptied: their tasks are
// deferred rather than held while, say, a crashed replica's head waits for
// its AckWait.
func (k *keyLines) Due(now time.Time, every, stuck time.Duration) (due []ordering.Key, stale []*job) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key, l := range k.byKey {
		if l.claimed || len(l.q) == 0 {
			continue
		}
		if now.Sub(l.moved) > stuck {
			stale = append(stale, l.q...)
			k.bySub[key.Subscription] -= len(l.q)
			k.total -= len(l.q)
			l.q = nil
			k.dropIfEmpty(key, l)
			continue
		}
		if k.heads[key] > 0 || now.Sub(l.polled) < l.interval(every) {
			continue
		}
		due = append(due, key)
	}
	return due, stale
}

// Len is the number of tasks waiting in key lines.
func (k *keyLines) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.total
}
