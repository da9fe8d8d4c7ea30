package tracing

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestConfigEnabled(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want bool
	}{
		{"default: off", nil, false},
		{"an endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, true},
		{"a traces endpoint turns it on", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, true},
		{"none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{"sdk disabled wins", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, false},
		{"otlp named", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c Config
			if err := envconfig.Parse(&c, tc.env); err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := c.Enabled(); got != tc.want {
				t.Fatalf("Enabled() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestConfigValidateNamesTheVariable(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"grpc is not built in", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{"grpc for traces", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"},
		{"unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"},
		{"otlp without an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, "OTEL_EXPORTER_OTLP_ENDPOINT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var c Config
			if err := envconfig.Parse(&c, tc.env); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestStartOffIsNil(t *testing.T) {
	t.Parallel()
	tr, err := Start(context.Background(), Config{}, "svc", "dev", nil)
	if err != nil || tr != nil {
		t.Fatalf("Start(off) = %v, %v; want nil, nil", tr, err)
	}
	// Every method of a nil Tracing is a no-op.
	h := nats.Header{}
	ctx, span := tr.Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Fatal("a nil Tracing started a real span")
	}
	tr.Inject(ctx, h)
	if len(h) != 0 {
		t.Fatalf("a nil Tracing wrote headers: %v", h)
	}
	h.Set(HeaderTraceParent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	if got := tr.Extract(ctx, h); trace.SpanContextFromContext(got).IsValid() {
		t.Fatal("a nil Tracing read a traceparent")
	}
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNATSHeaderKeysExact(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	in := nats.Header{}
	// A raw `nats pub -H traceparent:…` writes the key as typed.
	in[HeaderTraceParent] = []string{parent}
	in[HeaderTraceState] = []string{"vendor=abc"}
	ctx := tr.Extract(context.Background(), in)
	ctx, span := tr.Start(ctx, "child")
	span.End()
	out := nats.Header{}
	tr.Inject(ctx, out)
	if len(out[HeaderTraceParent]) != 1 || out["Traceparent"] != nil {
		t.Fatalf("injected header keys %v, want exactly %q", out, HeaderTraceParent)
	}
	got := out[HeaderTraceParent][0]
	if !strings.HasPrefix(got, "00-0af7651916cd43dd8448eb211c80319c-") || got == parent {
		t.Fatalf("traceparent %q: want the same trace id and the child's span id", got)
	}
	if out[HeaderTraceState][0] != "vendor=abc" {
		t.Fatalf("tracestate %v not carried within Hookline", out[HeaderTraceState])
	}
	spans := rec.Ended()
	if len(spans) != 1 || spans[0].Parent().SpanID().String() != "b7ad6b7169203331" {
		t.Fatalf("span's parent: %v", spans)
	}

	// The webhook gets the traceparent only.
	hh := http.Header{}
	tr.InjectTraceParent(ctx, hh)
	if hh.Get("Traceparent") != got || hh.Get("Tracestate") != "" {
		t.Fatalf("webhook headers %v: want traceparent %q and no tracestate", hh, got)
	}
}

func TestExtractIgnoresGarbage(t *testing.T) {
	t.Parallel()
	tr := New(sdktrace.NewTracerProvider())
	for _, v := range []string{"", "garbage", "00-00000000000000000000000000000000-b7ad6b7169203331-01", strings.Repeat("0", 9000)} {
		ctx := tr.Extract(context.Background(), nats.Header{HeaderTraceParent: {v}})
		if trace.SpanContextFromContext(ctx).IsValid() {
			t.Fatalf("traceparent %.40q accepted", v)
		}
	}
}

// A caller's oversized tracestate is not carried into NATS (it would be
// copied into every task of the event); the traceparent is.
func TestLongTraceStateIsDropped(t *testing.T) {
	t.Parallel()
	tr := New(sdktrace.NewTracerProvider())
	var members []string
	for i := range 30 {
		members = append(members, fmt.Sprintf("vendor%02d=%s", i, strings.Repeat("x", 40)))
	}
	in := http.Header{}
	in.Set("Traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	in.Set("Tracestate", strings.Join(members, ","))
	ctx := tr.ExtractHTTP(context.Background(), in)
	if ts := trace.SpanContextFromContext(ctx).TraceState().String(); len(ts) <= MaxTraceState {
		t.Fatalf("the propagator kept only %d bytes of tracestate: the test needs a longer one", len(ts))
	}
	out := nats.Header{}
	tr.Inject(ctx, out)
	if _, ok := out[HeaderTraceState]; ok || len(out[HeaderTraceParent]) != 1 {
		t.Fatalf("header %v: want a traceparent and no tracestate", out)
	}
}

func TestTraceIDOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, v, want string }{
		{"valid", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "0af7651916cd43dd8448eb211c80319c"},
		{"upper case", "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", ""},
		{"zero trace", "00-00000000000000000000000000000000-b7ad6b7169203331-01", ""},
		{"short", "00-0af7651916cd43dd-b7ad6b7169203331-01", ""},
		{"garbage of the right length", strings.Repeat("x", 55), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := TraceIDOf(map[string][]string{HeaderTraceParent: {tc.v}}); got != tc.want {
				t.Fatalf("TraceIDOf(%q) = %q, want %q", tc.v, got, tc.want)
			}
		})
	}
	if TraceIDOf(nil) != "" {
		t.Fatal("a nil header has a trace id")
	}
}

// Interval records a span over a wait measured after the fact: its times
// as given, its parent the span the NATS header carries, its attributes;
// off (nil) it does nothing.
func TestIntervalIsAChildOfTheHeadersSpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tr := New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	h := nats.Header{HeaderTraceParent: {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	tr.Interval(context.Background(), h, "admission wait", start, start.Add(1500*time.Millisecond), AttrSubscriptionID.String("sub_1"))
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "admission wait" || s.SpanContext().TraceID().String() != "0af7651916cd43dd8448eb211c80319c" ||
		s.Parent().SpanID().String() != "b7ad6b7169203331" || !s.StartTime().Equal(start) || s.EndTime().Sub(s.StartTime()) != 1500*time.Millisecond {
		t.Fatalf("span %s trace %s parent %s from %s to %s", s.Name(), s.SpanContext().TraceID(), s.Parent().SpanID(), s.StartTime(), s.EndTime())
	}
	if len(s.Attributes()) != 1 || s.Attributes()[0] != AttrSubscriptionID.String("sub_1") {
		t.Fatalf("attributes %v", s.Attributes())
	}
	var off *Tracing
	off.Interval(context.Background(), h, "admission wait", start, start) // no panic, nothing recorded
}
