package harness

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ReadyTimeout bounds how long a process may take to become ready.
const ReadyTimeout = 30 * time.Second

// Process is one subprocess of a test: a service, nats-server or
// redis-server. It can be started, stopped with SIGTERM, killed with SIGKILL
// and restarted with the same arguments. Every start appends its stdout and
// stderr to LogPath; when the test fails the tail of the log is printed.
// An exit the test did not ask for fails the test.
//
// Methods that take no testing.TB call Fatal on the TB given to NewProcess:
// call them from the test goroutine.
type Process struct {
	Name    string
	Path    string
	Args    []string
	Env     []string
	LogPath string
	// Ready reports nil once the process serves; nil means "started".
	Ready func(ctx context.Context) error
	// ReadyWithin bounds the wait for Ready in Start (default ReadyTimeout).
	ReadyWithin time.Duration

	tb testing.TB

	mu       sync.Mutex
	cmd      *exec.Cmd
	done     chan struct{}
	exitErr  error
	expected bool // the running process is being stopped on purpose
	starts   int
	log      *os.File
	surprise []string // unexpected exits
}

// NewProcess prepares a process; Start runs it. It is killed when the test
// ends.
func NewProcess(tb testing.TB, name, path string, args, env []string) *Process {
	tb.Helper()
	p := &Process{
		Name:    name,
		Path:    path,
		Args:    args,
		Env:     env,
		LogPath: filepath.Join(tb.TempDir(), name+".log"),
		tb:      tb,
	}
	tb.Cleanup(p.cleanup)
	return p
}

func (p *Process) cleanup() {
	if p.Running() {
		p.signal(syscall.SIGKILL)
		p.wait(10 * time.Second)
	}
	p.mu.Lock()
	surprise := p.surprise
	if p.log != nil {
		_ = p.log.Close()
		p.log = nil
	}
	p.mu.Unlock()
	for _, s := range surprise {
		p.tb.Errorf("%s exited on its own: %s", p.Name, s)
	}
	if p.tb.Failed() {
		p.tb.Logf("---- last lines of %s (%s) ----\n%s", p.Name, p.LogPath, Tail(p.LogPath, 120, 48<<10))
	}
}

// Start runs the process and waits until Ready reports nil.
func (p *Process) Start() {
	p.tb.Helper()
	if err := p.StartNoWait(); err != nil {
		p.tb.Fatal(err)
	}
	within := p.ReadyWithin
	if within <= 0 {
		within = ReadyTimeout
	}
	p.WaitReady(within)
}

// StartNoWait runs the process without waiting for readiness.
func (p *Process) StartNoWait() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s: already running", p.Name)
	}
	if p.log == nil {
		f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return fmt.Errorf("%s: open log: %w", p.Name, err)
		}
		p.log = f
	}
	p.starts++
	fmt.Fprintf(p.log, "==== harness: start #%d of %s at %s ====\n", p.starts, p.Name, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(baseEnv(), p.Env...)
	cmd.Stdout = p.log
	cmd.Stderr = p.log
	// The child dies with the test binary, even on a panic or a timeout.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.exitErr, p.expected = cmd, done, nil, false
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		defer p.mu.Unlock()
		p.exitErr = err
		if !p.expected {
			p.surprise = append(p.surprise, fmt.Sprintf("start #%d: %v", p.starts, err))
		}
		fmt.Fprintf(p.log, "==== harness: %s exited at %s: %v ====\n", p.Name, time.Now().Format(time.RFC3339Nano), err)
		p.cmd = nil
		close(done)
	}()
	return nil
}

// WaitReady polls Ready until it reports nil; the test fails when the
// process exits first or timeout passes.
func (p *Process) WaitReady(timeout time.Duration) {
	p.tb.Helper()
	if err := p.AwaitReady(timeout); err != nil {
		p.tb.Fatal(err)
	}
}

// AwaitReady is WaitReady returning the error instead of failing the test;
// it may be called from any goroutine.
func (p *Process) AwaitReady(timeout time.Duration) error {
	if p.Ready == nil {
		return nil
	}
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return fmt.Errorf("%s: not started", p.Name)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-done:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := Poll(ctx, timeout, func() error {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		defer rcancel()
		return p.Ready(rctx)
	})
	select {
	case <-done:
		return fmt.Errorf("%s exited before it was ready (%v); log:\n%s", p.Name, p.ExitErr(), Tail(p.LogPath, 40, 8<<10))
	default:
	}
	if err != nil {
		return fmt.Errorf("%s not ready: %w", p.Name, err)
	}
	return nil
}

// Stop sends SIGTERM and waits up to grace for the exit. It returns how long
// the exit took and the exit error; after grace it kills the process and
// reports that as an error.
func (p *Process) Stop(grace time.Duration) (time.Duration, error) {
	start := time.Now()
	if !p.signal(syscall.SIGTERM) {
		return 0, fmt.Errorf("%s: not running", p.Name)
	}
	if p.wait(grace) {
		return time.Since(start), p.ExitErr()
	}
	p.signal(syscall.SIGKILL)
	p.wait(10 * time.Second)
	return time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.Name, grace)
}

// Kill sends SIGKILL (kill -9) and waits for the process to be gone.
func (p *Process) Kill() {
	p.tb.Helper()
	if !p.signal(syscall.SIGKILL) {
		p.tb.Fatalf("%s: kill: not running", p.Name)
	}
	if !p.wait(10 * time.Second) {
		p.tb.Fatalf("%s: still running 10s after SIGKILL", p.Name)
	}
}

// Restart kills the process if it runs, then starts it again and waits
// until it is ready.
func (p *Process) Restart() {
	p.tb.Helper()
	if p.Running() {
		p.Kill()
	}
	p.Start()
}

// Running reports whether the process is alive.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil
}

// Pid is the process id, 0 when it is not running.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// ExitErr is the exit status of the last run (nil: exit code 0).
func (p *Process) ExitErr() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// Log returns everything the process wrote so far.
func (p *Process) Log() string {
	b, _ := os.ReadFile(p.LogPath)
	return string(b)
}

// signal marks the coming exit as expected and sends sig; false when the
// process is not running.
func (p *Process) signal(sig syscall.Signal) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	p.expected = true
	fmt.Fprintf(p.log, "==== harness: %s to %s at %s ====\n", sig, p.Name, time.Now().Format(time.RFC3339Nano))
	_ = p.cmd.Process.Signal(sig)
	return true
}

// wait reports whether the process exited within d.
func (p *Process) wait(d time.Duration) bool {
	p.mu.Lock()
	done := p.done
	p.mu.Unlock()
	if done == nil {
		return true
	}
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// baseEnv is the test's environment without any HOOKLINE_ variable, so a
// developer's shell cannot change what a test runs.
func baseEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "HOOKLINE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Tail returns at most the last n lines and max bytes of a file.
func Tail(path string, n, max int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(b) > max {
		b = b[len(b)-max:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

// HTTPReady returns a Ready function that wants 200 from url.
func HTTPReady(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, strings.TrimSpace(string(body)))
		}
		return nil
	}
}
