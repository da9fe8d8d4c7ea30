package sender_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

func newSender(t *testing.T, o sender.Options) *sender.Sender {
	t.Helper()
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxResponseBytes == 0 {
		o.MaxResponseBytes = 64 << 10
	}
	if o.DialControl == nil {
		o.DialControl = ssrf.Policy{Allow: loopback}.Control
	}
	o.UserAgent = "Hookline/test"
	s := sender.New(o)
	t.Cleanup(s.Close)
	return s
}

func server(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// block holds a handler until the client goes away or the test ends.
func block(t *testing.T, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body) // lets the server notice a closed connection
	select {
	case <-r.Context().Done():
	case <-t.Context().Done():
	}
}

func request(url string) sender.Request {
	return sender.Request{
		URL: url, ID: "evt_1", Timestamp: time.Unix(1700000000, 0),
		Signature: "v1,c2lnbmF0dXJl", Body: []byte(`{"order":1}`),
	}
}

func TestSendHeadersAndBody(t *testing.T) {
	t.Parallel()
	type seen struct {
		method string
		h      http.Header
		body   string
	}
	got := make(chan seen, 1)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header.Clone(), string(b)}
		w.WriteHeader(http.StatusNoContent)
	})
	res := newSender(t, sender.Options{}).Send(context.Background(), request(srv.URL+"/hook"))
	if !res.OK() || res.Status != 204 || res.ErrorClass != "" || res.Err != nil {
		t.Fatalf("result %+v", res)
	}
	s := <-got
	want := map[string]string{
		"Webhook-Id":        "evt_1",
		"Webhook-Timestamp": "1700000000",
		"Webhook-Signature": "v1,c2lnbmF0dXJl",
		"Content-Type":      "application/json",
		"User-Agent":        "Hookline/test",
	}
	for k, v := range want {
		if s.h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, s.h.Get(k), v)
		}
	}
	if s.method != http.MethodPost || s.body != `{"order":1}` {
		t.Errorf("got %s %q", s.method, s.body)
	}
	if _, ok := s.h["Hookline-Ordering-Key"]; ok {
		t.Error("an unordered attempt carries Hookline-Ordering-Key")
	}
}

func TestSendOrderingHeaders(t *testing.T) {
	t.Parallel()
	got := make(chan http.Header, 1)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	})
	req := request(srv.URL + "/hook")
	req.OrderingKey, req.OrderingSeq = "order 42", 7
	if res := newSender(t, sender.Options{}).Send(context.Background(), req); !res.OK() {
		t.Fatalf("result %+v", res)
	}
	h := <-got
	if h.Get("Hookline-Ordering-Key") != "order 42" || h.Get("Hookline-Ordering-Sequence") != "7" {
		t.Fatalf("ordering headers %q %q", h.Get("Hookline-Ordering-Key"), h.Get("Hookline-Ordering-Sequence"))
	}
}

func TestSendDoesNotFollowRedirects(t *testing.T) {
	t.Parallel()
	var followed atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/elsewhere", func(w http.ResponseWriter, _ *http.Request) { followed.Add(1) })
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
	})
	srv := server(t, mux.ServeHTTP)
	res := newSender(t, sender.Options{}).Send(context.Background(), request(srv.URL+"/hook"))
	if res.OK() || res.Status != http.StatusTemporaryRedirect || res.ErrorClass != sender.ClassRedirect {
		t.Fatalf("result %+v, want a failed 307 of class redirect", res)
	}
	if n := followed.Load(); n != 0 {
		t.Fatalf("redirect followed %d times", n)
	}
}

func TestSendRetryAfter(t *testing.T) {
	t.Parallel()
	date := time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)
	tests := []struct {
		name       string
		status     int
		header     string
		atLeast    time.Duration
		atMost     time.Duration
		wantStatus int
	}{
		{"429 seconds", 429, "120", 120 * time.Second, 120 * time.Second, 429},
		{"503 http date", 503, date, 2*time.Hour - time.Minute, 2 * time.Hour, 503},
		{"500 ignores it", 500, "120", 0, 0, 500},
		{"429 garbage", 429, "soon", 0, 0, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := server(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Retry-After", tt.header)
				w.WriteHeader(tt.status)
			})
			res := newSender(t, sender.Options{}).Send(context.Background(), request(srv.URL))
			if res.Status != tt.wantStatus || res.ErrorClass != sender.ClassHTTPStatus {
				t.Fatalf("result %+v", res)
			}
			if res.RetryAfter < tt.atLeast || res.RetryAfter > tt.atMost {
				t.Fatalf("RetryAfter %s, want in [%s, %s]", res.RetryAfter, tt.atLeast, tt.atMost)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name, v string
		want    time.Duration
	}{
		{"seconds", "30", 30 * time.Second},
		{"spaces", " 7 ", 7 * time.Second},
		{"zero", "0", 0},
		{"negative", "-5", 0},
		{"empty", "", 0},
		{"garbage", "later", 0},
		{"imf date", now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{"rfc850 date", now.Add(time.Hour).Format(time.RFC850), time.Hour},
		{"past date", now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"huge", "99999999999999999", time.Duration(int64(1<<63-1)/int64(time.Second)) * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := sender.ParseRetryAfter(tt.v, now); got != tt.want {
				t.Fatalf("ParseRetryAfter(%q) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
}

func TestSendExcerptIsCappedAndValidUTF8(t *testing.T) {
	t.Parallel()
	// "é" is two bytes; one leading "a" makes byte 256 fall inside one.
	body := "a" + strings.Repeat("é", 100000)
	srv := server(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(500)
		_, _ = io.WriteString(w, body)
	})
	res := newSender(t, sender.Options{MaxResponseBytes: 1024}).Send(context.Background(), request(srv.URL))
	if res.Status != 500 {
		t.Fatalf("result %+v", res)
	}
	if len(res.Excerpt) > sender.ExcerptBytes || len(res.Excerpt) < sender.ExcerptBytes-1 || !utf8.ValidString(res.Excerpt) {
		t.Fatalf("excerpt of %d bytes, valid %v", len(res.Excerpt), utf8.ValidString(res.Excerpt))
	}
	if !strings.HasPrefix(body, res.Excerpt) {
		t.Fatalf("excerpt is not the start of the body")
	}
}

func TestSendErrorClasses(t *testing.T) {
	t.Parallel()
	hang := server(t, func(w http.ResponseWriter, r *http.Request) { block(t, r) })
	reset := server(t, func(w http.ResponseWriter, _ *http.Request) {
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			_ = c.Close()
		}
	})
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(tlsSrv.Close)
	closedPort := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		_ = l.Close()
		return addr
	}()
	ok := server(t, func(w http.ResponseWriter, _ *http.Request) {})

	tests := []struct {
		name  string
		url   string
		opts  sender.Options
		class string
	}{
		{"timeout", hang.URL, sender.Options{Timeout: 200 * time.Millisecond}, sender.ClassTimeout},
		{"connection refused", "http://" + closedPort + "/x?token=s3cret", sender.Options{}, sender.ClassConnectionRefused},
		{"connection reset", reset.URL, sender.Options{}, sender.ClassConnectionReset},
		{"tls unknown authority", tlsSrv.URL, sender.Options{}, sender.ClassTLS},
		{"dns", "http://no-such-host.invalid/hook", sender.Options{DialControl: func(string, string, syscall.RawConn) error { return nil }}, sender.ClassDNS},
		{"blocked loopback", ok.URL + "/?token=s3cret", sender.Options{DialControl: ssrf.Policy{}.Control}, sender.ClassBlocked},
		{"blocked by any guard", ok.URL, sender.Options{DialControl: func(string, string, syscall.RawConn) error { return errors.New("no") }}, sender.ClassBlocked},
		{"bad scheme", "ftp://user:pw@example.com/?token=s3cret", sender.Options{}, sender.ClassInvalidURL},
		{"no host", "http:///path", sender.Options{}, sender.ClassInvalidURL},
		{"unparsable", "http://exa mple.com/?token=s3cret", sender.Options{}, sender.ClassInvalidURL},
		{"http with https only", ok.URL + "/?token=s3cret", sender.Options{HTTPSOnly: true}, sender.ClassInvalidURL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := newSender(t, tt.opts).Send(context.Background(), request(tt.url))
			if res.OK() || res.ErrorClass != tt.class || res.Err == nil || res.Status != 0 {
				t.Fatalf("result %+v (err %v), want class %s", res, res.Err, tt.class)
			}
			if msg := res.Err.Error(); strings.Contains(msg, "s3cret") || strings.Contains(msg, "pw@") {
				t.Fatalf("error leaks the URL's query or userinfo: %s", msg)
			}
			if msg := res.Err.Error(); tt.class == sender.ClassBlocked && strings.Contains(msg, "127.0.0.1") {
				t.Fatalf("blocked error names the address: %s", msg)
			}
		})
	}
}

func TestSendTLSWithTrustedRoot(t *testing.T) {
	t.Parallel()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	res := newSender(t, sender.Options{RootCAs: pool}).Send(context.Background(), request(srv.URL))
	if !res.OK() {
		t.Fatalf("result %+v", res)
	}
}

func TestSendCanceled(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		close(started)
		block(t, r)
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-started; cancel() }()
	res := newSender(t, sender.Options{}).Send(ctx, request(srv.URL))
	if res.ErrorClass != sender.ClassCanceled || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("result %+v", res)
	}
}

// An endpoint that closes a kept-alive connection as the next request
// arrives (its idle timeout racing our reuse) costs no attempt: the
// request is resent on a new connection, and the endpoint answers it.
func TestSendResendsWhenKeptAliveConnectionWasClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	var (
		mu       sync.Mutex
		answered []int // connection number of each answered request
		leaked   atomic.Bool
	)
	go func() {
		for n := 1; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(n int, c net.Conn) {
				defer c.Close()
				br := bufio.NewReader(c)
				for i := 0; ; i++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if _, sent := req.Header["Idempotency-Key"]; sent {
						leaked.Store(true)
					}
					if n == 1 && i == 1 {
						return // the first connection's second request: closed unanswered
					}
					mu.Lock()
					answered = append(answered, n)
					mu.Unlock()
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			}(n, c)
		}
	}()
	s := newSender(t, sender.Options{})
	url := "http://" + ln.Addr().String() + "/hook"
	for i := range 2 {
		if res := s.Send(context.Background(), request(url)); !res.OK() {
			t.Fatalf("send %d: %+v; want 200", i+1, res)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(answered) != 2 || answered[0] != 1 || answered[1] != 2 {
		t.Fatalf("answered on connections %v; want [1 2] (the second resent on a new connection)", answered)
	}
	if leaked.Load() {
		t.Fatal("an Idempotency-Key header went on the wire; it only marks the request resendable")
	}
}

func TestSendInformativeAndCustomHeaders(t *testing.T) {
	t.Parallel()
	got := make(chan http.Header, 1)
	srv := server(t, func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	})
	req := request(srv.URL + "/hook")
	req.EventType, req.OccurredAt, req.Attempt, req.SubscriptionID = "order.paid", "2026-01-02T15:04:05Z", 3, "sub_1"
	// A custom header may not replace one Hookline sends, even if a record
	// holding one slipped past validation.
	req.Headers = map[string]string{"x-api-key": "k3y", "Authorization": "Bearer t0k", "webhook-id": "forged", "Content-Type": "text/plain"}
	if res := newSender(t, sender.Options{}).Send(context.Background(), req); !res.OK() {
		t.Fatalf("result %+v", res)
	}
	h := <-got
	want := map[string]string{
		"Hookline-Event-Type":      "order.paid",
		"Hookline-Occurred-At":     "2026-01-02T15:04:05Z",
		"Hookline-Attempt":         "3",
		"Hookline-Subscription-Id": "sub_1",
		"X-Api-Key":                "k3y",
		"Authorization":            "Bearer t0k",
		"Webhook-Id":               "evt_1",
		"Content-Type":             "application/json",
	}
	for k, v := range want {
		if vs := h.Values(k); len(vs) != 1 || vs[0] != v {
			t.Errorf("header %s = %q, want [%q]", k, vs, v)
		}
	}
}
