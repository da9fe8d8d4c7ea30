// Package publish puts events on the EVENTS stream and test deliveries on
// DELIVERIES, following the header contract of pkg/stream. A publish counts
// as accepted only once JetStream has acknowledged it.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// ErrUnavailable is returned (wrapped) when JetStream did not acknowledge a
// publish: NATS is down, the stream is missing, or the ack timed out. The
// caller must not claim the event was accepted; republishing is safe (the
// id deduplicates).
var ErrUnavailable = errors.New("event stream unavailable")

// TestEventType is the type of the event sent by POST …/test.
const TestEventType = "hookline.test"

// maxPendingAsync bounds the async publishes in flight on this connection;
// beyond it PublishMsgAsync stalls and then returns ErrTooManyStalledMsgs.
const maxPendingAsync = 4096

// defaultStallWait is how long PublishMsgAsync waits for room in a full
// window before it returns ErrTooManyStalledMsgs (and we retry).
const defaultStallWait = 200 * time.Millisecond

// Event is one event to publish. Data is the JSON payload, byte for byte.
type Event struct {
	ID         string
	Tenant     string
	Type       string
	OccurredAt time.Time
	Data       []byte
	// OrderingKey is sent as Hookline-Ordering-Key ("" for none).
	OrderingKey string
	// Generated: the producer made the id up for this request, so it
	// cannot have been stored before (no lookup of its mark).
	Generated bool
}

// Result is the outcome of an acknowledged publish.
type Result struct {
	ID string `json:"id"`
	// Duplicate is true when the id was already stored (a retried publish).
	Duplicate bool `json:"duplicate"`
	// Seq is the event's sequence in EVENTS (0 when a duplicate was
	// recognised by its id's mark, before any publish).
	Seq uint64 `json:"-"`
}

// Publisher publishes to JetStream.
type Publisher struct {
	js        jetstream.JetStream
	timeout   time.Duration
	published *prometheus.CounterVec
	markErrs  *prometheus.CounterVec
	stallWait time.Duration // how long an async publish waits for room
	stalls    atomic.Int64  // async publishes retried for want of room
	// ids is the bucket of stored event ids (nil until BindIDs).
	ids atomic.Pointer[jetstream.KeyValue]
	// group stores events published together as one atomic batch, and
	// marks the marks of their ids, while Run runs (groupRunning); nil:
	// group commit off.
	group, marks *groupcommit.Publisher
	groupRunning atomic.Bool
	// groupSingles: single publishes go through the group too
	// (WithGroupCommit); otherwise only batch requests do
	// (WithBatchGroupCommit).
	groupSingles bool
	// Tracing (nil: off) starts a producer span per publish and writes
	// its traceparent into the messages.
	Tracing *tracing.Tracing
}

// WithGroupCommit stores the events of concurrent publishes (and of one
// batch), and the marks of their ids, in JetStream atomic batches while
// Run runs: a nats-server with sync_interval: always then fsyncs once per
// batch instead of once per event.
func (p *Publisher) WithGroupCommit() *Publisher {
	p.WithBatchGroupCommit()
	p.groupSingles = true
	return p
}

// WithBatchGroupCommit is WithGroupCommit for batch requests only: the
// events of a batch request (and of batch requests arriving together)
// are stored in atomic batches, single publishes one by one. A batch's
// events are published together anyway, so grouping them costs no wait;
// grouping concurrent single publishes cost 40 % of their rate under the
// default fsync (docs/performance.md).
func (p *Publisher) WithBatchGroupCommit() *Publisher {
	p.group = groupcommit.New(p.js, groupcommit.Config{Timeout: p.timeout})
	p.marks = groupcommit.New(p.js, groupcommit.Config{Timeout: p.timeout})
	return p
}

// Run runs the group commit (if on) until ctx ends, then commits what is
// queued. Without Run every event is published on its own.
func (p *Publisher) Run(ctx context.Context) {
	if p.group == nil {
		<-ctx.Done()
		return
	}
	p.groupRunning.Store(true)
	defer p.groupRunning.Store(false)
	// Marks outlive the events' batches: a mark is written after its
	// event is stored.
	mctx, stopMarks := context.WithCancel(context.WithoutCancel(ctx))
	marksDone := make(chan struct{})
	go func() { p.marks.Run(mctx); close(marksDone) }()
	p.group.Run(ctx)
	stopMarks()
	<-marksDone
}

// Config is a Publisher's.
type Config struct {
	// Timeout bounds the wait for an ack (of one event, or of a whole
	// batch).
	Timeout time.Duration
	// Metrics counts what is published and the marks that failed.
	Metrics *metrics.Metrics
}

// New returns a Publisher on nc.
func New(nc *nats.Conn, c Config) (*Publisher, error) {
	p := &Publisher{timeout: c.Timeout, published: c.Metrics.EventsPublished, markErrs: c.Metrics.EventIDMarkErrors, stallWait: defaultStallWait}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingAsync),
		jetstream.WithPublishAsyncTimeout(c.Timeout),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, _ error) {
			if strings.HasPrefix(m.Subject, markPrefix) {
				p.markErrs.WithLabelValues(metrics.MarkWrite).Inc()
			}
		}))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	p.js = js
	return p, nil
}

// markPrefix is the subject prefix of the event id marks (a KV put is a
// publish to $KV.<bucket>.<key>).
const markPrefix = "$KV." + stream.EventIDsBucket + "."

// BindIDs binds the bucket of stored event ids (once the topology is
// checked): from then on an id the publisher chose is looked up before it
// is published, and every stored event is marked.
func (p *Publisher) BindIDs(ctx context.Context) error {
	kv, err := p.js.KeyValue(ctx, stream.EventIDsBucket)
	if err != nil {
		return fmt.Errorf("bind kv bucket %s: %w", stream.EventIDsBucket, err)
	}
	p.ids.Store(&kv)
	return nil
}

// stored reports whether ev's id was marked stored: an id the publisher
// chose, seen before the duplicate window. A lookup that fails says
// false (the duplicate window still holds) and is counted.
func (p *Publisher) stored(ctx context.Context, ev Event) bool {
	kv := p.ids.Load()
	if kv == nil || ev.Generated {
		return false
	}
	_, err := (*kv).Get(ctx, stream.EventIDKey(ev.Tenant, ev.ID))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		p.markErrs.WithLabelValues(metrics.MarkLookup).Inc()
	}
	return err == nil
}

// mark records ev's id as stored at seq, without waiting: the answer does
// not wait for it, and a mark lost (counted) leaves that id to the
// duplicate window alone. grouped: ev went through the group commit, and
// so does its mark while the group runs.
func (p *Publisher) mark(ev Event, seq uint64, grouped bool) {
	if p.ids.Load() == nil {
		return
	}
	m := nats.NewMsg(markPrefix + stream.EventIDKey(ev.Tenant, ev.ID))
	m.Data = strconv.AppendUint(nil, seq, 10)
	if grouped && p.groupRunning.Load() {
		m.Header.Set(jetstream.ExpectedStreamHeader, "KV_"+stream.EventIDsBucket)
		if f := p.marks.Publish(context.Background(), m, ""); isDone(f) && f.Err() != nil {
			p.markErrs.WithLabelValues(metrics.MarkWrite).Inc()
		}
		return
	}
	if _, err := p.js.PublishMsgAsync(m, jetstream.WithExpectStream("KV_"+stream.EventIDsBucket), jetstream.WithStallWait(p.stallWait)); err != nil {
		p.markErrs.WithLabelValues(metrics.MarkWrite).Inc()
	}
}

// NewEventID returns a fresh event id: evt_<ULID>.
func NewEventID() string { return "evt_" + ulid.Make().String() }

// headerRoom bounds the headers of an event message built by eventMsg
// (an id of at most 128 bytes, a timestamp and an ordering key of at most
// 128); traceRoom is added with tracing on (a traceparent of 55 bytes and a
// tracestate of at most tracing.MaxTraceState).
const (
	headerRoom = 512
	traceRoom  = 64 + tracing.MaxTraceState
)

// MaxData is the largest event data the EVENTS stream accepts, 0 while not
// connected: the server's max_payload less stream.EnvelopeHeadroom (room
// for the headers of the tasks and dead letters an event becomes) and the
// event's own headers.
func (p *Publisher) MaxData() int64 {
	mp := p.js.Conn().MaxPayload()
	if mp <= 0 {
		return 0
	}
	room := int64(headerRoom)
	if p.Tracing.Enabled() {
		room += traceRoom
	}
	return int64(stream.EventsLimit(mp)) - room
}

// eventMsg builds the EVENTS message: body = data, id and time in headers.
func eventMsg(ev Event) *nats.Msg {
	m := nats.NewMsg(stream.EventSubject(ev.Tenant, ev.Type))
	m.Data = ev.Data
	m.Header.Set(stream.HeaderMsgID, stream.EventMsgID(ev.Tenant, ev.ID))
	m.Header.Set(stream.HeaderOccurredAt, ev.OccurredAt.UTC().Format(time.RFC3339Nano))
	if ev.OrderingKey != "" {
		m.Header.Set(stream.HeaderOrderingKey, ev.OrderingKey)
	}
	return m
}

func (p *Publisher) connected() error {
	if !p.js.Conn().IsConnected() {
		return fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	return nil
}

// Publish stores one event and waits for its acknowledgement. It returns
// ErrUnavailable (wrapped) when the event was not acknowledged.
func (p *Publisher) Publish(ctx context.Context, ev Event) (Result, error) {
	return p.publish(ctx, ev, p.groupSingles, true)
}

// PublishGrouped is Publish through the group commit whenever it runs
// (batch requests' or all publishes'), for callers that publish many
// events at once one by one, as the NATS ingest does; and with the
// deduplication of a NATS publish: by the EVENTS duplicate window alone,
// without the id marks that extend it for the API (no mark looked up,
// none written: a lookup and a synced write per event).
func (p *Publisher) PublishGrouped(ctx context.Context, ev Event) (Result, error) {
	return p.publish(ctx, ev, p.group != nil, false)
}

func (p *Publisher) publish(ctx context.Context, ev Event, grouped, marked bool) (Result, error) {
	if err := p.connected(); err != nil {
		p.published.WithLabelValues(metrics.ResultFailed).Inc()
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	if marked && p.stored(ctx, ev) {
		p.published.WithLabelValues(metrics.ResultDuplicate).Inc()
		return Result{ID: ev.ID, Duplicate: true}, nil
	}
	m := eventMsg(ev)
	ctx, span := p.sendSpan(ctx, stream.Events, m.Subject, 1)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageID(ev.ID), tracing.AttrTenant.String(ev.Tenant), tracing.AttrEventType.String(ev.Type))
	}
	p.Tracing.Inject(ctx, m.Header)
	if grouped && p.groupRunning.Load() {
		f := p.group.Publish(ctx, expectEvents(m), "")
		if err := f.Wait(ctx); err != nil {
			p.published.WithLabelValues(metrics.ResultFailed).Inc()
			return Result{}, fmt.Errorf("%w: publish event: %w", ErrUnavailable, err)
		}
		if marked && !f.Duplicate() {
			p.mark(ev, f.Sequence(), true)
		}
		return p.result(ev.ID, &jetstream.PubAck{Stream: stream.Events, Sequence: f.Sequence(), Duplicate: f.Duplicate()}), nil
	}
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream.Events))
	if err != nil {
		p.published.WithLabelValues(metrics.ResultFailed).Inc()
		span.SetStatus(codes.Error, "not acknowledged")
		return Result{}, fmt.Errorf("%w: publish event: %w", ErrUnavailable, err)
	}
	if marked && !ack.Duplicate {
		p.mark(ev, ack.Sequence, false)
	}
	return p.result(ev.ID, ack), nil
}

func (p *Publisher) result(id string, ack *jetstream.PubAck) Result {
	if ack.Duplicate {
		p.published.WithLabelValues(metrics.ResultDuplicate).Inc()
	} else {
		p.published.WithLabelValues(metrics.ResultAccepted).Inc()
	}
	return Result{ID: id, Duplicate: ack.Duplicate, Seq: ack.Sequence}
}

// PublishBatch publishes every event asynchronously and waits for every
// acknowledgement. It returns the results in order when all were
// acknowledged, else ErrUnavailable (wrapped): some events may be stored,
// and republishing the whole batch is safe because ids deduplicate.
func (p *Publisher) PublishBatch(ctx context.Context, evs []Event) ([]Result, error) {
	if err := p.connected(); err != nil {
		p.published.WithLabelValues(metrics.ResultFailed).Add(float64(len(evs)))
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	seen := p.storedAll(ctx, evs)
	ctx, span := p.sendSpan(ctx, stream.Events, stream.Events, len(evs))
	defer span.End()
	if p.groupRunning.Load() {
		return p.publishGroup(ctx, evs, seen)
	}
	futures := make([]jetstream.PubAckFuture, len(evs))
	var sendErr error
	for i, ev := range evs {
		if seen[i] {
			continue
		}
		m := eventMsg(ev)
		p.Tracing.Inject(ctx, m.Header)
		f, err := p.publishAsync(ctx, m)
		if err != nil {
			sendErr = err
			break
		}
		futures[i] = f
	}
	results := make([]Result, 0, len(evs))
	var errs []error
	for i, f := range futures {
		switch {
		case seen[i]:
			p.published.WithLabelValues(metrics.ResultDuplicate).Inc()
			results = append(results, Result{ID: evs[i].ID, Duplicate: true})
			continue
		case f == nil:
			continue // not sent: sendErr
		}
		select {
		case ack := <-f.Ok():
			results = append(results, p.result(evs[i].ID, ack))
			if !ack.Duplicate {
				p.mark(evs[i], ack.Sequence, false)
			}
		case err := <-f.Err():
			errs = append(errs, fmt.Errorf("event %d: %w", i, err))
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("event %d: %w", i, ctx.Err()))
		}
	}
	failed := len(evs) - len(results)
	if failed == 0 {
		return results, nil
	}
	p.published.WithLabelValues(metrics.ResultFailed).Add(float64(failed))
	span.SetStatus(codes.Error, "not acknowledged")
	if sendErr != nil {
		errs = append(errs, sendErr)
	}
	return nil, fmt.Errorf("%w: %d of %d events not acknowledged: %w", ErrUnavailable, failed, len(evs), errors.Join(errs...))
}

// publishGroup is PublishBatch through the group commit; seen are the
// events already marked stored.
func (p *Publisher) publishGroup(ctx context.Context, evs []Event, seen []bool) ([]Result, error) {
	futures := make([]*groupcommit.Future, len(evs))
	for i, ev := range evs {
		if !seen[i] {
			m := groupMsg(ev)
			p.Tracing.Inject(ctx, m.Header)
			futures[i] = p.group.Publish(ctx, m, "")
		}
	}
	results := make([]Result, 0, len(evs))
	var errs []error
	for i, f := range futures {
		if seen[i] {
			p.published.WithLabelValues(metrics.ResultDuplicate).Inc()
			results = append(results, Result{ID: evs[i].ID, Duplicate: true})
			continue
		}
		if err := f.Wait(ctx); err != nil {
			errs = append(errs, fmt.Errorf("event %d: %w", i, err))
			continue
		}
		if !f.Duplicate() {
			p.mark(evs[i], f.Sequence(), true)
		}
		results = append(results, p.result(evs[i].ID, &jetstream.PubAck{Stream: stream.Events, Sequence: f.Sequence(), Duplicate: f.Duplicate()}))
	}
	if len(errs) == 0 {
		return results, nil
	}
	failed := len(evs) - len(results)
	p.published.WithLabelValues(metrics.ResultFailed).Add(float64(failed))
	return nil, fmt.Errorf("%w: %d of %d events not acknowledged: %w", ErrUnavailable, failed, len(evs), errors.Join(errs...))
}

// groupMsg is eventMsg for the group commit (expectEvents).
func groupMsg(ev Event) *nats.Msg { return expectEvents(eventMsg(ev)) }

// expectEvents has m expect the EVENTS stream, as the plain publishes'
// WithExpectStream does (a group commit publishes raw messages).
func expectEvents(m *nats.Msg) *nats.Msg {
	m.Header.Set(jetstream.ExpectedStreamHeader, stream.Events)
	return m
}

// isDone says whether f already has its outcome (a refusal at once).
func isDone(f *groupcommit.Future) bool {
	select {
	case <-f.Done():
		return true
	default:
		return false
	}
}

// lookups bounds the concurrent mark lookups of one batch.
const lookups = 16

// storedAll is stored for each event, the lookups (of ids the publisher
// chose) made concurrently.
func (p *Publisher) storedAll(ctx context.Context, evs []Event) []bool {
	seen := make([]bool, len(evs))
	if p.ids.Load() == nil {
		return seen
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, lookups)
	for i, ev := range evs {
		if ev.Generated {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			seen[i] = p.stored(ctx, ev)
		})
	}
	wg.Wait()
	return seen
}

// publishAsync sends one message, retrying while the async window is full.
func (p *Publisher) publishAsync(ctx context.Context, m *nats.Msg) (jetstream.PubAckFuture, error) {
	return natsconn.PublishAsync(ctx, p.js, m, func() { p.stalls.Add(1) },
		jetstream.WithExpectStream(stream.Events), jetstream.WithStallWait(p.stallWait))
}

// sendSpan starts the producer span of a publish of n messages to subject
// of streamName (a no-op span when tracing is off). Its context is what
// the messages carry: dispatch and the attempts continue the trace from it.
func (p *Publisher) sendSpan(ctx context.Context, streamName, subject string, n int) (context.Context, trace.Span) {
	ctx, span := p.Tracing.Start(ctx, "send "+streamName, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(tracing.MessagingSystem, semconv.MessagingOperationTypeSend,
			semconv.MessagingOperationName("send"), semconv.MessagingDestinationName(subject))
		if n > 1 {
			span.SetAttributes(semconv.MessagingBatchMessageCount(n))
		}
	}
	return ctx, span
}

// testBody is the webhook body of a test delivery.
type testBody struct {
	Type           string `json:"type"`
	SubscriptionID string `json:"subscription_id"`
}

// PublishTest publishes one delivery task for sub straight to DELIVERIES (no
// fan-out: only this subscription receives it) and returns its event id.
func (p *Publisher) PublishTest(ctx context.Context, sub *hooklinev1.Subscription) (string, error) {
	if err := p.connected(); err != nil {
		return "", err
	}
	id := NewEventID()
	body, err := json.Marshal(testBody{Type: TestEventType, SubscriptionID: sub.GetId()})
	if err != nil {
		return "", fmt.Errorf("test body: %w", err)
	}
	m := nats.NewMsg(stream.DeliverySubject(sub.GetTenant(), sub.GetId()))
	m.Data = body
	m.Header.Set(stream.HeaderMsgID, stream.TaskMsgID(id, sub.GetId()))
	m.Header.Set(stream.HeaderEventID, id)
	m.Header.Set(stream.HeaderTenant, sub.GetTenant())
	m.Header.Set(stream.HeaderEventType, TestEventType)
	m.Header.Set(stream.HeaderOccurredAt, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(stream.HeaderSubscriptionID, sub.GetId())
	m.Header.Set(stream.HeaderTest, "true")
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ctx, span := p.sendSpan(ctx, stream.Deliveries, m.Subject, 1)
	defer span.End()
	p.Tracing.Inject(ctx, m.Header)
	if _, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream.Deliveries)); err != nil {
		return "", fmt.Errorf("%w: publish test delivery: %w", ErrUnavailable, err)
	}
	return id, nil
}
