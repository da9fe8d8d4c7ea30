package harness

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/signing"
)

// post sends a signed webhook as the deliverer would.
func post(t *testing.T, c *http.Client, url, id, secret, body string) (*http.Response, error) {
	t.Helper()
	ts := time.Now()
	sig, err := signing.Sign(id, ts, []byte(body), secret)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("Content-Type", "application/json")
	return c.Do(req)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func newSecret(t *testing.T) string {
	t.Helper()
	s, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReceiverRecordsAndVerifies(t *testing.T) {
	t.Parallel()
	r := NewReceiver(t)
	ep := r.Endpoint("a")
	secret := newSecret(t)
	if err := ep.Bind("sub_a", secret); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	for range 2 {
		resp, err := post(t, c, ep.URL, "evt_1", secret, `{"n":1}`)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	// Signed with another secret: recorded, and flagged.
	resp, err := post(t, c, ep.URL, "evt_2", newSecret(t), `{"n":2}`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// No endpoint at this path.
	resp, err = c.Post(r.URL+"/hooks/nobody", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	s := ep.Stats()
	if s.Attempts != 3 || s.Delivered != 3 || s.Events != 2 || s.Duplicates != 1 {
		t.Fatalf("stats = %+v; want 3 attempts, 3 delivered, 2 events, 1 duplicate", s)
	}
	if len(s.BadSignatures) != 1 || !strings.HasPrefix(s.BadSignatures[0], "evt_2") {
		t.Fatalf("bad signatures = %v; want evt_2 only", s.BadSignatures)
	}
	if h := ep.Hits("evt_1"); h == nil || h.Delivered != 2 || string(h.Body) != `{"n":1}` {
		t.Fatalf("hits evt_1 = %+v", h)
	}
	if r.Strays() != 1 {
		t.Fatalf("strays = %d; want 1", r.Strays())
	}
}

func TestReceiverBehaviors(t *testing.T) {
	t.Parallel()
	r := NewReceiver(t)
	secret := newSecret(t)
	c := &http.Client{Timeout: 500 * time.Millisecond}

	tests := []struct {
		name      string
		b         Behavior
		wantErr   bool
		status    int
		delivered int
	}{
		{name: "ok", b: OK, status: 200, delivered: 1},
		{name: "fail", b: Fail, status: 500},
		{name: "410", b: Status(http.StatusGone), status: 410},
		{name: "hang", b: Hang, wantErr: true},
		{name: "slow beyond the timeout", b: Slow(time.Minute), wantErr: true},
		{name: "slow within the timeout", b: Slow(10 * time.Millisecond), status: 200, delivered: 1},
		{name: "reset", b: Reset, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep := r.Endpoint(strings.ReplaceAll(tt.name, " ", "-"))
			ep.SetBehavior(tt.b)
			resp, err := post(t, c, ep.URL, "evt_x", secret, "{}")
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatalf("got %d; want a transport error", resp.StatusCode)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.status {
					t.Fatalf("status %d; want %d", resp.StatusCode, tt.status)
				}
			}
			// The handler finishes after the client gave up: poll.
			Eventually(t, 5*time.Second, func() error {
				s := ep.Stats()
				if s.Attempts != 1 || s.Delivered != tt.delivered {
					return errors.New("stats not settled")
				}
				return nil
			})
		})
	}
}

func TestReceiverFailFirst(t *testing.T) {
	t.Parallel()
	r := NewReceiver(t)
	ep := r.Endpoint("flaky")
	ep.SetBehavior(FailFirst(2))
	secret := newSecret(t)
	c := &http.Client{Timeout: 5 * time.Second}
	var statuses []int
	for range 3 {
		resp, err := post(t, c, ep.URL, "evt_f", secret, "{}")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	if statuses[0] != 500 || statuses[1] != 500 || statuses[2] != 200 {
		t.Fatalf("statuses %v; want 500 500 200", statuses)
	}
	if h := ep.Hits("evt_f"); h.Attempts != 3 || h.Delivered != 1 {
		t.Fatalf("hits %+v", h)
	}
}

func TestReceiverHugeBodyStreams(t *testing.T) {
	t.Parallel()
	r := NewReceiver(t)
	ep := r.Endpoint("huge")
	ep.SetBehavior(HugeBody(1 << 30))
	resp, err := post(t, &http.Client{Timeout: 5 * time.Second}, ep.URL, "evt_h", newSecret(t), "{}")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close() // stop reading, as a capped client does
	if resp.StatusCode != 200 || n != 1<<20 {
		t.Fatalf("status %d, read %d", resp.StatusCode, n)
	}
	Eventually(t, 5*time.Second, func() error {
		if ep.Stats().Delivered != 1 {
			return errors.New("not settled")
		}
		return nil
	})
}

func TestReceiverDetectsOverlap(t *testing.T) {
	t.Parallel()
	r := NewReceiver(t)
	ep := r.Endpoint("slow")
	ep.SetBehavior(Slow(300 * time.Millisecond))
	secret := newSecret(t)
	c := &http.Client{Timeout: 5 * time.Second}
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := post(t, c, ep.URL, "evt_o", secret, "{}")
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if s := ep.Stats(); s.MaxOverlap != 2 || len(s.OverlapEvents) != 1 {
		t.Fatalf("overlap = %d %v; want 2 [evt_o]", s.MaxOverlap, s.OverlapEvents)
	}
	// Sequential requests do not overlap.
	ep2 := r.Endpoint("seq")
	for range 2 {
		resp, err := post(t, c, ep2.URL, "evt_s", secret, "{}")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if s := ep2.Stats(); s.MaxOverlap != 1 {
		t.Fatalf("sequential overlap = %d; want 1", s.MaxOverlap)
	}
}

func TestScrapeMetrics(t *testing.T) {
	t.Parallel()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# HELP go_goroutines x\n# TYPE go_goroutines gauge\ngo_goroutines 42\n"+
			"process_resident_memory_bytes 1.2345e+07\n"+
			"hookline_attempts_total{outcome=\"success\",reason=\"a b\"} 7 1700000000000\n")
	})}
	ln := listen(t)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	m, err := ScrapeMetrics(context.Background(), "http://"+ln.Addr().String()+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"go_goroutines":                 42,
		"process_resident_memory_bytes": 12345000,
		`hookline_attempts_total{outcome="success",reason="a b"}`: 7,
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v; want %v (all: %v)", k, m[k], v, m)
		}
	}
}

func TestTail(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/log"
	var b bytes.Buffer
	for i := range 10 {
		b.WriteString("line " + strconv.Itoa(i+1) + "\n")
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := Tail(path, 2, 1<<10); got != "line 9\nline 10\n" {
		t.Fatalf("tail = %q", got)
	}
}
