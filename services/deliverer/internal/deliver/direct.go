package deliver

import (
	"context"
	"sync"
	"time"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"go.uber.org/zap"
)

// Direct makes the first attempt of a delivery from dispatch, before any
// task is stored, when the subscription's endpoint is known to be fast
// here, a direct slot is free and admission says yes now — or, when the
// subscription's slots are all taken, once one is handed to it after a
// short wait in the subscription's line (at most DirectWait, and
// expected to be half that), in arrival order behind the tasks waiting
// there. It reports whether the delivery is settled: delivered, its retry
// scheduled (as the copy a failed task would leave), or
// dead-lettered. When it is not, dispatch stores the task m as before and
// the deliver stage takes it; nothing was attempted, unless a retry or a
// dead letter could not be stored (then the task repeats the attempt).
//
// Why: a delivery through a task costs the task's store, its consumption,
// its ack and its removal — under sync_interval: always, synced writes —
// and most deliveries to a healthy endpoint succeed on their first
// attempt. The event stays unacknowledged until every one of its
// deliveries is settled or stored as a task, so a crash redoes the fan-out:
// a delivery made directly is then sent again (at-least-once; see
// docs/guarantees.md).
//
// m is the task dispatch would store (its subject and headers); sub is the
// subscription the event matched, from a view at least as current as the
// task's registry revision.
func (d *Deliverer) Direct(ctx context.Context, m *nats.Msg, sub *hooklinev1.Subscription) bool {
	id := sub.GetId()
	switch {
	case d.direct == nil || d.stopping.Load():
		return false
	case !d.lines.Fast(id):
		if d.deferFull(ctx, m, sub) {
			return true
		}
		d.m.Direct.WithLabelValues("unmeasured_or_slow").Inc()
		return false
	}
	tenant := sub.GetTenant()
	if !d.directTenants.take(tenant, func() bool { return d.lines.Moving(id, directTokenWait) }) {
		d.m.Direct.WithLabelValues("tenant_busy").Inc()
		return false
	}
	defer d.directTenants.give(tenant)
	if !d.directToken() {
		d.m.Direct.WithLabelValues("busy").Inc()
		return false
	}
	defer func() { <-d.direct }()
	// Holding its tokens, the attempt waits on the endpoint (its line, the
	// POST), not on the broker: dispatch's bound on how many of a tenant's
	// events are fanned out at once (pool.Fair.PerKeyBusy) does not count
	// this event meanwhile. The tokens bound such attempts instead.
	defer pool.Attempting(ctx)()
	t, err := task.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		// The deliver stage dead-letters what cannot be read.
		d.m.Direct.WithLabelValues("not_ready").Inc()
		return false
	}
	tg, _, ok := d.ready(ctx, &t, sub)
	if !ok {
		// A tenant record that cannot be read, a secret that does not
		// open: the deliver stage settles it, with its dead letter.
		d.m.Direct.WithLabelValues("not_ready").Inc()
		return false
	}
	var slot Slot
	if !d.lines.Waiting(id) {
		var ref Refusal
		slot, ref, err = d.o.Admission.Admit(ctx, tg.sub, d.limit(tg.sub))
		if err != nil || (slot == nil && ref.Wait > 0) {
			// A rate limit, an open circuit: not a wait for a slot.
			d.m.Direct.WithLabelValues("refused").Inc()
			return false
		}
	}
	if slot == nil {
		// The subscription's slots are taken, or tasks wait for them:
		// wait in line for one, when the line is short.
		if slot = d.waitInLine(ctx, &t, tg); slot == nil {
			return false
		}
	}
	select {
	case d.directSending <- struct{}{}:
		defer func() { <-d.directSending }()
	default:
		// As many direct attempts send as may: this one's worker stays
		// free to fan out (an endpoint that hangs holds the others).
		slot.Return()
		d.gaveBack(context.WithoutCancel(ctx), tg.sub)
		d.m.Direct.WithLabelValues("busy").Inc()
		return false
	}
	// The attempt is not cut short by dispatch's own deadline: an
	// attempt's time is its subscription's timeout, as in the deliver
	// stage (AckWait covers it). A slot handed on starts the head of the
	// line on a goroutine of its own, which must outlive even that:
	// cancelled, its attempt would be cut off after its POST was sent.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tg.timeout+time.Second)
	defer cancel()
	v, signed := d.post(actx, context.WithoutCancel(ctx), &t, tg, slot, 1)
	if !signed {
		d.m.Direct.WithLabelValues("not_ready").Inc()
		return false
	}
	d.directDone.Store(time.Now().UnixNano())
	d.report(&t, v)
	return d.settleDirect(actx, &t, v)
}

// directTenants bounds the direct tokens one tenant holds to a share of
// them (DirectTenantShare), so that one tenant's endpoint that was fast
// and hangs (each of its attempts holding a token until it times out)
// leaves the others theirs. A tenant at its share whose tokens are
// turning over (a burst, not a hang) waits for one of its own, up to
// DirectWait; it stops waiting once none has been given back for
// directTokenWait, unless first attempts wait in the line of the
// subscription it asks for and that line moves (lines.Moving): its
// tokens are then held by those attempts, behind the line's tasks, and
// come back as the line is served (under load a line of a few hundred
// tasks gives none back for longer than directTokenWait, and storing the
// burst's tasks instead kept the line long: see waitInLine). Tokens held
// by a sibling subscription that hangs are not waited for: its line
// holds no first attempt of this one.
type directTenants struct {
	mu      sync.Mutex
	max     int
	held    map[string]*tenantTokens
	changed chan struct{} // closed (and replaced) when a token is given back
	now     func() time.Time
}

type tenantTokens struct {
	n int
	// done is when one of its direct attempts last ended, or when it
	// took a token holding none.
	done time.Time
}

func (dt *directTenants) take(tenant string, moving func() bool) bool {
	deadline := dt.now().Add(DirectWait)
	for {
		dt.mu.Lock()
		tt := dt.held[tenant]
		if tt == nil {
			// Its first token since it held none: its attempts have had
			// no time to end yet.
			tt = &tenantTokens{done: dt.now()}
			dt.held[tenant] = tt
		}
		if tt.n < dt.max {
			tt.n++
			dt.mu.Unlock()
			return true
		}
		// Wait while its tokens turn over: until one is given back, or
		// none has been for directTokenWait (its attempts hang: the
		// dispatch workers that would wait are better spent fanning out
		// other tenants' events) while the line asked for stands still,
		// or DirectWait.
		now := dt.now()
		wait := min(directTokenWait-now.Sub(tt.done), deadline.Sub(now))
		changed := dt.changed
		dt.mu.Unlock()
		if wait <= 0 && deadline.After(now) && moving() {
			wait = min(directTokenWait, deadline.Sub(now))
		}
		if wait <= 0 {
			return false
		}
		timer := time.NewTimer(wait)
		select {
		case <-changed:
			timer.Stop()
		case <-timer.C:
		}
	}
}

func (dt *directTenants) give(tenant string) {
	dt.mu.Lock()
	defer dt.mu.Unlock()
	if tt := dt.held[tenant]; tt != nil {
		tt.n--
		tt.done = dt.now()
		if tt.n <= 0 {
			delete(dt.held, tenant)
		}
	}
	close(dt.changed)
	dt.changed = make(chan struct{})
}

// directTokenWait bounds how long a first attempt waits for a direct
// token when every one is taken but they are turning over.
const directTokenWait = 50 * time.Millisecond

// directToken takes a direct token: at once when one is free; otherwise,
// when a direct attempt ended within FastAttempt (the tokens are turning
// over: a burst, not a hang), after a wait of at most directTokenWait.
// Without that wait a burst seeds its subscription's line with the tasks
// of the events that found every token taken, the line grows past what a
// direct attempt may wait behind, and the burst goes through tasks again
// (measured: 8,300 of 10,000 deliveries). When the attempts holding the
// tokens hang, none ends and nothing waits.
func (d *Deliverer) directToken() bool {
	select {
	case d.direct <- struct{}{}:
		if len(d.direct) == 1 {
			// The first token of a busy spell: its attempts have had no
			// time to end yet, so a burst's next events wait for them as
			// for tokens turning over (else the first events past the
			// tokens after a quiet spell stored tasks, which seeded the
			// line, and the burst went through tasks).
			d.directDone.Store(time.Now().UnixNano())
		}
		return true
	default:
	}
	if time.Since(time.Unix(0, d.directDone.Load())) > FastAttempt {
		return false
	}
	t := time.NewTimer(directTokenWait)
	defer t.Stop()
	select {
	case d.direct <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// DirectWait bounds how long a first attempt from dispatch waits in its
// subscription's line for a slot before dispatch stores its task instead.
const DirectWait = time.Second

// waitInLine parks a first attempt from dispatch at the end of its
// subscription's line, when the tasks there are expected to be served
// within half of DirectWait (lines.JoinWithin: at the endpoint's measured
// pace while the line moves, at its rate limit), until a slot is handed
// to it (in arrival order, behind the tasks waiting there) or DirectWait
// passes; nil when it got none.
//
// The bound is a time, not a count: a burst that found the line long
// with tasks (stored while the endpoint was briefly slow, or fanned out
// by another replica) and stored its own tasks instead of waiting would
// keep the line long with them, each arriving behind the last, and the
// whole burst went through tasks (measured: 1,245 deliveries/s instead
// of 4,500, 1.07 tasks stored per delivery). Waiting instead holds
// dispatch's workers, so the fan-out slows to the pace of the line.
func (d *Deliverer) waitInLine(ctx context.Context, t *task.Task, tg target) Slot {
	id := tg.sub.GetId()
	j := &job{t: *t, wake: make(chan Slot, 1), stop: func() {}}
	joined, first, evicted := d.lines.JoinWithin(id, j, d.limit(tg.sub), tg.sub.GetRateLimitPerSecond(), DirectWait/2)
	d.deferOverflow(context.WithoutCancel(ctx), evicted)
	if !joined {
		d.m.Direct.WithLabelValues("line").Inc()
		return nil
	}
	d.m.AdmissionParked.Inc()
	if first {
		// A slot may have been given back since admission said no, with
		// nobody in line to pass it to.
		d.kick(context.WithoutCancel(ctx), id)
	}
	timer := time.NewTimer(DirectWait)
	defer timer.Stop()
	var slot Slot
	select {
	case slot = <-j.wake:
	case <-timer.C:
		if d.lines.Remove(id, j) {
			d.m.Direct.WithLabelValues("line").Inc()
			return nil
		}
		// Taken from the line just now: its slot, or its dismissal, is
		// on the way.
		slot = <-j.wake
	}
	if slot == nil {
		d.m.Direct.WithLabelValues("line").Inc()
	}
	return slot
}

// settleDirect stores what a first attempt made from dispatch leaves
// behind: nothing after a success, the retry's scheduled copy, or the
// dead letter. False when that could not be stored: the caller stores the
// task, which attempts again.
func (d *Deliverer) settleDirect(ctx context.Context, t *task.Task, v verdict) bool {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	ids := []zap.Field{zap.String("event_id", t.EventID), zap.String("subscription_id", t.SubscriptionID)}
	switch v.decision.Kind {
	case settle.Ack:
		d.m.Direct.WithLabelValues("delivered").Inc()
		return true
	case settle.Retry, settle.Defer:
		c := settle.Copy{
			Header: nextHeader(t, v), Body: t.Body, Tenant: t.Tenant, SubscriptionID: t.SubscriptionID,
			EventID: t.EventID, Delay: v.decision.Delay,
		}
		if err := d.sched.Schedule(ctx, c); err != nil {
			d.m.ScheduleFailures.Inc()
			d.m.Direct.WithLabelValues("fallback").Inc()
			d.log.Warn("retry of a direct attempt not scheduled; its task is stored instead", append(ids, zap.Error(err))...)
			return false
		}
		d.m.Direct.WithLabelValues("retry_scheduled").Inc()
		return true
	default:
		l := letter(t, 0, v)
		dup, err := d.dead.Publish(ctx, l)
		if err != nil {
			d.m.Direct.WithLabelValues("fallback").Inc()
			d.log.Warn("dead letter of a direct attempt not published; its task is stored instead", append(ids, zap.String("reason", l.Reason), zap.Error(err))...)
			return false
		}
		if !dup {
			d.m.DeadLetters.WithLabelValues(l.Reason).Inc()
			d.log.Warn("dead-lettered", append(ids, zap.String("event_type", t.EventType), zap.String("reason", l.Reason),
				zap.Int("attempts", l.Attempts), zap.Int("status", l.LastStatus), zap.String("error", l.LastError))...)
		}
		d.m.Direct.WithLabelValues("dead_lettered").Inc()
		return true
	}
}

// deferFull stores the delivery m, to a subscription not attempted from
// dispatch, already deferred when the subscription's line is full here:
// the scheduled copy the deliver stage would leave on taking its task
// (line_full, by the same estimate of the wait ahead), under the task's
// dedup id, so that a fan-out redone after it stores no second task. A
// flood to a slow endpoint otherwise stored each task twice — the task,
// then its deferral — and each store is a synced write under
// sync_interval: always, taken from every other tenant's share of the
// server. False when the line has room or the schedule could not be
// stored: dispatch stores the task as before.
func (d *Deliverer) deferFull(ctx context.Context, m *nats.Msg, sub *hooklinev1.Subscription) bool {
	if !d.lines.Waiting(sub.GetId()) {
		return false // nothing in line: no tenant to look up
	}
	// The line's room and pace are the deliver stage's: the subscription's
	// effective cap and rate limit (a tenant's defaults), not its record's.
	var ten *hooklinev1.Tenant
	if d.tens != nil {
		lctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
		var err error
		ten, err = d.tens.Get(lctx, sub.GetTenant())
		cancel()
		if err != nil {
			return false // the deliver stage settles its task
		}
	}
	eff := d.effective(ten, sub).sub
	delay, full := d.lines.DeferralIfFull(eff.GetId(), d.limit(eff), eff.GetRateLimitPerSecond())
	if !full {
		return false
	}
	t, err := task.Parse(m.Subject, m.Header, m.Data)
	if err != nil {
		return false // the deliver stage dead-letters what cannot be read
	}
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	v := verdict{decision: settle.Later(delay), refused: ReasonLineFull}
	c := settle.Copy{
		Header: nextHeader(&t, v), Body: t.Body, Tenant: t.Tenant, SubscriptionID: t.SubscriptionID,
		EventID: t.EventID, Delay: delay,
	}
	if err := d.sched.Schedule(ctx, c); err != nil {
		d.m.ScheduleFailures.Inc()
		d.log.Debug("deferral at fan-out not scheduled; its task is stored instead",
			zap.String("event_id", t.EventID), zap.String("subscription_id", t.SubscriptionID), zap.Error(err))
		return false
	}
	d.m.Direct.WithLabelValues("deferred").Inc()
	d.report(&t, v) // counted as the deliver stage's line_full deferral
	return true
}
