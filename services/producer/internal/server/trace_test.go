package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
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

// A replay job's run is a span, the root of its own trace, that says
// which job it ran and how far it got.
func TestReplayJobRunIsASpan(t *testing.T) {
	t.Parallel()
	rec := tracetest.NewSpanRecorder()
	e := start(t, nil, server.WithTracing(tracing.New(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))))
	fixture.Replayer(t, e.nats)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 {
		if _, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: fmt.Sprintf("evt_%d", i), Tenant: "acme",
			SubscriptionId: "sub_A", EventType: "order.created", LastStatus: 503}); err != nil {
			t.Fatal(err)
		}
	}
	r := e.do("POST", "/v1/replays", `{"source":"dead_letters","subscription_id":"sub_A","rate":0}`)
	expect(t, r, http.StatusAccepted)
	id := r.json(t)["id"].(string)
	var job sdktrace.ReadOnlySpan
	eventually(t, "the replay job's span", func() bool {
		job = named(rec.Ended(), "replay job")
		return job != nil
	})
	attrs := map[string]string{}
	for _, a := range job.Attributes() {
		attrs[string(a.Key)] = a.Value.String()
	}
	if attrs["hookline.replay_job.id"] != id || attrs["hookline.replay_job.state"] != "done" || attrs["hookline.replay_job.done"] != "3" ||
		attrs["hookline.subscription.id"] != "sub_A" || job.Parent().IsValid() {
		t.Fatalf("replay job span: attributes %v, parent %v", attrs, job.Parent())
	}
}
