// Package deadletter builds and publishes dead letters: the original event
// body in DEADLETTER with headers that say why it is there (reason, last
// status and error, attempts, first and last attempt time, the original
// subject) plus every Hookline-* header of the task, so that hookctl can
// show, filter and replay it and `nats stream view` can read it.
package deadletter

import (
	"context"
	"fmt"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Letter is one dead letter to publish: the record (pkg/wire) with the
// task's header and the event's data.
type Letter struct {
	wire.DeadLetter
	// Header is the task's header; only its Hookline-* entries are kept.
	Header nats.Header
	Body   []byte
}

// Build is the DEADLETTER message of l, dead-lettered at now: the task's
// Hookline-* headers with the record's (pkg/wire) on top.
func Build(l Letter, now time.Time) *nats.Msg {
	d := l.DeadLetter
	d.DeadLetteredAt = now
	return d.Msg(task.CopyHeader(l.Header), l.Body)
}

// Publisher publishes dead letters and waits for their ack.
type Publisher struct {
	js jetstream.JetStream
	// Tracing (nil: off) makes each dead letter a span in its task's trace.
	Tracing *tracing.Tracing
}

// NewPublisher publishes with js.
func NewPublisher(js jetstream.JetStream) *Publisher { return &Publisher{js: js} }

// Publish stores l in DEADLETTER. duplicate is true when the dead letter
// was already stored (a redelivered task whose first pass crashed between
// this publish and its Term): the caller then terminates the task all the
// same.
func (p *Publisher) Publish(ctx context.Context, l Letter) (duplicate bool, err error) {
	m := Build(l, time.Now())
	ctx, span := p.span(ctx, l, m.Subject)
	if span != nil {
		defer span.End()
	}
	ack, err := p.js.PublishMsg(ctx, m, jetstream.WithExpectStream(stream.DeadLetter))
	if err != nil {
		if span != nil {
			span.SetStatus(codes.Error, "not acknowledged")
		}
		return false, fmt.Errorf("publish dead letter: %w", err)
	}
	return ack.Duplicate, nil
}

// span starts the producer span of a dead letter, in the trace its task
// carries (a sibling of the task's attempts); nil when tracing is off.
func (p *Publisher) span(ctx context.Context, l Letter, subject string) (context.Context, trace.Span) {
	if !p.Tracing.Enabled() {
		return ctx, nil
	}
	ctx = p.Tracing.Extract(ctx, l.Header)
	ctx, span := p.Tracing.Start(ctx, "send "+stream.DeadLetter, trace.WithSpanKind(trace.SpanKindProducer))
	if span.IsRecording() {
		span.SetAttributes(tracing.MessagingSystem, semconv.MessagingOperationTypeSend,
			semconv.MessagingDestinationName(subject),
			tracing.AttrEventID.String(l.EventID), tracing.AttrSubscriptionID.String(l.SubscriptionID),
			tracing.AttrTenant.String(l.Tenant), attribute.String("hookline.dead_letter.reason", l.Reason),
			attribute.Int("hookline.dead_letter.attempts", l.Attempts))
	}
	return ctx, span
}
