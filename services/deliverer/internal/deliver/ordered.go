package deliver

import (
	"context"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"time"

	"github.com/hookline/hookline/services/deliverer/internal/ordering"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"go.uber.org/zap"
)

// Orderer keeps the key lines of ordered subscriptions in Redis
// (ordering.Store).
type Orderer interface {
	Check(ctx context.Context, e ordering.Entry) (ordering.State, error)
	CheckAll(ctx context.Context, entries []ordering.Entry) ([]ordering.State, error)
	Finish(ctx context.Context, e ordering.Entry) error
	Hold(ctx context.Context, e ordering.Entry, at time.Time) error
}

// Floor says whether every event before a sequence was fanned out
// (ordering.Floor).
type Floor interface {
	Known(seq uint64) bool
	Covers(ctx context.Context, seq uint64) (bool, error)
}

var (
	_ Orderer = (*ordering.Store)(nil)
	_ Floor   = (*ordering.Floor)(nil)
)

// ReasonOrdered is the deferral reason of a task that waits for an earlier
// event of its ordering key.
const ReasonOrdered = "ordered"

// ordered reports whether a task takes its turn in its key's line.
func (d *Deliverer) ordered(j *job) bool {
	return d.ord != nil && j.t.Ordered() && !j.head
}

// order lets a task of an ordered subscription go to admission when it is
// its key's head, and makes it wait otherwise.
func (d *Deliverer) order(ctx context.Context, j *job, tg target) {
	if !d.floor.Known(j.t.EventSeq) {
		ok, err := d.floor.Covers(ctx, j.t.EventSeq)
		if err != nil {
			d.warnFloor(err)
		}
		if !ok {
			// An earlier event may still be on its way to the key's line.
			d.orderWait(ctx, j, ordering.State{Verdict: ordering.Wait})
			return
		}
	}
	st, err := d.ord.Check(ctx, j.entry())
	if err != nil {
		d.finish(ctx, j, verdict{decision: settle.Later(d.o.RetryDelay), detail: "ordering: " + err.Error()})
		return
	}
	d.orderState(ctx, j, st, func() { d.admit(ctx, j, tg) })
}

// orderState carries a Check's answer out; admit runs a head.
func (d *Deliverer) orderState(ctx context.Context, j *job, st ordering.State, admit func()) {
	if st.Lost {
		d.m.OrderingStateLost.Inc()
		d.log.Warn("ordered task missing from its key's line in Redis (Redis lost its data?); put back by its sequence",
			zap.String("event_id", j.t.EventID), zap.String("subscription_id", j.t.SubscriptionID))
	}
	switch st.Verdict {
	case ordering.Done:
		// Delivered or dead-lettered before (a lost ack): sending it again
		// now would put it after later events of its key.
		d.m.OrderingSkipped.Inc()
		d.finish(ctx, j, verdict{decision: settle.Decision{Kind: settle.Ack}})
	case ordering.Head:
		j.head = true
		j.t.OrderingSeq = st.Number
		d.keys.HeadStarted(j.orderingKey(), time.Now())
		admit()
	default:
		d.orderWait(ctx, j, st)
	}
}

// orderWait keeps a task that is not its key's head in its key line, or
// defers it: when its head comes back only after a scheduled retry, or the
// process has no room.
//
// One key holds at most half of LineMax here (the rest of a long key is
// deferred by its place in line at the key's pace): a key with many
// thousands of events waiting must not take the consumer's MaxAckPending
// from every other subscription. Not less: a key's pace is only known
// once it ran, and a tail deferred on a guess leaves the key idle until
// it comes back.
func (d *Deliverer) orderWait(ctx context.Context, j *job, st ordering.State) {
	key := j.orderingKey()
	pace := d.keys.Pace(key)
	spread := time.Duration(st.Ahead) * pace
	if until := time.Until(st.Next); until > d.o.MaxWait {
		d.deferJob(ctx, j, ReasonOrdered, until+spread)
		return
	}
	room := max(d.o.LineMax/2, 1)
	if d.stopping.Load() || st.Ahead >= int64(room) || d.lines.Full() ||
		!d.keys.Join(j, room, d.o.LineMax, time.Now()) {
		d.deferJob(ctx, j, ReasonOrdered, max(spread, time.Second))
		return
	}
	d.m.OrderingWaiting.Set(float64(d.keys.Len()))
}

// headEnded is called when a head in hand here was settled: its key's
// line here is checked at once.
func (d *Deliverer) headEnded(ctx context.Context, j *job, finished bool) {
	if d.keys.HeadEnded(j.orderingKey(), finished, time.Now()) {
		d.kickKeys(ctx, []ordering.Key{j.orderingKey()})
	}
}

// kickKeys checks the given key lines on a goroutine of their own.
func (d *Deliverer) kickKeys(ctx context.Context, keys []ordering.Key) {
	if d.stopping.Load() || len(keys) == 0 {
		return
	}
	d.chains.Add(1)
	go func() {
		defer d.chains.Done()
		defer func() {
			if r := recover(); r != nil {
				d.log.Error("key line check panicked", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		d.checkKeys(ctx, keys)
	}()
}

// checkKeys asks, in one round trip, whether the first task of each line
// is its key's head now, and starts those that are.
func (d *Deliverer) checkKeys(ctx context.Context, keys []ordering.Key) {
	now := time.Now()
	var (
		claimed []ordering.Key
		jobs    []*job
	)
	for _, key := range keys {
		j := d.keys.Claim(key, now)
		if j == nil {
			continue
		}
		if !d.floor.Known(j.t.EventSeq) {
			if ok, _ := d.floor.Covers(ctx, j.t.EventSeq); !ok {
				d.keys.Unclaim(key)
				continue
			}
		}
		claimed = append(claimed, key)
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return
	}
	entries := make([]ordering.Entry, len(jobs))
	for i, j := range jobs {
		entries[i] = j.entry()
	}
	states, err := d.ord.CheckAll(ctx, entries)
	if err != nil {
		d.log.Warn("check key lines", zap.Error(err))
		for _, key := range claimed {
			d.keys.Unclaim(key)
		}
		return
	}
	for i, st := range states {
		key, j := claimed[i], jobs[i]
		if st.Verdict == ordering.Wait {
			d.keys.Checked(key, st.Ahead, now)
			if time.Until(st.Next) > d.o.MaxWait {
				// The head fails and comes back after a scheduled retry:
				// its followers wait out of hand.
				pace := d.keys.Pace(key)
				for n, o := range d.keys.Empty(key) {
					d.deferJob(ctx, o, ReasonOrdered, time.Until(st.Next)+time.Duration(st.Ahead+int64(n))*pace)
				}
			}
			d.keys.Unclaim(key)
			continue
		}
		removed := d.keys.Remove(j)
		d.keys.Unclaim(key)
		if !removed {
			continue // deferred at shutdown meanwhile
		}
		d.m.AdmissionWait.Observe(time.Since(j.parkedAt).Seconds())
		d.runHead(ctx, j, st)
	}
	d.m.OrderingWaiting.Set(float64(d.keys.Len()))
}

// runHead settles or starts a task that left its key line, on a goroutine
// of its own. With a line slot free it asks admission and may attempt at
// once (at most Workers attempt on line goroutines); without one it joins
// its subscription's admission line, whose attempts hand their slots on —
// never blocking on a slot, which would starve those hand-offs.
func (d *Deliverer) runHead(ctx context.Context, j *job, st ordering.State) {
	d.chains.Add(1)
	go func() {
		defer d.chains.Done()
		if d.stopping.Load() {
			// Stopping: the task goes back to JetStream, not to an attempt.
			d.deferJob(ctx, j, "shutdown", time.Second)
			return
		}
		select {
		case d.lineSlots <- struct{}{}:
			defer func() { <-d.lineSlots }()
			defer d.recoverLine(j, noSlot{})
			d.orderState(ctx, j, st, func() { d.start(ctx, j) })
		default:
			defer d.recoverLine(j, noSlot{})
			d.orderState(ctx, j, st, func() { d.queue(ctx, j) })
		}
	}()
}

// queue puts a task ready to attempt in its subscription's admission line
// without asking admission.
func (d *Deliverer) queue(ctx context.Context, j *job) {
	tg, v, ok := d.prepare(ctx, &j.t)
	if !ok {
		d.finish(ctx, j, v)
		return
	}
	d.wait(ctx, j, tg, Refusal{Reason: RefusedFull})
}

// stillHead asks, just before a head's request goes out, whether it still
// is its key's head: another copy of it (a redelivery, a retry whose ack
// was lost) may have finished it while it waited for a slot, and the key
// moved on. It reports false when the task was settled or sent back to
// wait (the slot given back).
func (d *Deliverer) stillHead(ctx context.Context, j *job, tg target, slot Slot) bool {
	st, err := d.ord.Check(ctx, j.entry())
	if err != nil || st.Verdict == ordering.Head {
		// A Redis error: the head was head a moment ago; it goes.
		return true
	}
	slot.Return()
	d.gaveBack(ctx, tg.sub)
	if st.Verdict == ordering.Done {
		d.m.OrderingSkipped.Inc()
		d.finish(ctx, j, verdict{decision: settle.Decision{Kind: settle.Ack}})
		return false
	}
	d.keys.HeadEnded(j.orderingKey(), false, time.Now())
	j.head = false
	d.orderWait(ctx, j, st)
	return false
}

// warnFloor logs a failed ack-floor read at most every 10s.
func (d *Deliverer) warnFloor(err error) {
	now := time.Now().UnixNano()
	if last := d.floorWarned.Load(); now-last > int64(10*time.Second) && d.floorWarned.CompareAndSwap(last, now) {
		d.log.Warn("read the dispatch ack floor (ordered tasks wait for it)", zap.Error(err))
	}
}

// pollKeys checks the key lines whose head is not in hand here, and defers
// the tasks of lines stuck for longer than MaxWait.
func (d *Deliverer) pollKeys(ctx context.Context) {
	due, stale := d.keys.Due(time.Now(), d.o.PollEvery, d.o.MaxWait)
	for _, j := range stale {
		d.deferJob(ctx, j, ReasonOrdered, d.o.MaxWait)
	}
	if len(due) > 0 {
		d.kickKeys(ctx, due)
	}
}

// finishOrdered takes a settled task out of its key's line before its
// message is acked or termed.
func (d *Deliverer) finishOrdered(ctx context.Context, j *job) error {
	if d.ord == nil || !j.t.Ordered() || j.t.EventSeq == 0 {
		return nil
	}
	return d.ord.Finish(ctx, j.entry())
}

// holdOrdered tells a head's followers when it comes back.
func (d *Deliverer) holdOrdered(ctx context.Context, j *job, delay time.Duration) {
	if d.ord == nil || !j.head {
		return
	}
	if err := d.ord.Hold(ctx, j.entry(), settle.FireAt(time.Now(), delay)); err != nil {
		d.log.Warn("tell an ordering key's followers when its head retries", zap.String("event_id", j.t.EventID), zap.Error(err))
	}
}

// noSlot is the slot of a task that holds none (recoverLine's).
type noSlot struct{}

func (noSlot) Release(sender.Result)   {}
func (noSlot) Pass(sender.Result) bool { return false }
func (noSlot) Return()                 {}

// fannedOut is the Floor of a stage whose events are all fanned out
// (tests that publish tasks directly).
type fannedOut struct{}

func (fannedOut) Known(uint64) bool                            { return true }
func (fannedOut) Covers(context.Context, uint64) (bool, error) { return true, nil }
