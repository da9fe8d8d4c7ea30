// Package dispatch is the fan-out stage: it consumes EVENTS and publishes
// one delivery task per matching subscription to DELIVERIES, idempotently:
// tasks carry the dedup id <event>:<subscription>, and the event is
// acknowledged only after every task's publish is. Any failure naks the
// event and the whole fan-out is redone; the dedup swallows the tasks that
// made it the first time.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/jsoncheck"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/ordering"
	"github.com/hookline/hookline/services/deliverer/internal/pool"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Matcher finds the enabled subscriptions of a tenant whose filters match
// an event type (subcache.Memo), from a view that holds every registry
// change acknowledged before since (when this process received the
// event; zero: now); rev is the registry revision that view is current at.
type Matcher interface {
	ForEventSince(ctx context.Context, since time.Time, tenant, eventType string) (subs []*hooklinev1.Subscription, rev uint64, err error)
}

// DeadLetters publishes dead letters (deadletter.Publisher).
type DeadLetters interface {
	Publish(ctx context.Context, l deadletter.Letter) (duplicate bool, err error)
}

// Orderer registers the tasks of ordered subscriptions in their key's
// line before they are published (ordering.Store).
type Orderer interface {
	Register(ctx context.Context, entries []ordering.Entry) error
	Unregister(ctx context.Context, entries []ordering.Entry) error
}

// Direct makes the first attempt of a delivery before its task is stored,
// when its endpoint is known to be fast and admission says yes now
// (deliver.Deliverer.Direct); true when the delivery is settled and no
// task is needed.
type Direct interface {
	Direct(ctx context.Context, m *nats.Msg, sub *hooklinev1.Subscription) bool
}

var (
	_ DeadLetters = (*deadletter.Publisher)(nil)
	_ Orderer     = (*ordering.Store)(nil)
)

// Options tune the stage.
type Options struct {
	// Workers handle events in parallel (default 128). Each waits for its
	// tasks' publish acks, or its first attempts (Direct), so the count
	// bounds the fan-out rate of 1×1 traffic: 8 held `make bench` 1×1 to
	// about 1,700 deliveries/s.
	Workers int
	// Timeout bounds the handling of one event: lookup, publishes and
	// their acks (default 10s).
	Timeout time.Duration
	// NakDelay is how soon a failed fan-out is redone (default 1s).
	NakDelay time.Duration
	// Orderer keeps the key lines of ordered subscriptions (nil: the
	// ordering key is ignored and every task is delivered unordered).
	Orderer Orderer
	// GroupCommit stores the tasks of events handled together in atomic
	// batches (pkg/groupcommit), run by Run: one fsync per batch under
	// sync_interval: always. nil: each task is published on its own.
	GroupCommit *groupcommit.Config
	// Tracing makes each fan-out a span that continues the event's trace
	// and is carried by its tasks (nil: off).
	Tracing *tracing.Tracing
	// Direct makes first attempts from dispatch (nil: every delivery is
	// stored as a task). Ordered deliveries always go through a task.
	Direct Direct
	// AckWait of the dispatch consumer (default stream.DefaultAckWait):
	// an event whose first attempts run, or that waits in the buffer, is
	// told it is in progress every third of it.
	AckWait time.Duration
	// Buffer is how many events may wait for a worker, fetched ahead of
	// the workers and served a tenant at a time, in turn (pool.RunFair;
	// default 3/4 of stream.DefaultMaxAckPending less twice Workers, see
	// config.DispatchBufferSize), and BufferBytes how
	// many bytes they may hold (default 64 MiB).
	Buffer      int
	BufferBytes int64
	// TenantFanouts is how many of one tenant's events are handled at
	// once beside those whose first attempts hold direct tokens, while
	// another tenant shares dispatch (pool.Fair.PerKeyBusy; 0: no bound
	// but pool.DefaultPerKey).
	TenantFanouts int
}

// Dispatcher is the fan-out stage.
type Dispatcher struct {
	js    jetstream.JetStream
	match Matcher
	dead  DeadLetters
	log   *zap.Logger
	m     *metrics.Metrics
	o     Options
	tasks *groupcommit.Publisher // nil: publish one by one
}

// Deps is what the stage works with (the deliver stage's convention:
// collaborators in Deps, tuning in Options).
type Deps struct {
	// JS should have an async publish timeout so that every future
	// resolves.
	JS          jetstream.JetStream
	Matcher     Matcher
	DeadLetters DeadLetters
	Log         *zap.Logger
	Metrics     *metrics.Metrics
}

// New builds the stage.
func New(d Deps, o Options) *Dispatcher {
	if o.Workers <= 0 {
		o.Workers = 128
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.NakDelay <= 0 {
		o.NakDelay = time.Second
	}
	if o.AckWait <= 0 {
		o.AckWait = stream.DefaultAckWait
	}
	if o.Buffer <= 0 {
		o.Buffer = max(1, stream.DefaultMaxAckPending*3/4-2*o.Workers)
	}
	if o.BufferBytes <= 0 {
		o.BufferBytes = DefaultBufferBytes
	}
	ds := &Dispatcher{js: d.JS, match: d.Matcher, dead: d.DeadLetters, log: d.Log.Named("dispatch"), m: d.Metrics, o: o}
	if o.GroupCommit != nil {
		ds.tasks = groupcommit.New(d.JS, *o.GroupCommit)
	}
	return ds
}

// Run consumes EVENTS with the durable dispatch consumer until ctx ends,
// then finishes the events in hand.
func (d *Dispatcher) Run(ctx context.Context) error {
	cons, err := d.js.Consumer(ctx, stream.Events, stream.DispatchConsumer)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return fmt.Errorf("dispatch consumer: %w", err)
	}
	// Events are fetched as fast as the consumer hands them out, up to
	// the buffer, and served a tenant at a time: a tenant's flood waits
	// behind the buffer's other tenants, not they behind it (see
	// pool.RunFair). Part of the buffer (1,024 events by default) is the
	// iterator's, so that the flood ahead of another tenant's event in
	// EVENTS reaches the buffer in a few pulls, not one per worker's worth
	// (see pool.SplitBuffer).
	prefetch, queue := pool.SplitBuffer(d.o.Workers, d.o.Buffer)
	pullBytes, queueBytes := pool.SplitBytes(d.o.BufferBytes, d.js.Conn().MaxPayload())
	watch := pool.Watch{Stage: "dispatch", Log: d.log, MaxBytes: pullBytes}
	if d.m != nil {
		watch.Restarts = d.m.PullRestarts
	}
	it, err := pool.Messages(ctx, cons, prefetch, watch)
	if err != nil {
		return fmt.Errorf("dispatch messages: %w", err)
	}
	if d.tasks != nil {
		// The publisher outlives the workers: it stops after the events
		// in hand are handled, committing what they queued.
		pubCtx, stopPub := context.WithCancel(context.WithoutCancel(ctx))
		pubDone := make(chan struct{})
		go func() { d.tasks.Run(pubCtx); close(pubDone) }()
		defer func() { stopPub(); <-pubDone }()
	}
	fair := pool.Fair{Workers: d.o.Workers, Buffer: queue, BufferBytes: queueBytes, Prefetch: prefetch,
		Key: eventTenant, KeepAlive: d.o.AckWait / 3, PerKeyBusy: d.o.TenantFanouts, WindowFull: pool.AckWindowFull(cons)}
	if d.m != nil {
		fair.Waiting = func(n int) { d.m.DispatchWaiting.Set(float64(n)) }
	}
	if err := pool.RunFair(ctx, it, fair, d.Handle, d.log); err != nil {
		return fmt.Errorf("dispatch: %w", err)
	}
	return nil
}

// DefaultBufferBytes bounds the payloads and headers of the events that
// wait in dispatch's buffer.
const DefaultBufferBytes = 64 << 20

// eventTenant is the queue an event waits in for a dispatch worker: its
// tenant, the second token of events.<tenant>.<type> (anything else waits
// under its whole subject, so it is still handled, as a problem).
func eventTenant(msg jetstream.Msg) string {
	tenant, _, err := stream.ParseEventSubject(msg.Subject())
	if err != nil {
		return msg.Subject()
	}
	return tenant
}

// Event problems (label values of hookline_events_invalid_total).
const (
	problemInvalidJSON = "invalid_json"
	problemNoType      = "no_type"
	problemTooLarge    = "too_large"
	problemInvalidID   = "invalid_id"
	problemInvalidKey  = "invalid_ordering_key"
)

// event is what dispatch reads from an EVENTS message.
type event struct {
	id, tenant, eventType, occurredAt string
	problem, detail                   string
	// orderingKey is the Hookline-Ordering-Key ("" for none); seq the
	// EVENTS sequence, the event's place in publish order.
	orderingKey string
	seq         uint64
	// acceptedAt is when EVENTS stored the event (its stream timestamp,
	// "" when unknown): the start of the end-to-end latency.
	acceptedAt string
	// scoped: the id came as <tenant>:<id> (or from the sequence), so its
	// deduplication is the tenant's own.
	scoped bool
}

// parse never fails: what cannot be read becomes a problem, and an event
// with a problem is dead-lettered for every subscription it matches.
func parse(msg jetstream.Msg) event {
	var ev event
	h := msg.Headers()
	meta, metaErr := msg.Metadata()
	tenant, typ, subjErr := stream.ParseEventSubject(msg.Subject())
	if subjErr != nil {
		parts := strings.SplitN(msg.Subject(), ".", 3)
		if len(parts) >= 2 {
			tenant = parts[1]
		}
	}
	msgID := first(h, stream.HeaderMsgID)
	ev.id, ev.scoped = stream.EventIDFromMsgID(tenant, msgID)
	if ev.id == "" && metaErr == nil {
		// Stable across redeliveries: the same event gets the same id, so
		// its tasks deduplicate and receivers can dedupe on webhook-id.
		ev.id, ev.scoped = stream.SeqEventID(meta.Sequence.Stream, meta.Timestamp), true
	}
	if v := first(h, stream.HeaderOccurredAt); v != "" {
		if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
			ev.occurredAt = v
		}
	}
	if ev.occurredAt == "" && metaErr == nil {
		ev.occurredAt = task.FormatTime(meta.Timestamp)
	}
	if metaErr == nil {
		ev.seq = meta.Sequence.Stream
		ev.acceptedAt = task.FormatTime(meta.Timestamp)
	}
	if k, ok := h[stream.HeaderOrderingKey]; ok {
		ev.orderingKey = first(h, stream.HeaderOrderingKey)
		if err := stream.ValidateOrderingKey(ev.orderingKey); err != nil || len(k) > 1 {
			if err == nil {
				err = errors.New("given more than once")
			}
			// Sent as a header to the receiver: it is never guessed at.
			ev.problem, ev.detail = problemInvalidKey, stream.HeaderOrderingKey+" "+err.Error()
			ev.orderingKey = ""
		}
	}
	if err := stream.ValidateEventID(ev.id); err != nil && metaErr == nil {
		// A webhook-id with control characters, or 9,000 bytes of one, is
		// never sent: the event is dead-lettered under its sequence id.
		ev.problem, ev.detail = problemInvalidID, "Nats-Msg-Id does not name a valid event id: "+err.Error()
		ev.id, ev.scoped = stream.SeqEventID(meta.Sequence.Stream, meta.Timestamp), true
	}
	if subjErr != nil {
		ev.tenant, ev.problem, ev.detail = tenant, problemNoType, "subject has no event type"
		return ev
	}
	ev.tenant, ev.eventType = tenant, typ
	// jsoncheck.Valid answers as json.Valid does, 3-4× faster: json.Valid
	// was a tenth of the deliverer's CPU in make bench.
	if ev.problem == "" && !jsoncheck.Valid(msg.Data()) {
		ev.problem, ev.detail = problemInvalidJSON, "event body is not valid JSON"
	}
	return ev
}

// Handle fans one event out and settles it.
func (d *Dispatcher) Handle(ctx context.Context, msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, d.o.Timeout)
	defer cancel()
	ev := parse(msg)
	ctx, span := d.span(ctx, msg, ev) // trace.go
	defer span.End()
	if ev.id == "" || ev.tenant == "" {
		// Not a message of the dispatch consumer's stream at all.
		d.m.EventsInvalid.WithLabelValues(problemNoType).Inc()
		d.log.Error("event without id or tenant dropped", zap.String("subject", msg.Subject()))
		_ = msg.Term()
		return
	}
	if !ev.scoped {
		d.m.EventsUnscoped.Inc()
	}
	// The event was received when the fair buffer took it (it may have
	// waited there since): a lookup that began since then has seen the
	// registry as the event requires.
	subs, rev, err := d.match.ForEventSince(ctx, pool.Received(ctx), ev.tenant, ev.eventType)
	if err != nil {
		d.retry(ctx, msg, ev, fmt.Errorf("match subscriptions: %w", err))
		return
	}
	matched(span, len(subs))
	if len(subs) == 0 {
		if ev.problem != "" {
			d.m.EventsInvalid.WithLabelValues(ev.problem).Inc()
			d.log.Warn("invalid event matched no subscription", append(ev.fields(),
				zap.String("problem", ev.problem), zap.String("tenant", ev.tenant))...)
		} else {
			d.m.EventsUnmatched.Inc()
		}
		d.ack(ctx, msg, ev)
		return
	}
	direct := false
	if ev.problem != "" {
		d.m.EventsInvalid.WithLabelValues(ev.problem).Inc()
		err = d.deadLetter(ctx, msg, ev, subs)
	} else {
		direct, err = d.fanOut(ctx, msg, ev, subs, rev)
	}
	if errors.Is(err, nats.ErrMaxPayload) {
		// Its tasks will never be published: their places in their keys'
		// lines would hold those keys forever.
		if uerr := d.unregister(ctx, ev, subs); uerr != nil {
			d.retry(ctx, msg, ev, uerr)
			return
		}
		d.tooLarge(ctx, msg, ev, err)
		return
	}
	if err != nil {
		d.retry(ctx, msg, ev, err)
		return
	}
	d.m.EventsDispatched.Inc()
	if direct {
		d.confirm(ctx, msg, ev)
		return
	}
	d.ack(ctx, msg, ev)
}

// fanOut publishes one task per subscription asynchronously and waits for
// every ack; it fails when any publish fails. direct says that some
// delivery was settled from dispatch (Options.Direct), without a task.
func (d *Dispatcher) fanOut(ctx context.Context, msg jetstream.Msg, ev event, subs []*hooklinev1.Subscription, rev uint64) (direct bool, err error) {
	ordered, err := d.register(ctx, ev, subs)
	if err != nil {
		return false, err
	}
	msgs := make([]*nats.Msg, len(subs))
	for i, s := range subs {
		m := &nats.Msg{
			Subject: stream.DeliverySubject(ev.tenant, s.GetId()),
			Header:  task.NewHeader(ev.id, ev.tenant, ev.eventType, ev.occurredAt, s.GetId()),
			Data:    msg.Data(),
		}
		if ev.acceptedAt != "" {
			task.Set(m.Header, stream.HeaderAcceptedAt, ev.acceptedAt)
		}
		if rev > 0 {
			task.Set(m.Header, stream.HeaderRegistryRev, strconv.FormatUint(rev, 10))
		}
		d.o.Tracing.Inject(ctx, m.Header)
		if ordered[i] {
			task.Set(m.Header, stream.HeaderOrderingKey, ev.orderingKey)
			task.Set(m.Header, stream.HeaderEventSeq, strconv.FormatUint(ev.seq, 10))
		}
		msgs[i] = m
	}
	settled, ctx, cancel := d.direct(ctx, msg, subs, ordered, msgs)
	defer cancel()
	futures := make([]func(context.Context) error, 0, len(subs))
	for i, s := range subs {
		if settled[i] {
			direct = true
			continue
		}
		f, err := d.publishAsync(ctx, msgs[i], stream.TaskMsgID(ev.id, s.GetId()))
		if err != nil {
			return direct, err
		}
		futures = append(futures, f)
	}
	// Check every future: PublishAsyncComplete only says that all resolved.
	var errs []error
	for _, wait := range futures {
		if err := wait(ctx); err != nil {
			if ctx.Err() != nil {
				return direct, fmt.Errorf("publish tasks: %w", ctx.Err())
			}
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return direct, fmt.Errorf("publish tasks (%d of %d failed): %w", len(errs), len(futures), errors.Join(errs...))
	}
	d.m.TasksPublished.Add(float64(len(futures)))
	return direct, nil
}

// direct makes the first attempts of the unordered deliveries from
// dispatch (Options.Direct), in parallel when there are several;
// settled[i] says that subs[i] needs no task. An attempt takes its
// subscription's timeout, not dispatch's: when any was made, the tasks
// left are published under a deadline of their own (pctx), and the event
// is told it is still in progress after a long attempt.
func (d *Dispatcher) direct(ctx context.Context, msg jetstream.Msg, subs []*hooklinev1.Subscription, ordered []bool, msgs []*nats.Msg) (settled []bool, pctx context.Context, cancel func()) {
	settled = make([]bool, len(subs))
	if d.o.Direct == nil || !d.fits(msg) || redone(msg) {
		return settled, ctx, func() {}
	}
	start := time.Now()
	// An attempt may take its subscription's whole timeout after a wait
	// in line, and its settling more: the event is kept alive meanwhile,
	// as a task is in the deliver stage, or it would be redelivered and
	// fanned out again beside the attempts still running.
	stop := pool.KeepAlive(msg, d.o.AckWait/3)
	var wg sync.WaitGroup
	tried := false
	for i, s := range subs {
		if ordered[i] {
			continue
		}
		tried = true
		if len(subs) == 1 {
			settled[i] = d.o.Direct.Direct(ctx, msgs[i], s)
			break
		}
		wg.Go(func() { settled[i] = d.o.Direct.Direct(ctx, msgs[i], s) })
	}
	wg.Wait()
	stop()
	if !tried || time.Since(start) < time.Second {
		return settled, ctx, func() {}
	}
	_ = msg.InProgress()
	pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), d.o.Timeout)
	return settled, pctx, cancel
}

// redone reports whether the event was delivered to dispatch before: its
// first fan-out may have stored some tasks whose publish seemed to fail (a
// timeout), so the redo publishes every task again under the same ids,
// deduplicated, rather than attempting a delivery whose task may exist.
func redone(msg jetstream.Msg) bool {
	meta, err := msg.Metadata()
	return err != nil || meta.NumDelivered > 1
}

// fits reports whether the event could travel as a task or a dead letter
// (stream.EventsLimit of the server's max_payload): one that could not is
// never attempted directly, since its retry could not be stored.
func (d *Dispatcher) fits(msg jetstream.Msg) bool {
	nc := d.js.Conn()
	return nc == nil || int64(len(msg.Data())) <= int64(stream.EventsLimit(nc.MaxPayload()))
}

// register puts the event's tasks for ordered subscriptions in their key's
// line before any is published (a task must never be attempted before its
// line knows it); ordered[i] says whether subs[i]'s task is ordered.
func (d *Dispatcher) register(ctx context.Context, ev event, subs []*hooklinev1.Subscription) ([]bool, error) {
	ordered, entries := d.entries(ev, subs)
	if len(entries) == 0 {
		return ordered, nil
	}
	if err := d.o.Orderer.Register(ctx, entries); err != nil {
		return nil, err
	}
	return ordered, nil
}

// unregister undoes register for an event given up.
func (d *Dispatcher) unregister(ctx context.Context, ev event, subs []*hooklinev1.Subscription) error {
	_, entries := d.entries(ev, subs)
	if len(entries) == 0 {
		return nil
	}
	return d.o.Orderer.Unregister(ctx, entries)
}

// entries are the places of the event's ordered tasks in their keys' lines.
func (d *Dispatcher) entries(ev event, subs []*hooklinev1.Subscription) ([]bool, []ordering.Entry) {
	ordered := make([]bool, len(subs))
	if ev.orderingKey == "" || ev.seq == 0 || d.o.Orderer == nil {
		return ordered, nil
	}
	var entries []ordering.Entry
	for i, s := range subs {
		if s.GetOrdered() {
			ordered[i] = true
			entries = append(entries, ordering.Entry{
				Key:     ordering.Key{Subscription: s.GetId(), Value: ev.orderingKey},
				EventID: ev.id, Seq: ev.seq,
			})
		}
	}
	return ordered, entries
}

// publishAsync queues m for the next group commit, or publishes it
// asynchronously (retrying while the async window is full); the returned
// wait gives its outcome.
func (d *Dispatcher) publishAsync(ctx context.Context, m *nats.Msg, msgID string) (func(context.Context) error, error) {
	if d.tasks != nil {
		if m.Header == nil {
			m.Header = nats.Header{}
		}
		return d.tasks.Publish(ctx, m, msgID).Wait, nil
	}
	f, err := natsconn.PublishAsync(ctx, d.js, m, nil, jetstream.WithMsgID(msgID))
	if err != nil {
		return nil, fmt.Errorf("publish task: %w", err)
	}
	return func(ctx context.Context) error {
		select {
		case <-f.Ok():
			return nil
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// deadLetter files an event that cannot be delivered (not JSON, no type)
// once per matching subscription, so that nothing is dropped silently.
func (d *Dispatcher) deadLetter(ctx context.Context, msg jetstream.Msg, ev event, subs []*hooklinev1.Subscription) error {
	for _, s := range subs {
		dup, err := d.dead.Publish(ctx, deadletter.Letter{
			Header: task.NewHeader(ev.id, ev.tenant, ev.eventType, ev.occurredAt, s.GetId()),
			Body:   msg.Data(),
			DeadLetter: wire.DeadLetter{
				EventID:         ev.id,
				Tenant:          ev.tenant,
				EventType:       ev.eventType,
				OccurredAt:      ev.occurredAt,
				SubscriptionID:  s.GetId(),
				Reason:          wire.DeadLetterInvalidPayload,
				LastError:       ev.detail,
				OriginalSubject: msg.Subject(),
			},
		})
		if err != nil {
			return err
		}
		if !dup {
			d.m.DeadLetters.WithLabelValues(wire.DeadLetterInvalidPayload).Inc()
			d.log.Warn("invalid event dead-lettered", zap.String("event_id", ev.id),
				zap.String("subscription_id", s.GetId()), zap.String("reason", wire.DeadLetterInvalidPayload),
				zap.String("error", ev.detail))
		}
	}
	return nil
}

// ack acknowledges an event whose deliveries are all stored as tasks
// without waiting for the server's confirmation: an ack lost in a crash
// redelivers the event, and its fan-out is redone under the same dedup
// ids, so no task is duplicated (unlike the deliver stage, or an event
// with deliveries made from dispatch — confirm — where a lost ack repeats
// an HTTP attempt and DoubleAck is worth its round trip).
func (d *Dispatcher) ack(_ context.Context, msg jetstream.Msg, ev event) {
	if err := msg.Ack(); err != nil {
		d.log.Warn("ack event", append(ev.fields(), zap.Error(err))...)
	}
}

// confirm acknowledges an event some of whose deliveries were made from
// dispatch and waits for the server's confirmation (DoubleAck), as the
// deliver stage does for a task: its ack stands for those deliveries'
// acks, and one lost to a nats-server crash redoes the fan-out, which
// sends them again (a plain ack lost 2,344 of 20,000 there; DoubleAck 33).
func (d *Dispatcher) confirm(ctx context.Context, msg jetstream.Msg, ev event) {
	// Not dispatch's deadline: the attempts may have used it up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.o.Timeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		d.log.Warn("ack event", append(ev.fields(), zap.Error(err))...)
	}
}

func (d *Dispatcher) retry(ctx context.Context, msg jetstream.Msg, ev event, err error) {
	failed(ctx, "fan-out redone")
	d.log.Warn("fan-out failed; event will be redone", append(ev.fields(), zap.Error(err), zap.Duration("delay", d.o.NakDelay))...)
	if err := msg.NakWithDelay(d.o.NakDelay); err != nil {
		d.log.Warn("nak event", append(ev.fields(), zap.Error(err))...)
	}
}

// tooLarge ends an event that cannot travel as a task or a dead letter:
// its body and Hookline's headers exceed the server's max_payload. Redoing
// it would fail forever. The EVENTS size cap (stream.EventsLimit) refuses
// such an event at publish time; this is for one stored before the cap, or
// with headers larger than stream.EnvelopeHeadroom.
func (d *Dispatcher) tooLarge(ctx context.Context, msg jetstream.Msg, ev event, err error) {
	d.m.EventsInvalid.WithLabelValues(problemTooLarge).Inc()
	failed(ctx, problemTooLarge)
	d.log.Error("event too large to fan out or dead-letter; dropped (see hookline_events_invalid_total)",
		append(ev.fields(), zap.String("tenant", ev.tenant), zap.Int("body_bytes", len(msg.Data())), zap.Error(err))...)
	if err := msg.TermWithReason(problemTooLarge); err != nil {
		d.log.Warn("term event", append(ev.fields(), zap.Error(err))...)
	}
}

// fields identify the event in a log line (built only when logging).
func (ev event) fields() []zap.Field {
	return []zap.Field{zap.String("event_id", ev.id), zap.String("event_type", ev.eventType)}
}

func first(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
