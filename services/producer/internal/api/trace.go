package api

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// untraced are the probe and scrape paths: a span every few seconds per
// replica would be noise.
var untraced = map[string]bool{"/livez": true, "/readyz": true, "/metrics": true}

// serverSpan starts the server span of a request, continuing the caller's
// trace when it sends a W3C traceparent. Off (no tracing), it returns the
// request's context and a nil span.
func (a *API) serverSpan(r *http.Request) (context.Context, trace.Span) {
	ctx := r.Context()
	if !a.tracing.Enabled() || untraced[r.URL.Path] {
		return ctx, nil
	}
	ctx = a.tracing.ExtractHTTP(ctx, r.Header)
	// Named for the route once it is known (endServerSpan); the path
	// itself is never recorded: only the route pattern.
	return a.tracing.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
}

// endServerSpan names the span for its route and ends it.
func endServerSpan(span trace.Span, method, route string, status int) {
	if span == nil {
		return
	}
	if _, path, ok := strings.Cut(route, " "); ok {
		route = path
	}
	span.SetName(method + " " + route)
	span.SetAttributes(
		semconv.HTTPRequestMethodKey.String(method),
		semconv.HTTPRoute(route),
		semconv.HTTPResponseStatusCode(status),
	)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
