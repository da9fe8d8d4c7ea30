package server_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/server"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	expect(t, e.do("POST", "/v1/events", `{"tenant":"acme","type":"a","data":1,"id":"m1"}`), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events", `{"tenant":"acme","type":"a","data":1,"id":"m1"}`), http.StatusAccepted)
	expect(t, e.do("POST", "/v1/events", `{"tenant":"acme"}`), http.StatusUnprocessableEntity)
	expect(t, e.do("GET", "/v1/subscriptions/sub_x", nil), http.StatusNotFound)
	expect(t, e.do("GET", "/nowhere/"+strings.Repeat("x", 10), nil), http.StatusNotFound)
	r := e.do("GET", "/metrics", nil)
	expect(t, r, http.StatusOK)
	body := string(r.Body)
	for _, want := range []string{
		`hookline_http_requests_total{code="202",route="POST /v1/events"} 2`,
		`hookline_http_requests_total{code="422",route="POST /v1/events"} 1`,
		`hookline_http_requests_total{code="404",route="GET /v1/subscriptions/{id}"} 1`,
		`hookline_http_requests_total{code="404",route="/"} 1`,
		`hookline_events_published_total{result="accepted"} 1`,
		`hookline_events_published_total{result="duplicate"} 1`,
		`hookline_events_published_total{result="failed"} 0`,
		`hookline_http_request_duration_seconds_count{route="POST /v1/events"} 3`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, "sub_x") || strings.Contains(body, "nowhere") {
		t.Error("a metric label holds a request path or id")
	}
}

func TestAccessLog(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	req, _ := http.NewRequest("POST", e.base+"/v1/events?token=querysecret",
		strings.NewReader(`{"tenant":"acme","type":"a","data":{"card":"bodysecret"}}`))
	req.Header.Set("Authorization", "Bearer tokensecret")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	expect(t, response{Status: resp.StatusCode}, http.StatusAccepted)
	lines := e.logs.FilterMessage("http request").FilterField(zapString("route", "POST /v1/events")).All()
	if len(lines) != 1 {
		t.Fatalf("%d access log lines for one request", len(lines))
	}
	f := lines[0].ContextMap()
	if f["method"] != "POST" || f["status"] != int64(202) || f["duration_s"] == nil {
		t.Fatalf("access log fields %v", f)
	}
	for _, entry := range e.logs.All() {
		line := entry.Message + " " + stringify(entry.ContextMap())
		for _, secret := range []string{"querysecret", "bodysecret", "tokensecret"} {
			if strings.Contains(line, secret) {
				t.Fatalf("log line leaks %s: %s", secret, line)
			}
		}
	}
}

// TestGracefulShutdown: a request in flight when the signal comes is
// answered; new connections are refused; Run returns nil.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	entered, release := make(chan struct{}), make(chan struct{})
	hold := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("X-Hold") != "" {
				close(entered)
				<-release
			}
			next.ServeHTTP(w, r)
		})
	}
	e := start(t, nil, server.WithV1Middleware(hold))
	answer := make(chan response, 1)
	go func() {
		req, _ := http.NewRequest("POST", e.base+"/v1/events", strings.NewReader(`{"tenant":"acme","type":"slow","data":1}`))
		req.Header.Set("X-Hold", "1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			answer <- response{Status: -1}
			return
		}
		resp.Body.Close()
		answer <- response{Status: resp.StatusCode}
	}()
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- e.stop() }()
	// The listener closes while the request is held.
	eventually(t, "listener closed", func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(e.base, "http://"), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	close(release)
	if r := <-answer; r.Status != http.StatusAccepted {
		t.Fatalf("in-flight request answered %d, want 202", r.Status)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := e.msgs(stream.Events); n != 1 {
		t.Fatalf("in-flight event not stored: %d", n)
	}
}

// TestReadyOnlyWithNATS: the listener is up (livez) before NATS is, and
// readyz says so.
func TestReadyOnlyWithNATS(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadURL := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	e := startOn(t, deadURL, rs.Addr, nil)
	expect(t, e.do("GET", "/livez", nil), http.StatusOK)
	expect(t, e.do("GET", "/readyz", nil), http.StatusServiceUnavailable)
	r := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://example.com","event_types":["a"]}`)
	expect(t, r, http.StatusServiceUnavailable)
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
}

// With authentication off (a developer's machine) a web page must not be
// able to drive the API: a DNS-rebinding page arrives under its own Host,
// a cross-site fetch carries its Origin, and a form post cannot send JSON.
func TestLocalModeAnswersOnlyLocalJSONRequests(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	body := `{"tenant":"acme","type":"a","data":{}}`
	send := func(host, origin, contentType string) int {
		req, _ := http.NewRequest("POST", e.base+"/v1/events", strings.NewReader(body))
		if host != "" {
			req.Host = host
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name, host, origin, contentType string
		want                            int
	}{
		{"loopback address", "", "", "application/json", http.StatusAccepted},
		{"localhost", "localhost:8080", "http://localhost:3000", "application/json", http.StatusAccepted},
		{"ipv6 loopback", "[::1]:8080", "", "application/json", http.StatusAccepted},
		{"rebinding host", "evil.example:8080", "", "application/json", http.StatusForbidden},
		{"cross-site origin", "", "https://evil.example", "application/json", http.StatusForbidden},
		{"form post without a JSON type", "", "", "", http.StatusUnsupportedMediaType},
	}
	for _, tt := range tests {
		if got := send(tt.host, tt.origin, tt.contentType); got != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, got, tt.want)
		}
	}
}
