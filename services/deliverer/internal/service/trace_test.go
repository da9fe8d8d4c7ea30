package service_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// The producer's span, as its traceparent reaches NATS.
const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

// traced starts the service with an in-memory span recorder.
func traced(t *testing.T, overrides map[string]string) (*env, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return startTraced(t, overrides, tracing.New(tp)), rec
}

// publishTraced publishes an event as the producer does with tracing on.
func (e *env) publishTraced(t *testing.T, eventType, id string) {
	t.Helper()
	h := nats.Header{}
	h.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, id))
	h[stream.HeaderTraceParent] = []string{"00-" + producerTrace + "-" + producerSpan + "-01"}
	h[stream.HeaderTraceState] = []string{"platform=internal"}
	e.publishRaw(t, stream.EventSubject(tenant, eventType), h, `{"n":1}`)
}

func spansNamed(spans []sdktrace.ReadOnlySpan, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func attr(s sdktrace.ReadOnlySpan, key string) string {
	for _, a := range s.Attributes() {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// TestTraceAcrossDispatchAndAttempts: the publisher's trace continues in
// the fan-out span, each attempt (the first, failed, and its retry) is an
// HTTP client span under it, and the endpoint receives the attempt span's
// traceparent. No secret — signing secret, URL credential, query token,
// custom header value — lands in any span.
func TestTraceAcrossDispatchAndAttempts(t *testing.T) {
	t.Parallel()
	key, box := sealingKey(t)
	e, rec := traced(t, map[string]string{"HOOKLINE_SECRET_KEY": key})
	r := newReceiver(t, func(n int) int {
		if n == 1 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	full := strings.Replace(r.srv.URL, "http://", "http://hook-user:pa55word-url@", 1) + "/in/p4th-s3cret?token=s3cret-query"
	masked, sealedURL, err := subscription.SealURL(box, full)
	if err != nil {
		t.Fatal(err)
	}
	headers, err := subscription.SealHeaders(box, map[string]string{"Authorization": "Bearer h3ader-s3cret"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub, secret := e.subscribe(t, masked, "order.*")
	e.update(t, sub.GetId(), func(s *hooklinev1.Subscription) { s.SealedUrl, s.Headers = sealedURL, headers })
	e.publishTraced(t, "order.created", "evt_traced")
	eventually(t, await, "a failed attempt and its successful retry", func() bool { return r.count() >= 2 })
	eventually(t, await, "the second attempt's span to end", func() bool {
		return len(spansNamed(rec.Ended(), "POST")) >= 2
	})

	spans := rec.Ended()
	dispatch := spansNamed(spans, "process "+stream.Events)
	if len(dispatch) != 1 {
		t.Fatalf("want one fan-out span, got %d", len(dispatch))
	}
	d := dispatch[0]
	if d.SpanContext().TraceID().String() != producerTrace || d.Parent().SpanID().String() != producerSpan || !d.Parent().IsRemote() {
		t.Fatalf("fan-out span %s parent %s: want trace %s under the producer's span %s",
			d.SpanContext().TraceID(), d.Parent().SpanID(), producerTrace, producerSpan)
	}
	if d.SpanKind() != trace.SpanKindConsumer || attr(d, "hookline.event.id") != "evt_traced" || attr(d, "hookline.subscriptions") != "1" {
		t.Fatalf("fan-out span kind %s attributes %v", d.SpanKind(), d.Attributes())
	}

	attempts := spansNamed(spans, "POST")
	reqs := r.requests()
	for i, a := range attempts[:2] {
		if a.SpanKind() != trace.SpanKindClient || a.Parent().SpanID() != d.SpanContext().SpanID() {
			t.Fatalf("attempt %d: kind %s parent %s, want a client span under the fan-out %s", i+1, a.SpanKind(), a.Parent().SpanID(), d.SpanContext().SpanID())
		}
		if got, want := attr(a, "hookline.attempt"), fmt.Sprint(i+1); got != want {
			t.Fatalf("attempt span %d has hookline.attempt %s", i+1, got)
		}
		wantStatus := []string{"500", "200"}[i]
		if got := attr(a, "http.response.status_code"); got != wantStatus {
			t.Fatalf("attempt %d status attribute %q, want %s", i+1, got, wantStatus)
		}
		if attr(a, "server.address") != "127.0.0.1" || attr(a, "server.port") == "" || attr(a, "hookline.subscription.id") != sub.GetId() {
			t.Fatalf("attempt %d attributes %v", i+1, a.Attributes())
		}
		// The receiver joins the trace: the attempt span is its parent.
		want := "00-" + producerTrace + "-" + a.SpanContext().SpanID().String() + "-01"
		if got := reqs[i].header.Get("Traceparent"); got != want {
			t.Fatalf("request %d traceparent %q, want %q", i+1, got, want)
		}
		if reqs[i].header.Get("Tracestate") != "" {
			t.Fatalf("request %d carries the platform's tracestate %q to a third party", i+1, reqs[i].header.Get("Tracestate"))
		}
	}
	if attempts[0].Status().Code.String() != "Error" || attr(attempts[0], "error.type") != "http_status" {
		t.Fatalf("failed attempt span status %v error.type %q", attempts[0].Status(), attr(attempts[0], "error.type"))
	}

	for _, s := range spans {
		for _, a := range s.Attributes() {
			v := a.Value.String()
			for _, secretText := range []string{secret, "pa55word-url", "hook-user", "s3cret-query", "p4th-s3cret", "h3ader-s3cret", "Bearer"} {
				if strings.Contains(v, secretText) {
					t.Fatalf("span %q attribute %s holds a secret: %q", s.Name(), a.Key, v)
				}
			}
			if a.Key == "url.full" || a.Key == "url.path" || a.Key == "url.query" {
				t.Fatalf("span %q records %s", s.Name(), a.Key)
			}
		}
		for _, ev := range s.Events() {
			for _, a := range ev.Attributes {
				if strings.Contains(a.Value.String(), "s3cret") {
					t.Fatalf("span %q event %q holds a secret", s.Name(), ev.Name)
				}
			}
		}
	}

	// The failed attempt's log line names the trace.
	logged := false
	for _, en := range e.logs.FilterMessage("attempt").All() {
		if en.ContextMap()["status"] == int64(500) {
			logged = en.ContextMap()["trace_id"] == producerTrace
		}
	}
	if !logged {
		t.Fatalf("the failed attempt's log line has no trace_id %s: %v", producerTrace, e.logs.FilterMessage("attempt").All())
	}

	// One end-to-end latency: the success, not the failed attempt.
	if n := testutil.CollectAndCount(e.svc.Registry, "hookline_delivery_latency_seconds"); n != 1 {
		t.Fatalf("latency families %d", n)
	}
	if got := histogramCount(t, e, "hookline_delivery_latency_seconds"); got != 1 {
		t.Fatalf("hookline_delivery_latency_seconds count %d, want 1 (the successful retry)", got)
	}
}

// TestTracingOffSendsNoTraceparent: by default nothing is read from or
// written to a trace header: an event's traceparent does not reach the
// endpoint.
func TestTracingOffSendsNoTraceparent(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	r := newReceiver(t, always(http.StatusOK))
	e.subscribe(t, r.URL(), "order.*")
	e.publishTraced(t, "order.created", "evt_untraced")
	eventually(t, await, "the delivery", func() bool { return r.count() == 1 })
	if got := r.requests()[0].header.Get("Traceparent"); got != "" {
		t.Fatalf("tracing off, yet the endpoint got traceparent %q", got)
	}
}

func histogramCount(t *testing.T, e *env, name string) uint64 {
	t.Helper()
	mfs, err := e.svc.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no %s", name)
	return 0
}

// TestReplayJoinsTheTrace: a delivery dead-lettered after its retries and
// replayed days later (here: at once) is attempted in the event's trace,
// under the same fan-out, and the endpoint receives that trace id.
func TestReplayJoinsTheTrace(t *testing.T) {
	t.Parallel()
	e, rec := traced(t, nil)
	var up atomic.Bool
	r := newReceiver(t, func(int) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusInternalServerError
	})
	e.subscribe(t, r.URL(), "order.*")
	e.publishTraced(t, "order.created", "evt_replayed")
	eventually(t, await, "the dead letter", func() bool { return len(e.deadLetters(t)) == 1 })
	dl := e.deadLetters(t)[0]
	if got := dl.Header[stream.HeaderTraceParent]; len(got) != 1 || !strings.Contains(got[0], producerTrace) {
		t.Fatalf("dead letter traceparent %v, want the event's trace", got)
	}
	up.Store(true)
	if _, err := replay.Ask(t.Context(), e.nc, dl.Sequence); err != nil {
		t.Fatal(err)
	}
	eventually(t, await, "the replayed delivery", func() bool { return r.count() == 4 })
	last := r.requests()[3]
	if got := last.header.Get("Traceparent"); !strings.HasPrefix(got, "00-"+producerTrace+"-") {
		t.Fatalf("replayed delivery's traceparent %q, want the event's trace %s", got, producerTrace)
	}
	eventually(t, await, "the replay attempt's span", func() bool {
		for _, s := range spansNamed(rec.Ended(), "POST") {
			if attr(s, "hookline.replay") != "" && attr(s, "http.response.status_code") == "200" {
				return s.SpanContext().TraceID().String() == producerTrace
			}
		}
		return false
	})
	dispatch := spansNamed(rec.Ended(), "process "+stream.Events)
	dead := spansNamed(rec.Ended(), "send "+stream.DeadLetter)
	if len(dead) != 1 || dead[0].Parent().SpanID() != dispatch[0].SpanContext().SpanID() ||
		attr(dead[0], "hookline.dead_letter.reason") != "attempts_exhausted" {
		t.Fatalf("dead-letter spans %v: want one under the fan-out, reason attempts_exhausted", dead)
	}
	// The replay is a span under the fan-out, and its attempt is under
	// the replay; the first delivery's attempts are under the fan-out.
	replays := spansNamed(rec.Ended(), "replay")
	if len(replays) != 1 || replays[0].Parent().SpanID() != dispatch[0].SpanContext().SpanID() ||
		attr(replays[0], "hookline.replay") != strconv.FormatUint(dl.Sequence, 10) || attr(replays[0], "hookline.outcome") != "replayed" {
		t.Fatalf("replay spans %v: want one under the fan-out, for DEADLETTER seq %d, replayed", replays, dl.Sequence)
	}
	for _, s := range spansNamed(rec.Ended(), "POST") {
		parent := dispatch[0].SpanContext().SpanID()
		if attr(s, "hookline.replay") != "" {
			parent = replays[0].SpanContext().SpanID()
		}
		if s.Parent().SpanID() != parent {
			t.Fatalf("attempt %s (replay %q) is not under the fan-out or, replayed, under the replay", attr(s, "hookline.attempt"), attr(s, "hookline.replay"))
		}
	}
}
