package dispatch

import (
	"context"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// noSpan is the span of a fan-out with tracing off.
var noSpan = trace.SpanFromContext(context.Background())

// span starts the consumer span of one event's fan-out: a child of the
// publisher's span when the event carries a traceparent (the producer
// writes one; a `nats pub -H traceparent:…` may), a new trace otherwise.
// Its context is what the event's tasks carry (fanOut). Off, it is a
// no-op span and ctx is unchanged.
func (d *Dispatcher) span(ctx context.Context, msg jetstream.Msg, ev event) (context.Context, trace.Span) {
	t := d.o.Tracing
	if !t.Enabled() {
		return ctx, noSpan
	}
	ctx = t.Extract(ctx, msg.Headers())
	ctx, span := t.Start(ctx, "process "+stream.Events, trace.WithSpanKind(trace.SpanKindConsumer))
	if span.IsRecording() {
		span.SetAttributes(
			tracing.MessagingSystem,
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(msg.Subject()),
			semconv.MessagingConsumerGroupName(stream.DispatchConsumer),
			semconv.MessagingMessageID(ev.id),
			tracing.AttrEventID.String(ev.id),
			tracing.AttrTenant.String(ev.tenant),
			tracing.AttrEventType.String(ev.eventType),
		)
		if ev.problem != "" {
			span.SetAttributes(semconv.ErrorTypeKey.String(ev.problem))
		}
	}
	return ctx, span
}

// matched records how many subscriptions the event matched.
func matched(span trace.Span, n int) {
	if span.IsRecording() {
		span.SetAttributes(tracing.AttrSubscriptions.Int(n))
	}
}

// failed marks ctx's span as failed, for a reason that names no secret.
func failed(ctx context.Context, reason string) {
	trace.SpanFromContext(ctx).SetStatus(codes.Error, reason)
}
