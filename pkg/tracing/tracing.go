// Package tracing is Hookline's OpenTelemetry tracing: W3C trace context
// carried in NATS headers (the keys traceparent and tracestate, written
// exactly so: NATS header keys are case-sensitive) and HTTP headers, and
// the OTLP/HTTP exporter configured by the standard OTEL_* variables.
//
// Tracing is off by default. Off, a *Tracing is nil and every method is a
// no-op that neither reads nor writes a header, allocates, or starts a
// span: nothing is paid for it.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/zap"
)

// Header keys of the W3C trace context in NATS messages (and in the
// webhook requests the deliverer sends).
const (
	HeaderTraceParent = stream.HeaderTraceParent
	HeaderTraceState  = stream.HeaderTraceState
)

// ScopeName names Hookline's tracer (the instrumentation scope).
const ScopeName = "github.com/hookline/hookline"

// Config is the part of the standard OTEL_* variables that decides
// whether tracing is on and how spans leave the process. The exporter
// reads the rest itself (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT,
// _COMPRESSION, _CERTIFICATE…), the SDK its sampler
// (OTEL_TRACES_SAMPLER, default parentbased_always_on), batching
// (OTEL_BSP_*) and resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES).
type Config struct {
	// SDKDisabled turns tracing off whatever else is set.
	SDKDisabled bool `env:"OTEL_SDK_DISABLED" envDefault:"false"`
	// Exporter is "otlp" or "none"; empty: otlp when an OTLP endpoint is
	// set, none otherwise (unlike the SDKs' default of otlp: a service
	// that nobody pointed at a collector sends nothing anywhere).
	Exporter string `env:"OTEL_TRACES_EXPORTER"`
	// Endpoint is the collector's base URL (/v1/traces is appended);
	// TracesEndpoint the full URL, which wins.
	Endpoint       string `env:"OTEL_EXPORTER_OTLP_ENDPOINT"`
	TracesEndpoint string `env:"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"`
	// Protocol must be http/protobuf (the default) when set: only the
	// OTLP/HTTP exporter is built in.
	Protocol       string `env:"OTEL_EXPORTER_OTLP_PROTOCOL"`
	TracesProtocol string `env:"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"`
}

// Enabled reports whether c turns tracing on.
func (c Config) Enabled() bool {
	if c.SDKDisabled {
		return false
	}
	switch strings.TrimSpace(c.Exporter) {
	case "otlp":
		return true
	case "":
		return c.Endpoint != "" || c.TracesEndpoint != ""
	default:
		return false
	}
}

// Validate names the variable at fault. Endpoints are never echoed (a URL
// may carry credentials).
func (c Config) Validate() error {
	if c.SDKDisabled {
		return nil
	}
	var errs []error
	switch e := strings.TrimSpace(c.Exporter); e {
	case "", "otlp", "none":
	default:
		errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER must be otlp or none, not %q (only the OTLP exporter is built in)", e))
	}
	for _, p := range []struct{ name, v string }{
		{"OTEL_EXPORTER_OTLP_PROTOCOL", c.Protocol},
		{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", c.TracesProtocol},
	} {
		if v := strings.TrimSpace(p.v); v != "" && v != "http/protobuf" {
			errs = append(errs, fmt.Errorf("%s must be http/protobuf, not %q: only the OTLP/HTTP exporter is built in (a collector's port 4318)", p.name, v))
		}
	}
	if c.Exporter == "otlp" && c.Endpoint == "" && c.TracesEndpoint == "" {
		// The exporter would fall back to localhost:4318, which is rarely
		// meant in a cluster: say so rather than drop spans silently.
		errs = append(errs, errors.New("OTEL_TRACES_EXPORTER=otlp needs OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
	}
	return errors.Join(errs...)
}

// Tracing starts spans and carries their context across NATS and HTTP. A
// nil *Tracing is tracing off.
type Tracing struct {
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	shutdown func(context.Context) error
}

// Start builds the tracing of a service from c: nil (off) unless
// c.Enabled(), else an OTLP/HTTP exporter behind a batch span processor.
// service is the default service.name (OTEL_SERVICE_NAME wins); errors of
// the exporter go to onError (they never stop the service).
func Start(ctx context.Context, c Config, service, version string, onError func(error)) (*Tracing, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if !c.Enabled() {
		return nil, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	// Later detectors win: Hookline's service name and version, then
	// OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME. (resource.Default()
	// would name the service unknown_service:<binary>.)
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithAttributes(semconv.ServiceName(service), semconv.ServiceVersion(version)),
		resource.WithFromEnv(),
	)
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	if onError != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(onError))
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	t := New(tp)
	t.shutdown = tp.Shutdown
	return t, nil
}

// New is tracing with tp (tests pass a provider that records in memory).
func New(tp trace.TracerProvider) *Tracing {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return &Tracing{
		tracer: tp.Tracer(ScopeName),
		// W3C trace context only: baggage is the caller's data, and none
		// of it should travel on to tenants' endpoints.
		prop: propagation.TraceContext{},
	}
}

// Enabled reports whether spans are recorded at all.
func (t *Tracing) Enabled() bool { return t != nil }

// LogErrors logs the exporter's errors (a collector away) at warn.
func LogErrors(log *zap.Logger) func(error) {
	l := log.Named("tracing")
	return func(err error) { l.Warn("trace export failed", zap.Error(err)) }
}

// Flush exports the spans still buffered and stops the exporter, within
// 5 seconds: what a service does last on its way out.
func (t *Tracing) Flush() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// Shutdown flushes the spans not yet exported, within ctx.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil || t.shutdown == nil {
		return nil
	}
	return t.shutdown(ctx)
}

// noopSpan is what a nil Tracing hands out.
var noopSpan = noop.Span{}

// Start starts a span (a no-op one, and ctx unchanged, when off). Build
// attributes only when span.IsRecording().
func (t *Tracing) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, noopSpan
	}
	return t.tracer.Start(ctx, name, opts...)
}

// Interval records a finished span named name from start to end, a child
// of the span context header h carries (a root span when it carries
// none): a wait measured after the fact, such as a task's time in its
// subscription's line. Off, it does nothing.
func (t *Tracing) Interval(ctx context.Context, h nats.Header, name string, start, end time.Time, attrs ...attribute.KeyValue) {
	if t == nil {
		return
	}
	_, span := t.tracer.Start(t.Extract(ctx, h), name, trace.WithTimestamp(start), trace.WithAttributes(attrs...))
	span.End(trace.WithTimestamp(end))
}

// MaxTraceState is the longest tracestate carried in NATS headers: the
// W3C recommends that vendors keep it under 512 characters, and a caller's
// 16 KB one (32 entries of 512) would be copied into every task of the
// event and take the room its data needs.
const MaxTraceState = 512

// Inject writes the span context of ctx into a NATS header; a tracestate
// longer than MaxTraceState is left out (the traceparent still goes).
func (t *Tracing) Inject(ctx context.Context, h nats.Header) {
	if t == nil || h == nil {
		return
	}
	t.prop.Inject(ctx, Carrier(h))
	if v := h[HeaderTraceState]; len(v) > 0 && len(v[0]) > MaxTraceState {
		delete(h, HeaderTraceState)
	}
}

// Extract returns ctx with the span context a NATS header carries (ctx
// when it carries none).
func (t *Tracing) Extract(ctx context.Context, h nats.Header) context.Context {
	if t == nil || h == nil {
		return ctx
	}
	return t.prop.Extract(ctx, Carrier(h))
}

// InjectTraceParent writes the traceparent of ctx's span into the headers
// of a request that leaves for a third party (a webhook): the trace id and
// the span id, never the tracestate, whose vendor entries are the
// platform's business.
func (t *Tracing) InjectTraceParent(ctx context.Context, h http.Header) {
	if t == nil {
		return
	}
	c := Carrier{}
	t.prop.Inject(ctx, c)
	if v := c.Get(HeaderTraceParent); v != "" {
		h["Traceparent"] = []string{v}
	}
}

// ExtractHTTP returns ctx with the span context of HTTP headers.
func (t *Tracing) ExtractHTTP(ctx context.Context, h http.Header) context.Context {
	if t == nil {
		return ctx
	}
	return t.prop.Extract(ctx, propagation.HeaderCarrier(h))
}

// Carrier is a NATS header as a propagation carrier. Keys are used exactly
// as the W3C propagator names them (traceparent, tracestate): NATS header
// keys are case-sensitive, and a Traceparent would not be found by other
// W3C readers of the same message.
type Carrier nats.Header

var _ propagation.TextMapCarrier = Carrier(nil)

// Get returns the first value of key.
func (c Carrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the values of key.
func (c Carrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys.
func (c Carrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}

// TraceIDOf is the trace id of the W3C traceparent a NATS header carries
// (00-<32 hex>-<16 hex>-<2 hex>), "" when it carries none or a malformed
// one. It reads the header whether tracing is on or off: for log lines and
// exemplars.
func TraceIDOf(h map[string][]string) string {
	v := h[HeaderTraceParent]
	if len(v) == 0 {
		return ""
	}
	tp := v[0]
	if len(tp) != 55 || tp[2] != '-' || tp[35] != '-' || tp[52] != '-' {
		return ""
	}
	id := tp[3:35]
	for i := 0; i < len(id); i++ {
		if c := id[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return ""
		}
	}
	if id == "00000000000000000000000000000000" {
		return ""
	}
	return id
}

// TraceID is the trace id of ctx's span, "" when there is none (for log
// lines).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
