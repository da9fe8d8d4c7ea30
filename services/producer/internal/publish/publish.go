// Package publish puts events on the EVENTS stream and test deliveries on
// DELIVERIES, following the header contract of pkg/stream. A publish counts
// as accepted only once JetStream has acknowledged it.
package publish

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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
}

// Result is the outcome of an acknowledged publish.
type Result struct {
	ID string `json:"id"`
	// Duplicate is true when the id was already stored (a retried publish).
	Duplicate bool `json:"duplicate"`
}

// Publisher publishes to JetStream.
type Publisher struct {
	js        jetstream.JetStream
	timeout   time.Duration
	published *prometheus.CounterVec
	stallWait time.Duration // how long an async publish waits for room
	stalls    atomic.Int64  // async publishes retried for want of room
	// Tracing (nil: off) starts a producer span per publish and writes
	// its traceparent into the messages.
	Tracing *tracing.Tracing
}

// New returns a Publisher on nc. timeout bounds the wait for an ack (of one
// event, or of a whole batch).
func New(nc *nats.Conn, timeout time.Duration, m *metrics.Metrics) (*Publisher, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(maxPendingAsync),
		jetstream.WithPublishAsyncTimeout(timeout))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Publisher{js: js, timeout: timeout, published: m.EventsPublished, stallWait: defaultStallWait}, nil
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
	if err := p.connected(); err != nil {
		p.published.WithLabelValues(metrics.ResultFailed).Inc()
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	m := eventMsg(ev)
	ctx, span := p.sendSpan(ctx, stream.Events, m.Subject, 1)
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(semconv.MessagingMessageID(ev.ID), tracing.AttrTenant.String(ev.Tenant), tracing.AttrEventType.String(ev.Type))
	}
	p.Tracing.Inject(ctx, m.Header)
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream.Events))
	if err != nil {
		p.published.WithLabelValues(metrics.ResultFailed).Inc()
		span.SetStatus(codes.Error, "not acknowledged")
		return Result{}, fmt.Errorf("%w: publish event: %w", ErrUnavailable, err)
	}
	return p.result(ev.ID, ack), nil
}

func (p *Publisher) result(id string, ack *jetstream.PubAck) Result {
	if ack.Duplicate {
		p.published.WithLabelValues(metrics.ResultDuplicate).Inc()
	} else {
		p.published.WithLabelValues(metrics.ResultAccepted).Inc()
	}
	return Result{ID: id, Duplicate: ack.Duplicate}
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
	ctx, span := p.sendSpan(ctx, stream.Events, stream.Events, len(evs))
	defer span.End()
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var sendErr error
	for _, ev := range evs {
		m := eventMsg(ev)
		p.Tracing.Inject(ctx, m.Header)
		f, err := p.publishAsync(ctx, m)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}
	results := make([]Result, 0, len(evs))
	var errs []error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			results = append(results, p.result(evs[i].ID, ack))
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
