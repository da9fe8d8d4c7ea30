package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

// TestMakeRun runs `make run`'s program as a user would, once per kind of
// Redis it can start: waits for the copy-paste commands, creates a
// subscription to the demo receiver through the API, publishes an event over
// HTTP and one over raw NATS, and waits for the receiver to print each as
// verified. With redis-server it then stops on SIGINT and must exit 0; with
// miniredis the producer is killed and devstack must stop everything and
// exit non-zero, naming it.
func TestMakeRun(t *testing.T) {
	t.Parallel()
	bin := buildDevstack(t)
	for _, mode := range []redisMode{redisServer, redisMiniredis} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			s := startDevstack(t, bin, mode)
			s.await(t, 5*time.Minute, regexp.MustCompile(`Hookline is running`))
			for _, want := range []string{
				"curl -sS -X POST http://" + s.producer + "/v1/subscriptions",
				`"url":"http://` + s.receiver + `/webhook","event_types":["order.*"]`,
				"curl -sS -X POST http://" + s.producer + "/v1/events",
				"nats pub -s nats://127.0.0.1:" + strconv.Itoa(s.natsPort) + ` events.acme.order.created '{"order_id":1}'`,
				"nats req -s nats://127.0.0.1:" + strconv.Itoa(s.natsPort) + ` ingest.acme.order.created '{"order_id":1}'`,
				"go run ./cmd/hookctl dlq ls",
			} {
				s.await(t, time.Second, regexp.MustCompile(regexp.QuoteMeta(want)))
			}
			s.await(t, time.Second, regexp.MustCompile(`loopback and private addresses`))
			// The portal link opens a session of the demo tenant.
			portalLine := s.await(t, time.Second, regexp.MustCompile(`http://`+regexp.QuoteMeta(s.producer)+`/portal/#session=(hlps_[A-Za-z0-9_.-]+)`))
			openPortalSession(t, s.producer, portalLine[1])
			s.await(t, time.Second, regexp.MustCompile(`redis: started (redis-server|an embedded miniredis)`))
			if _, err := os.Stat(filepath.Join(s.dataDir, "nats", "jetstream")); err != nil {
				t.Errorf("NATS stores nothing in the data dir: %v", err)
			}

			sub := s.post(t, "/v1/subscriptions", `{"tenant":"acme","url":"http://`+s.receiver+`/webhook","event_types":["order.*"]}`, http.StatusCreated)
			subID, _ := sub["id"].(string)
			if secret, _ := sub["secret"].(string); subID == "" || !strings.HasPrefix(secret, "whsec_") {
				t.Fatalf("subscription answer %v", sub)
			}
			evt := s.post(t, "/v1/events", `{"tenant":"acme","type":"order.created","data":{"order_id":1}}`, http.StatusAccepted)
			evtID, _ := evt["id"].(string)
			s.await(t, time.Minute, regexp.MustCompile(`receiver +\| webhook-id=`+regexp.QuoteMeta(evtID)+` type=order\.created verified=yes subscription=`+regexp.QuoteMeta(subID)))
			// A new subscription gets the envelope, with the data byte for byte.
			s.await(t, time.Second, regexp.MustCompile(`receiver +\|   \{"id":"`+regexp.QuoteMeta(evtID)+`","type":"order\.created","timestamp":"[^"]+","data":\{"order_id":1\}\}`))

			// A platform service publishing straight to NATS, as `nats pub` does.
			nc, err := nats.Connect("nats://127.0.0.1:" + strconv.Itoa(s.natsPort))
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			if err := nc.Publish(stream.EventSubject("acme", "order.shipped"), []byte(`{"order_id":2}`)); err != nil {
				t.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				t.Fatal(err)
			}
			s.await(t, time.Minute, regexp.MustCompile(`receiver +\| webhook-id=\S+ type=order\.shipped verified=yes subscription=`+regexp.QuoteMeta(subID)))
			s.await(t, time.Second, regexp.MustCompile(`receiver +\|   \{"id":"[^"]+","type":"order\.shipped","timestamp":"[^"]+","data":\{"order_id":2\}\}`))

			// Through the producer's NATS ingest, as `nats req` does: a
			// PubAck once stored, then the webhook.
			ans, err := nc.Request("ingest.acme.order.returned", []byte(`{"order_id":3}`), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(ans.Data), `"stream":"EVENTS"`) {
				t.Fatalf("ingest answer %s; want a PubAck of EVENTS", ans.Data)
			}
			s.await(t, time.Minute, regexp.MustCompile(`receiver +\| webhook-id=\S+ type=order\.returned verified=yes subscription=`+regexp.QuoteMeta(subID)))

			if mode == redisServer {
				s.signal(t, syscall.SIGINT)
				code, stderr := s.wait(t, 2*time.Minute)
				if code != 0 {
					t.Fatalf("exit %d after SIGINT, stderr:\n%s", code, stderr)
				}
				s.await(t, time.Second, regexp.MustCompile(`devstack +\| .*stopped`))
				return
			}
			m := s.await(t, time.Second, regexp.MustCompile(`started producer\s+\{"pid": (\d+)`))
			pid, _ := strconv.Atoi(m[1])
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			code, stderr := s.wait(t, 2*time.Minute)
			if code == 0 || !strings.Contains(stderr, "producer exited unexpectedly") {
				t.Fatalf("exit %d after the producer died, stderr:\n%s", code, stderr)
			}
			// Nothing is left behind: the deliverer was stopped with the rest.
			m = s.await(t, time.Second, regexp.MustCompile(`started deliverer\s+\{"pid": (\d+)`))
			dpid, _ := strconv.Atoi(m[1])
			if err := syscall.Kill(dpid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("the deliverer (pid %d) outlived devstack: %v", dpid, err)
			}
		})
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	bin := buildDevstack(t)
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string
		stderr   string
		noOutput bool
	}{
		{name: "help", args: []string{"--help"}, code: 0, stdout: "Usage: go run ./cmd/devstack"},
		{name: "unknown flag", args: []string{"--frobnicate"}, code: 2, stderr: "flag provided but not defined: -frobnicate"},
		{name: "stray argument", args: []string{"up"}, code: 2, stderr: `unexpected argument "up"`},
		{name: "bad redis mode", args: []string{"--redis", "memcached"}, code: 2, stderr: "want auto, redis-server or miniredis"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(bin, tt.args...)
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				code = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.code || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout:\n%s\nstderr:\n%s", code, tt.code, stdout.String(), stderr.String())
			}
		})
	}
}

// TestPortInUse: a taken port is named before anything starts.
func TestPortInUse(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	cfg := config{
		NATSPort: freePort(t), ProducerAddr: l.Addr().String(),
		DelivererAddr: freeHostPort(t), ReceiverAddr: freeHostPort(t),
		DataDir: t.TempDir(), Root: t.TempDir(), StopTimeout: time.Second,
	}
	var out bytes.Buffer
	err = run(context.Background(), cfg, &out)
	if err == nil || !strings.Contains(err.Error(), "the producer cannot listen on "+l.Addr().String()) || !strings.Contains(err.Error(), "--producer-addr") {
		t.Fatalf("run = %v", err)
	}
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// buildDevstack builds this program once for all tests.
func buildDevstack(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "devstack-test-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "devstack")
		out, err := exec.Command("go", "build", "-o", builtBin, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin != "" {
		_ = os.RemoveAll(filepath.Dir(builtBin))
	}
	// The receiver, console and Redis tests start goroutines: none may
	// outlive them.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// runningStack is a devstack process and what it printed.
type runningStack struct {
	cmd                           *exec.Cmd
	natsPort                      int
	producer, deliverer, receiver string
	dataDir                       string
	stderr                        *lockedBuffer
	done                          chan struct{}

	mu      sync.Mutex
	lines   []string
	changed chan struct{} // closed and replaced on every new line
}

func startDevstack(t *testing.T, bin string, mode redisMode) *runningStack {
	t.Helper()
	root, err := findRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	s := &runningStack{
		natsPort: freePort(t), producer: freeHostPort(t), deliverer: freeHostPort(t), receiver: freeHostPort(t),
		dataDir: t.TempDir(), stderr: &lockedBuffer{}, done: make(chan struct{}), changed: make(chan struct{}),
	}
	s.cmd = exec.Command(bin,
		"--root", root, "--data-dir", s.dataDir,
		"--nats-port", strconv.Itoa(s.natsPort),
		"--producer-addr", s.producer, "--deliverer-addr", s.deliverer, "--receiver-addr", s.receiver,
		"--redis", string(mode), "--redis-port", "0", "--stop-timeout", "40s",
	)
	// Hermetic: no Redis or Hookline settings from the developer's shell.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKLINE_") && !strings.HasPrefix(kv, "REDIS_URL=") {
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			s.mu.Lock()
			s.lines = append(s.lines, sc.Text())
			close(s.changed)
			s.changed = make(chan struct{})
			s.mu.Unlock()
		}
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		select {
		case <-s.done:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(time.Minute):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		if t.Failed() {
			t.Logf("devstack output:\n%s\nstderr:\n%s", s.output(), s.stderr.String())
		}
	})
	return s
}

func (s *runningStack) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// await waits until a printed line matches re and returns its submatches.
func (s *runningStack) await(t *testing.T, timeout time.Duration, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		s.mu.Lock()
		lines, changed := s.lines[seen:], s.changed
		seen = len(s.lines)
		s.mu.Unlock()
		for _, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				return m
			}
		}
		select {
		case <-changed:
		case <-s.done:
			// The process is gone: whatever it printed is in.
			s.mu.Lock()
			rest := s.lines[seen:]
			s.mu.Unlock()
			for _, l := range rest {
				if m := re.FindStringSubmatch(l); m != nil {
					return m
				}
			}
			t.Fatalf("devstack exited before printing %q; stderr:\n%s", re, s.stderr.String())
		case <-deadline:
			t.Fatalf("no line matching %q within %s", re, timeout)
		}
	}
}

func (s *runningStack) post(t *testing.T, path, body string, want int) map[string]any {
	t.Helper()
	resp, err := http.Post("http://"+s.producer+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("POST %s: %v in %s", path, err, b)
	}
	return m
}

func (s *runningStack) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// wait returns the exit code and stderr once the process has exited.
func (s *runningStack) wait(t *testing.T, timeout time.Duration) (int, string) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("devstack still running %s after it was told to stop", timeout)
	}
	return s.cmd.ProcessState.ExitCode(), s.stderr.String()
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	addr := freeHostPort(t)
	_, p, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(p)
	return port
}

func freeHostPort(t *testing.T) string {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// openPortalSession trades the banner's portal token for a session as the
// portal page does, and reads the demo tenant's endpoints with it.
func openPortalSession(t *testing.T, producer, token string) {
	t.Helper()
	for _, path := range []string{"/portal/api/session", "/portal/api/v1/subscriptions?tenant=acme"} {
		method := http.MethodGet
		if path == "/portal/api/session" {
			method = http.MethodPost
		}
		req, err := http.NewRequest(method, "http://"+producer+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "acme") && path == "/portal/api/session" {
			t.Fatalf("%s %s with the banner's portal token: %d %s", method, path, resp.StatusCode, b)
		}
	}
}
