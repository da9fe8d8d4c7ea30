package e2e

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/tests/harness"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// span is what the test keeps of an exported span.
type span struct {
	service, name             string
	traceID, spanID, parentID string
	attrs                     map[string]string
}

// collector is an OTLP/HTTP trace receiver on loopback: what a collector's
// port 4318 is to the services.
type collector struct {
	srv   *httptest.Server
	mu    sync.Mutex
	spans []span
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			http.Error(w, "not OTLP/HTTP protobuf traces", http.StatusBadRequest)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, convert(service, s))
			}
		}
	}
}

func convert(service string, s *tracepb.Span) span {
	attrs := map[string]string{}
	for _, a := range s.GetAttributes() {
		v := a.GetValue()
		switch {
		case v.GetStringValue() != "":
			attrs[a.GetKey()] = v.GetStringValue()
		default:
			attrs[a.GetKey()] = fmt.Sprint(v.GetIntValue())
		}
	}
	return span{
		service: service, name: s.GetName(),
		traceID: fmt.Sprintf("%x", s.GetTraceId()), spanID: fmt.Sprintf("%x", s.GetSpanId()),
		parentID: fmt.Sprintf("%x", s.GetParentSpanId()), attrs: attrs,
	}
}

// find returns the span of service named name in trace, if exported yet.
func (c *collector) find(trace, service, name string) (span, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.traceID == trace && s.service == service && s.name == name {
			return s, true
		}
	}
	return span{}, false
}

// TestOneTraceFromTheAPIToTheEndpoint: with OTEL_EXPORTER_OTLP_ENDPOINT
// set (and nothing else), the real producer and deliverer export one
// connected trace of an event published through the API with a caller's
// traceparent: the API's server span under the caller's, the publish
// under it, the fan-out in the deliverer under the publish, the attempt
// under the fan-out; and the endpoint receives the attempt's traceparent.
func TestOneTraceFromTheAPIToTheEndpoint(t *testing.T) {
	t.Parallel()
	col := newCollector(t)
	s := harness.NewStack(t, harness.StackOptions{DefaultSync: true, Env: harness.Env{
		"OTEL_EXPORTER_OTLP_ENDPOINT": col.srv.URL,
	}})
	got := make(chan string, 4)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("Traceparent")
	}))
	t.Cleanup(rcv.Close)
	ctx := t.Context()
	if _, err := s.API.CreateSubscription(ctx, "acme", rcv.URL+"/hook", []string{"order.traced"}); err != nil {
		t.Fatal(err)
	}
	const (
		callerTrace = "0af7651916cd43dd8448eb211c80319c"
		callerSpan  = "b7ad6b7169203331"
	)
	// The deliverer learns of the subscription from a KV watch: publish
	// until an event is delivered (each a new id, each its own trace
	// position under the same caller's trace).
	var traceparent string
	harness.Eventually(t, 30*time.Second, func() error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Producer.URL()+"/v1/events",
			strings.NewReader(`{"tenant":"acme","type":"order.traced","data":{"n":1}}`))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Traceparent", "00-"+callerTrace+"-"+callerSpan+"-01")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("publish: %d", resp.StatusCode)
		}
		select {
		case traceparent = <-got:
			return nil
		case <-time.After(2 * time.Second):
			return fmt.Errorf("not delivered yet")
		}
	})
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 || parts[1] != callerTrace {
		t.Fatalf("the endpoint got traceparent %q, want the caller's trace %s", traceparent, callerTrace)
	}

	// The batch span processor exports every few seconds.
	var api, send, dispatch, attempt span
	harness.Eventually(t, 30*time.Second, func() error {
		var ok [4]bool
		api, ok[0] = col.find(callerTrace, "hookline-producer", "POST /v1/events")
		send, ok[1] = col.find(callerTrace, "hookline-producer", "send EVENTS")
		dispatch, ok[2] = col.find(callerTrace, "hookline-deliverer", "process EVENTS")
		attempt, ok[3] = col.find(callerTrace, "hookline-deliverer", "POST")
		if ok != [4]bool{true, true, true, true} {
			col.mu.Lock()
			n := len(col.spans)
			col.mu.Unlock()
			return fmt.Errorf("spans exported so far (api, send, dispatch, attempt): %v of %d spans", ok, n)
		}
		return nil
	})
	for _, link := range []struct {
		child, parent string
		got, want     string
	}{
		{"API server span", "caller", api.parentID, callerSpan},
		{"send", "API server span", send.parentID, api.spanID},
		{"fan-out", "send", dispatch.parentID, send.spanID},
		{"attempt", "fan-out", attempt.parentID, dispatch.spanID},
	} {
		if link.got != link.want {
			t.Errorf("%s's parent is %s, want the %s (%s)", link.child, link.got, link.parent, link.want)
		}
	}
	if parts[2] != attempt.spanID {
		t.Errorf("the endpoint's traceparent names span %s, want the attempt %s", parts[2], attempt.spanID)
	}
	if attempt.attrs["http.response.status_code"] != "200" || attempt.attrs["hookline.attempt"] != "1" {
		t.Errorf("attempt span attributes %v", attempt.attrs)
	}
}
