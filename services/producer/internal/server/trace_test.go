package server_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/services/producer/internal/server"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerSpan  = "00f067aa0ba902b7"
)

func (e *env) postTraced(path, body, traceparent string) response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("Traceparent", traceparent)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return response{Status: resp.StatusCode}
}

func named(spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	return nil
}

// TestPublishContinuesTheCallersTrace: POST /v1/events with a traceparent
// is a server span under the caller's, the publish a producer span under
// it, and the event stored in EVENTS carries the publish span's context
// in its traceparent header (lower case, exactly), where dispatch picks
// it up. A batch carries its span's context in every event.
func TestPublishContinuesTheCallersTrace(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := start(t, nil, server.WithTracing(tracing.New(tp)))

	expect(t, e.postTraced("/v1/events", `{"tenant":"acme","type":"order.created","id":"evt_t1","data":{}}`,
		"00-"+callerTrace+"-"+callerSpan+"-01"), http.StatusAccepted)
	spans := rec.Ended()
	srv, send := named(spans, "POST /v1/events"), named(spans, "send "+stream.Events)
	if srv == nil || send == nil {
		t.Fatalf("spans %v: want the server span and the send span", spans)
	}
	if srv.SpanKind() != trace.SpanKindServer || srv.SpanContext().TraceID().String() != callerTrace || srv.Parent().SpanID().String() != callerSpan {
		t.Fatalf("server span %s in trace %s under %s: want the caller's trace and span", srv.SpanKind(), srv.SpanContext().TraceID(), srv.Parent().SpanID())
	}
	if send.SpanKind() != trace.SpanKindProducer || send.Parent().SpanID() != srv.SpanContext().SpanID() {
		t.Fatalf("send span %s under %s, want a producer span under the server span", send.SpanKind(), send.Parent().SpanID())
	}
	eventually(t, "the access log line of POST /v1/events with trace_id "+callerTrace, func() bool {
		for _, en := range e.logs.FilterMessage("http request").All() {
			if en.ContextMap()["route"] == "POST /v1/events" && en.ContextMap()["trace_id"] == callerTrace {
				return true
			}
		}
		return false
	})
	m := e.lastMsg(stream.Events, stream.EventSubject("acme", "order.created"))
	want := "00-" + callerTrace + "-" + send.SpanContext().SpanID().String() + "-01"
	if got := m.Header[stream.HeaderTraceParent]; len(got) != 1 || got[0] != want {
		t.Fatalf("stored event's traceparent %v (header %v), want %s", got, m.Header, want)
	}

	// Without a caller's traceparent the producer starts the trace.
	expect(t, e.postTraced("/v1/events/batch", `{"events":[{"tenant":"acme","type":"order.paid","data":{}},{"tenant":"acme","type":"order.shipped","data":{}}]}`, ""),
		http.StatusAccepted)
	var batch sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "send "+stream.Events && s.SpanContext().TraceID().String() != callerTrace {
			batch = s
		}
	}
	if batch == nil {
		t.Fatal("no send span of the batch in a new trace")
	}
	for _, typ := range []string{"order.paid", "order.shipped"} {
		m := e.lastMsg(stream.Events, stream.EventSubject("acme", typ))
		if got := m.Header[stream.HeaderTraceParent]; len(got) != 1 || !strings.Contains(got[0], batch.SpanContext().SpanID().String()) {
			t.Fatalf("%s traceparent %v, want the batch span %s", typ, got, batch.SpanContext().SpanID())
		}
	}
	// Probes are not traced.
	if r := e.do(http.MethodGet, "/readyz", nil); r.Status != http.StatusOK {
		t.Fatal(r.Status)
	}
	for _, s := range rec.Ended() {
		if strings.Contains(s.Name(), "readyz") {
			t.Fatalf("a probe was traced: %s", s.Name())
		}
	}
	_ = tp.Shutdown(context.Background())
}

// TestTracingOffWritesNoTraceHeader: by default the producer neither
// continues a caller's trace nor writes a traceparent.
func TestTracingOffWritesNoTraceHeader(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	expect(t, e.postTraced("/v1/events", `{"tenant":"acme","type":"order.created","data":{}}`,
		"00-"+callerTrace+"-"+callerSpan+"-01"), http.StatusAccepted)
	m := e.lastMsg(stream.Events, stream.EventSubject("acme", "order.created"))
	if v, ok := m.Header[stream.HeaderTraceParent]; ok {
		t.Fatalf("tracing off, yet the event carries traceparent %v", v)
	}
}
