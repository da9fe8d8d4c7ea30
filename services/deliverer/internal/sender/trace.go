package sender

import (
	"context"
	"net/url"
	"strconv"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// attemptSpan starts the HTTP client span of an attempt, a child of the
// span the task carries in its traceparent header (dispatch's: every
// attempt, retry and replay of a task is a sibling under the event's
// fan-out). Off, it returns ctx and a nil span.
//
// Its attributes name the destination by host and port only: a webhook
// URL's path and query are often its credential (a Slack or Discord
// webhook is one), and userinfo always is, so url.full and url.path are
// never recorded; nor are headers, signatures or the body.
func (s *Sender) attemptSpan(ctx context.Context, r Request) (context.Context, trace.Span) {
	if !s.tracing.Enabled() {
		return ctx, nil
	}
	ctx = s.tracing.Extract(ctx, r.TaskHeader)
	ctx, span := s.tracing.Start(ctx, "POST", trace.WithSpanKind(trace.SpanKindClient))
	if !span.IsRecording() {
		return ctx, span
	}
	span.SetAttributes(
		semconv.HTTPRequestMethodPost,
		tracing.AttrEventID.String(r.ID),
		tracing.AttrEventType.String(r.EventType),
		tracing.AttrSubscriptionID.String(r.SubscriptionID),
		tracing.AttrAttempt.Int(r.Attempt),
	)
	if v := first(r.TaskHeader, stream.HeaderTenant); v != "" {
		span.SetAttributes(tracing.AttrTenant.String(v))
	}
	if v := first(r.TaskHeader, stream.HeaderReplay); v != "" {
		span.SetAttributes(tracing.AttrReplay.String(v))
	}
	if u, err := url.Parse(r.URL); err == nil && u.Hostname() != "" {
		span.SetAttributes(semconv.URLScheme(u.Scheme), semconv.ServerAddress(u.Hostname()))
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if n, err := strconv.Atoi(port); err == nil {
			span.SetAttributes(semconv.ServerPort(n))
		}
	}
	return ctx, span
}

// endAttemptSpan records how the attempt ended: the status, or the error
// class (never the error's text, which may name addresses).
func endAttemptSpan(span trace.Span, res Result) {
	if span == nil {
		return
	}
	if res.Status > 0 {
		span.SetAttributes(semconv.HTTPResponseStatusCode(res.Status))
	}
	if !res.OK() {
		class := res.ErrorClass
		if class == "" {
			class = ClassNetwork
		}
		span.SetAttributes(semconv.ErrorTypeKey.String(class))
		span.SetStatus(codes.Error, class)
	}
	span.End()
}

func first(h map[string][]string, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
