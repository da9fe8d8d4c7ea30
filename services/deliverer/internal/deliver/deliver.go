// Package deliver is the attempt stage: it consumes DELIVERIES, looks the
// subscription up, signs and POSTs the event, records the attempt, and
// settles the task in exactly one way — Ack, a scheduled retry (or defer)
// then Ack, or a dead letter then Term — as settle.Decide says.
package deliver

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tenant"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/attempt"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Lookup finds a subscription (subscription.Cache). It returns
// subscription.ErrNotFound for a deleted one.
// need is the subscriptions bucket's revision the view must reach (the
// task's RegistryRev).
type Lookup interface {
	Get(ctx context.Context, tenant, id string, need uint64) (*hooklinev1.Subscription, error)
}

// Sender performs an HTTP attempt (sender.Sender).
type Sender interface {
	Send(ctx context.Context, r sender.Request) sender.Result
}

// Scheduler parks a task copy until a retry is due (settle.Scheduler).
type Scheduler interface {
	Schedule(ctx context.Context, c settle.Copy) error
}

// DeadLetters publishes dead letters (deadletter.Publisher).
type DeadLetters interface {
	Publish(ctx context.Context, l deadletter.Letter) (duplicate bool, err error)
}

// Tenants finds a tenant's record, its delivery policy defaults
// (tenant.Cache); nil without one.
type Tenants interface {
	Get(ctx context.Context, tenant string) (*hooklinev1.Tenant, error)
}

// Recorder stores attempt records (attempt.Recorder).
type Recorder interface {
	Record(a *hooklinev1.Attempt)
}

// StoredRecorder is a Recorder that is also told when EVENTS stored the
// attempt's event (zero when the task does not say): the delivery-state
// writer stores the states of events stored close together in one message
// (pkg/deliverystate).
type StoredRecorder interface {
	Recorder
	RecordStored(a *hooklinev1.Attempt, storedAt time.Time)
}

// Deferrals counts each subscription's deferrals for the producer's stats
// (deferrals.Counter).
type Deferrals interface {
	Deferred(subscriptionID, reason string)
}

var (
	_ Sender      = (*sender.Sender)(nil)
	_ Scheduler   = (*settle.Scheduler)(nil)
	_ DeadLetters = (*deadletter.Publisher)(nil)
	_ Recorder    = (*attempt.Recorder)(nil)
	_ Tenants     = (*tenant.Cache)(nil)
)

// Options tune the stage.
type Options struct {
	// Workers perform attempts in parallel (default 64).
	Workers int
	// Buffer is how many tasks are fetched ahead of the workers and
	// served a tenant at a time, in turn (default DefaultBuffer; the
	// deliverer gives a quarter of the consumer's MaxAckPending).
	Buffer int
	// AckWait of the deliver consumer: a worker sends InProgress every
	// third of it while a task is in hand.
	AckWait time.Duration
	// MaxRedeliveries: a task delivered more often than this by JetStream
	// (crashes, lost acks, naks) is dead-lettered "redelivery_exhausted".
	MaxRedeliveries int
	// Policy decides retries; its Schedule is the environment's, replaced
	// per task by the subscription's effective one (pkg/policy.Resolve).
	Policy settle.Policy
	// Environment is the environment level of the delivery policy
	// (HOOKLINE_RETRY_SCHEDULE, HOOKLINE_HTTP_TIMEOUT,
	// HOOKLINE_AUTO_DISABLE_AFTER).
	Environment policy.Environment
	// MaxAttemptTimeout caps an effective attempt timeout (0: none): the
	// API refuses a longer one, but the deliverer's AckWait and shutdown
	// timeout may have shrunk since it was set.
	MaxAttemptTimeout time.Duration
	// Admission is asked before each attempt (required).
	Admission Admission
	// DefaultMaxInFlight is where the cap of a subscription whose
	// max_in_flight is 0 starts, and its floor (default 10);
	// DefaultMaxInFlightCeiling is how far it may grow for a fast endpoint
	// (default 64). Admission enforces the cap it is given.
	DefaultMaxInFlight, DefaultMaxInFlightCeiling int
	// MaxWait: a refused task waits in its subscription's line only when
	// it is expected to be attempted within this long (default 10s);
	// otherwise it is deferred by its expected wait.
	MaxWait time.Duration
	// LineMax bounds the tasks of one subscription's line (default 5,000);
	// LinesMax those of every line together (default 7,500). Keep both
	// below the deliver consumer's MaxAckPending.
	LineMax, LinesMax int
	// HTTPTimeout is the attempt duration assumed of an endpoint before
	// one was measured (default 15s).
	HTTPTimeout time.Duration
	// PollEvery is how soon the head of a line refused for want of a slot
	// asks admission again (default 20ms); each refusal in a row doubles
	// the wait, up to PollMax (default 1s). A slot freed by an attempt of
	// this process wakes a line waiting for it at once (its own
	// subscription's, its tenant's, its destination's); PollMax is the
	// most a line waits to see one freed by another replica.
	PollEvery, PollMax time.Duration
	// Secrets turns a subscription's keys into signing secrets (default
	// OpenedSecrets(nil): keys in clear, sealed ones refused).
	Secrets Secrets
	// URLs opens a subscription's sealed URL (default OpenedURLs(nil)).
	URLs URLs
	// Headers opens a subscription's sealed custom headers (default OpenedHeaders(nil)).
	Headers Headers
	// Auth opens a subscription's endpoint authentication (default
	// OpenedAuth(nil)).
	Auth Auth
	// RetryDelay defers a task after a lookup or admission error, and naks
	// it when a dead letter cannot be published (default 5s).
	RetryDelay time.Duration
	// Timeout bounds the NATS work of settling one task (default 10s).
	Timeout time.Duration
	// DirectMax bounds the first attempts dispatch makes (or waits in line
	// for) at once without storing a task (Direct; default 64); negative:
	// none, every delivery goes through a task.
	DirectMax int
	// DirectAttempts bounds those of them sending at once (default
	// DirectMax). The service keeps it below dispatch's workers: an
	// attempt holds its worker until its endpoint answers or times out,
	// so an endpoint measured fast that starts hanging must leave workers
	// that fan out (a wait in line holds one at most DirectWait).
	DirectAttempts int
	// DirectTenantShare is the share of the DirectMax slots one tenant may
	// hold at once (default 0.75, the tenant worker share): an endpoint measured fast that starts hanging
	// holds its slots until its attempts time out, and the other tenants'
	// first attempts keep the rest.
	DirectTenantShare float64
}

// Deliverer is the attempt stage.
type Deliverer struct {
	js    jetstream.JetStream
	subs  Lookup
	send  Sender
	sched Scheduler
	dead  DeadLetters
	rec   Recorder
	tens  Tenants
	log   *zap.Logger
	m     *metrics.Metrics
	o     Options
	lines *lines
	// ord and floor order the tasks of ordered subscriptions by key; keys
	// are those that wait here for an earlier event of their key.
	ord   Orderer
	floor Floor
	keys  *keyLines
	// chains are the goroutines that run tasks from a line or poll one;
	// lineSlots bounds those that attempt (Workers).
	chains    sync.WaitGroup
	lineSlots chan struct{}
	stopping  atomic.Bool
	// floorWarned is when a failed ack-floor read was last logged.
	floorWarned atomic.Int64
	// deferrals: nil when not counted.
	deferrals Deferrals
	tracing   *tracing.Tracing
	// direct holds a token per first attempt made from dispatch (nil:
	// none are); directSending one per such attempt sending.
	direct, directSending chan struct{}
	// directTenants counts the direct tokens each tenant holds.
	directTenants *directTenants
	// directDone is when a direct attempt last ended, or when one took a
	// token while none was held (UnixNano): the tokens' last progress.
	directDone atomic.Int64
}

// Deps are the stage's collaborators.
type Deps struct {
	JS          jetstream.JetStream
	Lookup      Lookup
	Sender      Sender
	Scheduler   Scheduler
	DeadLetters DeadLetters
	Recorder    Recorder
	// Tenants holds the tenants' delivery policy defaults (nil: none).
	Tenants Tenants
	Log     *zap.Logger
	Metrics *metrics.Metrics
	// Ordering and Floor order the tasks of ordered subscriptions (nil:
	// an ordering key is sent to the receiver but not waited on).
	Ordering Orderer
	Floor    Floor
	// Deferrals (nil: not counted per subscription) hears every deferral
	// with its reason.
	Deferrals Deferrals
	// Tracing (nil: off) records each task's wait in its line as a span
	// of the event's trace.
	Tracing *tracing.Tracing
}

// New builds the stage.
func New(d Deps, o Options) *Deliverer {
	if o.Workers <= 0 {
		o.Workers = 64
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.AckWait <= 0 {
		o.AckWait = stream.DefaultAckWait
	}
	if o.MaxRedeliveries <= 0 {
		o.MaxRedeliveries = 5
	}
	if o.Admission == nil {
		// A wiring mistake, never input: the service always gives one
		// (endpoint health); tests give delivertest.AdmitAll.
		panic("deliver: Options.Admission is required")
	}
	if o.Secrets == nil {
		o.Secrets = OpenedSecrets(nil) // keys in clear; sealed ones refused
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.DefaultMaxInFlight <= 0 {
		o.DefaultMaxInFlight = 10
	}
	if o.DefaultMaxInFlightCeiling < o.DefaultMaxInFlight {
		o.DefaultMaxInFlightCeiling = max(o.DefaultMaxInFlight, 64)
	}
	if o.MaxWait <= 0 {
		o.MaxWait = 10 * time.Second
	}
	if o.LineMax <= 0 {
		o.LineMax = stream.DefaultMaxAckPending / 2
	}
	if o.LinesMax <= 0 {
		o.LinesMax = stream.DefaultMaxAckPending * 3 / 4
	}
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = 15 * time.Second
	}
	if o.PollEvery <= 0 {
		o.PollEvery = 20 * time.Millisecond
	}
	if o.PollMax <= 0 {
		o.PollMax = time.Second
	}
	o.PollMax = max(o.PollMax, o.PollEvery)
	if len(o.Environment.RetrySchedule) == 0 {
		o.Environment.RetrySchedule = o.Policy.Schedule
	}
	if o.Environment.AttemptTimeout <= 0 {
		o.Environment.AttemptTimeout = o.HTTPTimeout
	}
	if d.Ordering != nil && d.Floor == nil {
		d.Floor = fannedOut{}
	}
	if o.DirectMax == 0 {
		o.DirectMax = 64
	}
	var direct, directSending chan struct{}
	if o.DirectMax > 0 {
		if o.DirectAttempts <= 0 {
			o.DirectAttempts = o.DirectMax
		}
		direct = make(chan struct{}, o.DirectMax)
		directSending = make(chan struct{}, min(o.DirectAttempts, o.DirectMax))
	}
	if o.DirectTenantShare <= 0 || o.DirectTenantShare > 1 {
		o.DirectTenantShare = 0.75
	}
	keys := newKeyLines()
	tenants := &directTenants{max: max(1, int(float64(o.DirectMax)*o.DirectTenantShare)),
		held: map[string]*tenantTokens{}, changed: make(chan struct{}), now: time.Now}
	return &Deliverer{
		direct: direct, directSending: directSending, directTenants: tenants,
		js: d.JS, subs: d.Lookup, send: d.Sender, sched: d.Scheduler, dead: d.DeadLetters, rec: d.Recorder, tens: d.Tenants, deferrals: d.Deferrals, tracing: d.Tracing,
		log: d.Log.Named("deliver"), m: d.Metrics, o: o,
		ord: d.Ordering, floor: d.Floor, keys: keys,
		lineSlots: make(chan struct{}, o.Workers),
		lines: newLines(lineConfig{
			MaxWait: o.MaxWait, PerLineMax: o.LineMax, TotalMax: o.LinesMax,
			MinPerCap: 4, Unmeasured: o.HTTPTimeout,
			DefaultLimit: o.DefaultMaxInFlight, DefaultCeiling: o.DefaultMaxInFlightCeiling,
			PollEvery: o.PollEvery, PollMax: o.PollMax,
			// Key lines count toward every line's bound: together they
			// and the queue fit in the consumer's MaxAckPending.
			Others: keys.Len,
		}),
	}
}

// DefaultBuffer is Options.Buffer's default; BufferBytes bounds the
// payloads of the tasks that wait in the deliver stage's buffer (the last
// one let in may pass it).
const (
	DefaultBuffer = 2048
	BufferBytes   = 32 << 20
)

// prefetch is how many tasks the consumer hands the stage ahead of its
// queue: as many rounds of its workers as fit in AckWait while every
// worker holds an attempt that runs to the longest timeout, at least one
// (120 by default: two rounds of the 60 workers one tenant may hold, of
// at most 25 s each, in 60 s).
// Nobody tells a task there that it is in progress: while the queue is
// full it waits for that many tasks to be taken, and one that waited past
// AckWait would be delivered again, one more delivery counted against
// MaxRedeliveries. A larger prefetch fetches a burst faster (the tasks a
// flood's deferrals bring due in the same second): in make bench, another
// tenant's task behind such bursts waited less at 625, but a hang of
// every worker's endpoint would then keep the last of them some 4
// minutes.
func (o Options) prefetch() int {
	rounds := 1
	if o.MaxAttemptTimeout > 0 {
		rounds = max(1, int(o.AckWait/o.MaxAttemptTimeout))
	}
	// Rounds of the workers one tenant may hold: a flood's backlog,
	// alone in the queue, is served by those.
	return rounds * pool.DefaultPerKey(o.Workers)
}

// handBack settles a task still waiting in the stage's queue when it
// stops as the tasks waiting in line are (deferWaiting): deferred by a
// second, a new message delivered once so far. Handed back with a nak,
// it would count one more delivery against MaxRedeliveries each time a
// replica stopped with it queued (a rolling deploy during a backlog),
// and be dead-lettered unattempted after a few.
//
// A deferral is a round trip; a nak is not. So the stop hands back with
// a nak, as before, every task after the first deferral that fails,
// those after handBackWithin, while the connection is not up, a task
// that cannot be read and one already delivered MaxRedeliveries times
// (the next replica dead-letters it): a server that does not answer
// costs one round of deferrals, not one timeout per task.
func (d *Deliverer) handBack(ctx context.Context) func(jetstream.Msg) error {
	var (
		failed   atomic.Bool
		once     sync.Once
		deadline time.Time
	)
	return func(msg jetstream.Msg) error {
		once.Do(func() { deadline = time.Now().Add(handBackWithin) })
		nak := func() error { return msg.NakWithDelay(pool.ReleaseDelay) }
		meta, err := msg.Metadata()
		if err != nil || failed.Load() || !time.Now().Before(deadline) || d.js.Conn().Status() != nats.CONNECTED ||
			meta.NumDelivered > uint64(d.o.MaxRedeliveries) {
			return nak()
		}
		t, err := task.Parse(msg.Subject(), msg.Headers(), msg.Data())
		if err != nil {
			return nak()
		}
		v := verdict{decision: settle.Later(time.Second), refused: "shutdown"}
		sctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		if err := d.sched.Schedule(sctx, scheduledCopy(&t, meta.Sequence.Stream, v)); err != nil {
			failed.Store(true)
			d.m.ScheduleFailures.Inc()
			return errors.Join(fmt.Errorf("defer queued task at stop: %w", err), nak())
		}
		d.report(&t, v)
		return msg.DoubleAck(sctx)
	}
}

// handBackWithin bounds the deferrals of the tasks queued at a stop
// (handBack): the shutdown's time is for the attempts in hand.
const handBackWithin = 5 * time.Second

// taskTenant is the tenant a task's subject names, the key the deliver
// stage serves tasks by (the subject itself when it names none: a
// malformed task is dead-lettered at once).
func taskTenant(msg jetstream.Msg) string {
	if tenant := task.SubjectTenant(msg.Subject()); tenant != "" {
		return tenant
	}
	return msg.Subject()
}

// Run consumes DELIVERIES with the durable deliver consumer until ctx
// ends, then finishes the attempts in hand and defers the tasks still
// waiting in line (another replica, or this one restarted, takes them).
func (d *Deliverer) Run(ctx context.Context) error {
	cons, err := d.js.Consumer(ctx, stream.Deliveries, stream.DeliverConsumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("deliver consumer: %w", err)
	}
	// Tasks are fetched ahead of the workers and served a tenant at a
	// time, in turn (pool.RunFair, as dispatch serves events): another
	// tenant's task, a retry come due, fetched behind a backlog of one
	// tenant's tasks (its flood's deferred tasks coming due together, each
	// holding a worker while its next deferral is stored) waits for a
	// worker, not for the backlog. The queue (Options.Buffer) tells its
	// tasks they are in progress every third of AckWait; the consumer's
	// prefetch ahead of it is as large as is safe (prefetch).
	prefetch := d.o.prefetch()
	pullBytes, queueBytes := pool.SplitBytes(BufferBytes, d.js.Conn().MaxPayload())
	it, err := pool.Messages(ctx, cons, prefetch, pool.Watch{Stage: "deliver", Restarts: d.m.PullRestarts, Log: d.log, MaxBytes: pullBytes})
	if err != nil {
		return fmt.Errorf("deliver messages: %w", err)
	}
	hctx := context.WithoutCancel(ctx)
	// From the stop on, no task leaves a line: the attempts in hand finish
	// while the lines are deferred, at once and in parallel with them.
	deferred := make(chan struct{})
	stopLines := context.AfterFunc(ctx, func() {
		d.stopping.Store(true)
		d.deferWaiting(hctx)
		close(deferred)
	})
	stopTicks := d.pollLines(hctx)
	fair := pool.Fair{Workers: d.o.Workers, Prefetch: prefetch, Buffer: d.o.Buffer,
		BufferBytes: queueBytes, Key: taskTenant, KeepAlive: d.o.AckWait / 3, Release: d.handBack(hctx)}
	runErr := pool.RunFair(ctx, it, fair, d.Handle, d.log)
	d.stopping.Store(true)
	stopTicks()
	d.chains.Wait()
	if stopLines() {
		// The iterator closed by itself (ctx still live): nobody deferred
		// the lines yet.
		close(deferred)
	} else {
		<-deferred
	}
	// A task that joined a line while the stop was being decided.
	d.deferWaiting(hctx)
	if runErr != nil {
		return fmt.Errorf("deliver: %w", runErr)
	}
	return nil
}

// verdict is what became of a task before settling it.
type verdict struct {
	decision  settle.Decision
	attempted bool
	started   time.Time
	result    sender.Result
	// detail explains a decision made without an attempt (a malformed
	// header, a lookup error).
	detail string
	// refused is the admission refusal behind a Defer ("" otherwise).
	refused string
}

// job is a task in hand: its message, parsed, kept alive until settled.
type job struct {
	msg jetstream.Msg
	seq uint64
	t   task.Task
	// stop ends the InProgress keep-alive.
	stop func()
	// parkedAt is when the task joined its subscription's line (or its
	// key's).
	parkedAt time.Time
	// head: the task is its ordering key's head (ordering.Head), so it
	// skips the key's line from now on.
	head bool
	// wake is set for a first attempt from dispatch waiting in line (no
	// message: its task is not stored): the slot handed to it, or nil when
	// it leaves the line without one (dispatch then stores its task).
	wake chan Slot
}

// Handle takes one task: it is attempted at once, waits in its
// subscription's line (and is attempted later by whichever goroutine frees
// a slot), or is settled without an attempt.
func (d *Deliverer) Handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream message: there is nothing to ack or term.
		d.log.Error("task without JetStream metadata ignored", zap.String("subject", msg.Subject()), zap.Error(err))
		return
	}
	j := &job{msg: msg, seq: meta.Sequence.Stream, stop: pool.KeepAlive(msg, d.o.AckWait/3)}
	j.t, err = task.Parse(msg.Subject(), msg.Headers(), msg.Data())
	switch {
	case err != nil:
		d.finish(ctx, j, verdict{decision: settle.Dead(wire.DeadLetterMalformedTask), detail: err.Error()})
	case meta.NumDelivered > uint64(d.o.MaxRedeliveries):
		d.finish(ctx, j, verdict{decision: settle.Dead(wire.DeadLetterRedeliveryExhausted),
			detail: fmt.Sprintf("delivered %d times by JetStream without being settled (crash, lost ack or nak)", meta.NumDelivered)})
	default:
		d.start(ctx, j)
	}
}

// finish reports and settles a task and ends its keep-alive. A direct
// attempt waiting in line is told to store its task instead.
func (d *Deliverer) finish(ctx context.Context, j *job, v verdict) {
	if j.wake != nil {
		j.wake <- nil
		return
	}
	d.report(&j.t, v)
	d.settle(ctx, j, v)
	j.stop()
	if j.head {
		d.headEnded(ctx, j, v.decision.Kind == settle.Ack || v.decision.Kind == settle.DeadLetter)
	}
}

// target is a task's subscription, ready to attempt, with its effective
// delivery policy: sub carries the effective in-flight cap, rate limit and
// auto-disable window (what admission and endpoint health read), retry
// and timeout the rest.
type target struct {
	sub     *hooklinev1.Subscription
	secrets []string
	retry   settle.Policy
	timeout time.Duration
}

// prepare looks the task's subscription up and opens its secrets; ok is
// false when the task is settled without an attempt (v says how).
func (d *Deliverer) prepare(ctx context.Context, t *task.Task) (target, verdict, bool) {
	lctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	sub, err := d.subs.Get(lctx, t.Tenant, t.SubscriptionID, t.RegistryRev)
	cancel()
	switch {
	case errors.Is(err, subscription.ErrNotFound):
		return target{}, verdict{decision: settle.Dead(wire.DeadLetterSubscriptionDeleted)}, false
	case err != nil:
		return target{}, verdict{decision: settle.Later(d.o.RetryDelay), detail: "look up subscription: " + err.Error()}, false
	case sub.GetDisabled():
		return target{}, verdict{decision: settle.Dead(wire.DeadLetterSubscriptionDisabled)}, false
	}
	return d.ready(ctx, t, sub)
}

// ready resolves sub's effective delivery policy and opens its secrets
// for an attempt of t; ok is false when the task is settled without an
// attempt (v says how).
func (d *Deliverer) ready(ctx context.Context, t *task.Task, sub *hooklinev1.Subscription) (target, verdict, bool) {
	var (
		ten *hooklinev1.Tenant
		err error
	)
	if d.tens != nil {
		lctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
		ten, err = d.tens.Get(lctx, t.Tenant)
		cancel()
		if err != nil {
			return target{}, verdict{decision: settle.Later(d.o.RetryDelay), detail: "look up tenant: " + err.Error()}, false
		}
	}
	tg := d.effective(ten, sub)
	// Open the secrets before admission: a subscription that cannot be
	// signed for is dead-lettered without taking an admitted slot.
	tg.secrets, tg.sub, err = d.o.open(tg.sub) // secrets, and the URL's sealed credentials (urlcreds.go)
	if err != nil {
		return target{}, verdict{decision: settle.Dead(wire.DeadLetterPermanentFailure), detail: "sign: " + err.Error()}, false
	}
	return tg, verdict{}, true
}

// effective resolves a subscription's delivery policy (subscription >
// tenant > environment). The record is copied only when the tenant's
// defaults change what admission or endpoint health read from it.
func (d *Deliverer) effective(ten *hooklinev1.Tenant, sub *hooklinev1.Subscription) target {
	eff := policy.Resolve(d.o.Environment, ten, sub)
	tg := target{sub: sub, retry: d.o.Policy, timeout: eff.AttemptTimeout.Value}
	tg.retry.Schedule = eff.RetrySchedule.Value
	if d.o.MaxAttemptTimeout > 0 {
		tg.timeout = min(tg.timeout, d.o.MaxAttemptTimeout)
	}
	if eff.MaxInFlight.Source == policy.SourceTenant || eff.RateLimit.Source == policy.SourceTenant || eff.AutoDisableAfter.Source == policy.SourceTenant {
		tg.sub = policy.Apply(eff, sub)
	}
	return tg
}

// start asks admission for a new task, unless its subscription already
// has a line: then it joins the line's end (arrival order). A task of an
// ordered subscription first waits until it is its key's head.
func (d *Deliverer) start(ctx context.Context, j *job) {
	tg, v, ok := d.prepare(ctx, &j.t)
	if !ok {
		d.finish(ctx, j, v)
		return
	}
	if d.ordered(j) {
		d.order(ctx, j, tg)
		return
	}
	d.admit(ctx, j, tg)
}

// admit asks admission for a task ready to attempt.
func (d *Deliverer) admit(ctx context.Context, j *job, tg target) {
	id := tg.sub.GetId()
	if d.lines.Waiting(id) {
		// Whoever started the line keeps it moving: no admission asked.
		d.wait(ctx, j, tg, Refusal{Reason: RefusedFull})
		return
	}
	slot, ref, err := d.o.Admission.Admit(ctx, tg.sub, d.limit(tg.sub))
	switch {
	case err != nil:
		d.finish(ctx, j, verdict{decision: settle.Later(d.o.RetryDelay), detail: "admission: " + err.Error()})
	case slot == nil:
		d.m.AdmissionRefused.WithLabelValues(ref.Reason).Inc()
		d.wait(ctx, j, tg, ref)
	default:
		d.attempt(ctx, j, tg, slot)
	}
}

// wait parks a refused task in its subscription's line, when the refusal
// is short and the line has room, and defers it otherwise.
func (d *Deliverer) wait(ctx context.Context, j *job, tg target, ref Refusal) {
	id := tg.sub.GetId()
	if ref.Wait > d.o.MaxWait || d.stopping.Load() {
		d.deferJob(ctx, j, ref.Reason, ref.Wait)
		return
	}
	delay, first, evicted := d.lines.Join(id, j, d.limit(tg.sub), tg.sub.GetRateLimitPerSecond())
	d.deferOverflow(ctx, evicted)
	if delay > 0 {
		d.deferJob(ctx, j, ReasonLineFull, delay)
		return
	}
	d.m.AdmissionParked.Inc()
	switch {
	case !first:
		// The line was there: the attempts ahead hand their slots on, and
		// the poller asks for the head.
	case ref.Wait > 0:
		// A new line whose head's turn comes after the wait.
		d.lines.Hold(id, time.Now().Add(ref.Wait))
	default:
		// A new line: the slot that was full may have been given back
		// since admission said so, with nobody in line to pass it to.
		d.kick(ctx, id)
	}
}

// limit is a subscription's in-flight cap now: its max_in_flight, or the
// adaptive limit of its line (see lines.Observe).
func (d *Deliverer) limit(sub *hooklinev1.Subscription) int {
	return d.lines.Limit(sub.GetId(), sub.GetMaxInFlight())
}

// ReasonLineFull is the deferral reason of a task whose subscription's line
// had no room.
const ReasonLineFull = "line_full"

// deferOverflow defers a task taken out of its line (nil: none): trimmed
// when its endpoint slowed down, or another tenant's task, held beyond its
// share of every line's room, took its place.
func (d *Deliverer) deferOverflow(ctx context.Context, o *overflow) {
	if o != nil {
		d.deferJob(ctx, o.j, ReasonLineFull, o.delay)
	}
}

// deferJob settles a task with a deferral of delay (at least the
// deliverer's retry delay when delay is 0).
func (d *Deliverer) deferJob(ctx context.Context, j *job, reason string, delay time.Duration) {
	if delay <= 0 {
		delay = d.o.RetryDelay
	}
	d.finish(ctx, j, verdict{decision: settle.Later(delay), refused: reason})
}

// attempt signs and sends a task with an admitted slot, hands the slot on
// to the next task in line as soon as the answer is in, then settles.
func (d *Deliverer) attempt(ctx context.Context, j *job, tg target, slot Slot) {
	t := &j.t
	if j.head && !d.stillHead(ctx, j, tg, slot) {
		return
	}
	v, signed := d.post(ctx, ctx, t, tg, slot, t.Attempt+1)
	if !signed {
		d.finish(ctx, j, verdict{decision: settle.Dead(wire.DeadLetterPermanentFailure), detail: v.detail})
		return
	}
	d.finish(ctx, j, v)
}

// post signs and POSTs attempt number n of t with an admitted slot under
// ctx, learns from the answer, hands the slot on (under hctx, which its
// line's next attempt outlives ctx with) and returns the verdict. signed is
// false when t could not be signed: the slot is given back, nothing was
// sent, and v.detail says why.
func (d *Deliverer) post(ctx, hctx context.Context, t *task.Task, tg target, slot Slot, n int) (v verdict, signed bool) {
	id := tg.sub.GetId()
	now := time.Now()
	body := payload(tg.sub, t, now) // raw data or the envelope (payload.go)
	sig, err := signing.Sign(t.EventID, now, body, tg.secrets...)
	if err != nil {
		slot.Return()
		d.gaveBack(hctx, tg.sub)
		return verdict{detail: "sign: " + err.Error()}, false
	}
	started := time.Now()
	req := request(tg.sub, t, now, sig, body)
	req.Timeout = tg.timeout
	d.lines.Begin(id)
	res := d.send.Send(ctx, req)
	d.lines.Observe(id, tg.sub.GetMaxInFlight() == 0, res)
	d.handOn(hctx, tg.sub, slot, res)
	return verdict{decision: tg.retry.Decide(res, n), attempted: true, started: started, result: res}, true
}

// handOn passes a slot whose attempt just ended to the head of the
// subscription's line, which runs on a goroutine of its own, or gives it
// back (waking a line that waits for a slot it frees).
func (d *Deliverer) handOn(ctx context.Context, sub *hooklinev1.Subscription, slot Slot, res sender.Result) {
	id := sub.GetId()
	if d.stopping.Load() || !d.lines.Waiting(id) {
		slot.Release(res)
		d.freed(ctx, sub)
		return
	}
	if !slot.Pass(res) {
		// Given back: the head asks admission again at once.
		d.lines.Nudge(id)
		d.kick(ctx, id)
		return
	}
	if !d.resumeHead(ctx, id, slot) {
		// Every line goroutine is busy: the head asks again at the next
		// tick (a slot that wakes nobody, or each woken line would give
		// it back in turn).
		slot.Return()
		d.lines.Nudge(id)
	}
}

// Scopes of the shared slots a line may wait for, beside its own
// subscription's (in_flight_full: an attempt of the subscription ending
// here nudges its line): its tenant's (its share of this deliverer's
// workers, its cap across replicas) and its destination host's (the cap
// across subscriptions). waitScope is the scope a refusal waits on ("" for
// the subscription's own cap and the timed refusals).
func tenantScope(tenant string) string { return "tenant:" + tenant }

func destinationScope(url string) string {
	if host := Destination(url); host != "" {
		return "dest:" + host
	}
	return ""
}

func waitScope(sub *hooklinev1.Subscription, reason string) string {
	switch reason {
	case RefusedTenant:
		return tenantScope(sub.GetTenant())
	case RefusedDestination:
		return destinationScope(sub.GetUrl())
	}
	return ""
}

// freed wakes, for each shared slot an attempt of sub gave back, the line
// that has waited longest for one (a line of another subscription to the
// same host, or of the same tenant): it asks admission now instead of at
// its next poll.
func (d *Deliverer) freed(ctx context.Context, sub *hooklinev1.Subscription) {
	d.wake(ctx, tenantScope(sub.GetTenant()))
	d.wake(ctx, destinationScope(sub.GetUrl()))
}

// wake polls the line that has waited longest for a slot of scope, if any.
func (d *Deliverer) wake(ctx context.Context, scope string) {
	if scope == "" || d.stopping.Load() {
		return
	}
	if id := d.lines.Wake(scope); id != "" {
		d.m.AdmissionWakes.Inc()
		d.kick(ctx, id)
	}
}

// gaveBack follows a slot of sub given back without an attempt: its own
// line asks again at once, or, when it has none, a line waiting for a
// shared slot it held.
func (d *Deliverer) gaveBack(ctx context.Context, sub *hooklinev1.Subscription) {
	id := sub.GetId()
	if d.lines.Waiting(id) {
		d.lines.Nudge(id)
		d.kick(ctx, id)
		return
	}
	d.freed(ctx, sub)
}

// resumeHead attempts the head of id's line with slot, on a goroutine of
// its own, when a line goroutine is free (at most Workers run at once:
// with many lines, HTTP attempts stay bounded); false when the head was
// not taken (none free, or the line is empty) and the slot is still the
// caller's.
func (d *Deliverer) resumeHead(ctx context.Context, id string, slot Slot) bool {
	select {
	case d.lineSlots <- struct{}{}:
	default:
		return false
	}
	j := d.lines.Pop(id)
	if j == nil {
		<-d.lineSlots
		return false
	}
	if j.wake != nil {
		// A direct attempt waiting in dispatch: it attempts with the slot
		// on its own goroutine.
		<-d.lineSlots
		d.m.AdmissionWait.Observe(time.Since(j.parkedAt).Seconds())
		j.wake <- slot
		return true
	}
	d.chains.Add(1)
	go func() {
		defer d.chains.Done()
		defer func() { <-d.lineSlots }()
		defer d.recoverLine(j, slot)
		d.m.AdmissionWait.Observe(time.Since(j.parkedAt).Seconds())
		d.tracing.Interval(ctx, j.t.Header, "admission wait", j.parkedAt, time.Now(),
			tracing.AttrSubscriptionID.String(id), tracing.AttrEventID.String(j.t.EventID))
		// Looked up again: the subscription may have changed while the
		// task waited (a new URL, a disable).
		start := time.Now()
		tg, v, ok := d.prepare(ctx, &j.t)
		if !ok {
			slot.Return()
			d.lines.Nudge(id)
			d.kick(ctx, id)
			d.wake(ctx, tenantScope(j.t.Tenant))
			d.finish(ctx, j, v)
			return
		}
		if time.Since(start) > time.Second {
			// A slow lookup aged the slot past what its lease covers:
			// admission is asked again (the task rejoins the line).
			slot.Return()
			d.start(ctx, j)
			return
		}
		d.attempt(ctx, j, tg, slot)
	}()
	return true
}

// recoverLine keeps a panic on a line goroutine from taking the process
// (and every task in hand) down: it is logged with its stack, the slot is
// given back and the task nak'ed for a later redelivery, as the worker
// pool does.
func (d *Deliverer) recoverLine(j *job, slot Slot) {
	r := recover()
	if r == nil {
		return
	}
	d.log.Error("line task panicked; task nak'ed", zap.String("subject", j.msg.Subject()), zap.Any("panic", r), zap.Stack("stack"))
	slot.Return()
	if j.head {
		d.keys.HeadEnded(j.orderingKey(), false, time.Now())
	}
	j.stop()
	_ = j.msg.NakWithDelay(pool.PanicNakDelay)
}

// kick asks admission for the head of id's line now, on a goroutine of
// its own, unless one already does.
func (d *Deliverer) kick(ctx context.Context, id string) {
	if d.stopping.Load() || !d.lines.Claim(id) {
		return
	}
	d.chains.Add(1)
	go func() {
		defer d.chains.Done()
		defer func() {
			if r := recover(); r != nil {
				d.lines.Unclaim(id, time.Now().Add(d.o.RetryDelay))
				d.log.Error("line poll panicked", zap.Any("panic", r), zap.Stack("stack"))
			}
		}()
		d.poll(ctx, id)
	}()
}

// poll asks admission for the heads of a claimed line until it is refused
// or the line is empty, and starts each admitted head.
func (d *Deliverer) poll(ctx context.Context, id string) {
	for {
		head := d.lines.Head(id)
		if head == nil || d.stopping.Load() {
			d.wake(ctx, d.lines.Unclaim(id, time.Time{}))
			return
		}
		tg, v, ok := d.prepare(ctx, &head.t)
		if !ok {
			if d.lines.Remove(id, head) {
				d.finish(ctx, head, v)
				continue
			}
			d.wake(ctx, d.lines.Unclaim(id, time.Time{}))
			return
		}
		d.m.AdmissionLinePolls.Inc()
		slot, ref, err := d.o.Admission.Admit(ctx, tg.sub, d.limit(tg.sub))
		if slot == nil && err == nil {
			d.m.AdmissionRefused.WithLabelValues(ref.Reason).Inc()
		}
		switch {
		case err != nil:
			d.wake(ctx, d.lines.Unclaim(id, time.Now().Add(d.o.PollEvery)))
			return
		case slot == nil && ref.Wait > d.o.MaxWait:
			// A long wait (an open circuit): the whole line is deferred
			// rather than held for it.
			jobs := d.lines.Empty(id)
			d.wake(ctx, d.lines.Unclaim(id, time.Time{}))
			for _, j := range jobs {
				d.deferJob(ctx, j, ref.Reason, ref.Wait)
			}
			return
		case slot == nil:
			if time.Since(head.parkedAt) > d.o.MaxWait {
				// The endpoint slowed down since these tasks joined:
				// keep what it serves within MaxWait, defer the rest.
				for _, o := range d.lines.Trim(id, d.limit(tg.sub), tg.sub.GetRateLimitPerSecond()) {
					d.deferOverflow(ctx, &o)
				}
			}
			if ref.Wait > 0 {
				// A rate limit, a probe in flight: admission said when.
				d.wake(ctx, d.lines.Unclaim(id, time.Now().Add(ref.Wait)))
				return
			}
			// For want of a slot: backed off until one freed here wakes
			// the line, or its next poll.
			again, pass := d.lines.Refused(id, waitScope(tg.sub, ref.Reason))
			d.wake(ctx, pass)
			if again {
				continue
			}
			return
		}
		d.lines.Admitted(id)
		if !d.resumeHead(ctx, id, slot) {
			slot.Return()
			d.lines.Unclaim(id, time.Now().Add(d.o.PollEvery))
			return
		}
	}
}

// pollLines asks admission, every PollEvery, for the heads of the lines
// that are due: whose backoff after a refusal for want of a slot has run
// out (slots freed by other replicas), or whose rate limit or probe said
// when. It returns a stop that ends the ticker and waits for it.
func (d *Deliverer) pollLines(hctx context.Context) (stop func()) {
	tctx, cancel := context.WithCancel(hctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(d.o.PollEvery)
		defer tick.Stop()
		for {
			select {
			case <-tctx.Done():
				return
			case <-tick.C:
				d.m.AdmissionParkedNow.Set(float64(d.lines.Len()))
				for _, id := range d.lines.Due() {
					d.kick(hctx, id)
				}
				d.pollKeys(hctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// deferWaiting defers every task still in line (at shutdown), 16 at a
// time: another replica takes them after a second, and a deferral starts a
// new message, so a restart never spends a task's redeliveries.
func (d *Deliverer) deferWaiting(ctx context.Context) {
	jobs := append(d.lines.EmptyAll(), d.keys.EmptyAll()...)
	if len(jobs) == 0 {
		return
	}
	pool.EachAtOnce(jobs, 16, func(j *job) { d.deferJob(ctx, j, "shutdown", time.Second) })
	d.log.Info("tasks waiting in line deferred at shutdown", zap.Int("tasks", len(jobs)))
	d.m.AdmissionParkedNow.Set(0)
	d.m.OrderingWaiting.Set(0)
}

// report records, logs and counts what happened.
func (d *Deliverer) report(t *task.Task, v verdict) {
	outcome := v.decision.Kind.Outcome()
	if !v.attempted {
		// Dead letters are logged when published (settle).
		if v.decision.Kind == settle.Defer {
			d.m.TasksDeferred.Inc()
			if v.refused != "" {
				d.m.AdmissionDeferred.WithLabelValues(v.refused).Inc()
			}
			if d.deferrals != nil {
				d.deferrals.Deferred(t.SubscriptionID, cmp.Or(v.refused, "error"))
			}
			if v.detail != "" {
				d.log.Warn("task deferred", zap.String("event_id", t.EventID), zap.String("subscription_id", t.SubscriptionID),
					zap.Duration("delay", v.decision.Delay), zap.String("error", v.detail))
			}
		}
		return
	}
	r := v.result
	d.m.Attempts.WithLabelValues(outcome).Inc()
	d.m.AttemptDuration.WithLabelValues(outcome).Observe(r.Duration.Seconds())
	if r.ErrorClass != "" {
		d.m.AttemptErrors.WithLabelValues(r.ErrorClass).Inc()
	}
	errText := settle.ErrorText(r)
	a := &hooklinev1.Attempt{
		EventId:         t.EventID,
		Tenant:          t.Tenant,
		EventType:       t.EventType,
		SubscriptionId:  t.SubscriptionID,
		Attempt:         uint32(t.Attempt + 1),
		StartedAt:       timestamppb.New(v.started),
		DurationSeconds: r.Duration.Seconds(),
		Status:          int32(r.Status),
		Outcome:         outcome,
		ErrorClass:      r.ErrorClass,
		Error:           errText,
		ResponseExcerpt: r.Excerpt,
		Replay:          t.Replay != "",
	}
	if sr, ok := d.rec.(StoredRecorder); ok {
		sr.RecordStored(a, t.AcceptedAt())
	} else {
		d.rec.Record(a)
	}
	// A success is logged at debug: the ATTEMPTS record already says it,
	// and at thousands a second the line cost 6% of the deliverer's CPU.
	// Every other outcome is logged at info.
	lvl := zap.InfoLevel
	if v.decision.Kind == settle.Ack {
		lvl = zap.DebugLevel
	}
	ce := d.log.Check(lvl, "attempt")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("event_id", t.EventID),
		zap.String("event_type", t.EventType),
		zap.String("subscription_id", t.SubscriptionID),
		zap.Int("attempt", t.Attempt+1),
		zap.Int("status", r.Status),
		zap.Float64("duration_s", r.Duration.Seconds()),
		zap.String("outcome", outcome),
	}
	if r.ErrorClass != "" {
		fields = append(fields, zap.String("error_class", r.ErrorClass), zap.String("error", errText))
	}
	if v.decision.Kind == settle.Retry {
		fields = append(fields, zap.Duration("retry_in", v.decision.Delay))
	}
	if id := tracing.TraceIDOf(t.Header); id != "" {
		fields = append(fields, zap.String("trace_id", id))
	}
	ce.Write(fields...)
}

// settle carries the decision out. Each way ends the message exactly once:
// Ack; schedule then Ack (NakWithDelay when the schedule cannot be
// published); dead letter then Term (NakWithDelay when the dead letter
// cannot be published — the redelivery does it again, deduplicated).
//
// Acks wait for the server's confirmation (DoubleAck): a plain ack the
// server had received but not yet applied when it crashed is lost, and the
// task is delivered again. Measured on a kill -9 of nats-server with 20k
// tasks: 2,344 redelivered with Ack, 33 with DoubleAck.
//
// A task of an ordering key leaves its key's line (finishOrdered) before
// its Ack or Term, never after: acked but still in line, it would hold its
// key forever.
func (d *Deliverer) settle(ctx context.Context, j *job, v verdict) {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	msg, t, seq := j.msg, &j.t, j.seq
	ids := func(more ...zap.Field) []zap.Field {
		return append([]zap.Field{zap.String("event_id", t.EventID), zap.String("subscription_id", t.SubscriptionID)}, more...)
	}
	switch v.decision.Kind {
	case settle.Ack:
		if err := d.finishOrdered(ctx, j); err != nil {
			d.log.Warn("ordered task delivered but its key's line not moved on; task nak'ed (its head is sent again)", ids(zap.Error(err))...)
			d.nak(msg, d.o.RetryDelay)
			return
		}
		if err := msg.DoubleAck(ctx); err != nil {
			d.log.Warn("ack task", ids(zap.Error(err))...)
		}
	case settle.Retry, settle.Defer:
		// Before the schedule: a crash after the ack must not leave the
		// followers believing the head is about to go.
		d.holdOrdered(ctx, j, v.decision.Delay)
		if err := d.sched.Schedule(ctx, scheduledCopy(t, seq, v)); err != nil {
			d.m.ScheduleFailures.Inc()
			d.log.Warn("retry not scheduled; task nak'ed with the delay instead", ids(zap.Error(err))...)
			d.nak(msg, max(v.decision.Delay, time.Second))
			return
		}
		if err := msg.DoubleAck(ctx); err != nil {
			d.log.Warn("ack task", ids(zap.Error(err))...)
		}
	case settle.DeadLetter:
		l := letter(t, seq, v)
		dup, err := d.dead.Publish(ctx, l)
		if err != nil {
			d.log.Warn("dead letter not published; task nak'ed", ids(zap.String("reason", l.Reason), zap.Error(err))...)
			d.nak(msg, d.o.RetryDelay)
			return
		}
		if !dup {
			d.m.DeadLetters.WithLabelValues(l.Reason).Inc()
			d.log.Warn("dead-lettered", ids(zap.String("event_type", t.EventType), zap.String("reason", l.Reason),
				zap.Int("attempts", l.Attempts), zap.Int("status", l.LastStatus), zap.String("error", l.LastError))...)
		}
		if err := d.finishOrdered(ctx, j); err != nil {
			d.log.Warn("ordered task dead-lettered but its key's line not moved on; task nak'ed", ids(zap.Error(err))...)
			d.nak(msg, d.o.RetryDelay)
			return
		}
		if err := msg.TermWithReason(l.Reason); err != nil {
			d.log.Warn("term task", ids(zap.Error(err))...)
		}
	}
}

// scheduledCopy is the copy of task t (stored at seq) that a retry or a
// deferral v schedules.
func scheduledCopy(t *task.Task, seq uint64, v verdict) settle.Copy {
	return settle.Copy{
		Header: nextHeader(t, v), Body: t.Body, Tenant: t.Tenant, SubscriptionID: t.SubscriptionID,
		Seq: seq, Delay: v.decision.Delay,
	}
}

func (d *Deliverer) nak(msg jetstream.Msg, delay time.Duration) {
	if err := msg.NakWithDelay(delay); err != nil {
		d.log.Warn("nak task", zap.String("subject", msg.Subject()), zap.Error(err))
	}
}

// nextHeader is the header of the copy that retries (attempt counted) or
// defers (unchanged) the task.
func nextHeader(t *task.Task, v verdict) nats.Header {
	h := task.CopyHeader(t.Header)
	if t.OrderingSeq > 0 {
		task.Set(h, stream.HeaderOrderingSeq, strconv.FormatUint(t.OrderingSeq, 10))
	}
	if !v.attempted {
		return h
	}
	task.Set(h, stream.HeaderAttempt, strconv.Itoa(t.Attempt+1))
	if t.FirstAttemptAt.IsZero() {
		task.Set(h, stream.HeaderFirstAttemptAt, task.FormatTime(v.started))
	}
	task.Set(h, stream.HeaderLastAttemptAt, task.FormatTime(v.started))
	task.Set(h, stream.HeaderLastStatus, strconv.Itoa(v.result.Status))
	if e := settle.ErrorText(v.result); e != "" {
		task.Set(h, stream.HeaderLastError, e)
	} else {
		delete(h, stream.HeaderLastError)
	}
	return h
}

// letter is the dead letter of a task.
func letter(t *task.Task, seq uint64, v verdict) deadletter.Letter {
	h := t.Header
	if t.OrderingSeq > 0 {
		// Its replay is sent under the number it had (Build copies every
		// Hookline-* header).
		h = task.CopyHeader(t.Header)
		task.Set(h, stream.HeaderOrderingSeq, strconv.FormatUint(t.OrderingSeq, 10))
	}
	l := deadletter.Letter{Header: h, Body: t.Body, DeadLetter: wire.DeadLetter{
		EventID: t.EventID, Tenant: t.Tenant, EventType: t.EventType, OccurredAt: t.OccurredAt,
		SubscriptionID: t.SubscriptionID, Replay: t.Replay,
		Reason:          v.decision.Reason,
		Attempts:        t.Attempt,
		LastStatus:      t.LastStatus,
		LastError:       t.LastError,
		FirstAttemptAt:  t.FirstAttemptAt,
		LastAttemptAt:   t.LastAttemptAt,
		OriginalSubject: t.Subject,
	}}
	if v.attempted {
		l.Attempts = t.Attempt + 1
		l.LastStatus = v.result.Status
		l.LastError = settle.ErrorText(v.result)
		if l.FirstAttemptAt.IsZero() {
			l.FirstAttemptAt = v.started
		}
		l.LastAttemptAt = v.started
	}
	if v.detail != "" {
		l.LastError = settle.OneLine(v.detail)
	}
	// A malformed task still gets a dead letter with a unique dedup id and
	// a valid subject.
	if l.EventID == "" {
		l.EventID = "unknown_seq_" + strconv.FormatUint(seq, 10)
	}
	// Header values may hold anything: only a plain token goes into the
	// dead letter's subject (no '.', '*' or '>' to file it elsewhere).
	if subscription.ValidateTenant(l.Tenant) != nil {
		l.Tenant = "unknown"
	}
	if subscription.ValidateID(l.SubscriptionID) != nil {
		l.SubscriptionID = "unknown"
	}
	return l
}
