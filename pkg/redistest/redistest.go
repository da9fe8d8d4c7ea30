// Package redistest runs a real redis-server for tests on a free loopback
// port. `make test` installs redis-server when it is missing; a test never
// skips for want of it.
package redistest

import (
	"context"
	"fmt"
	"github.com/hookline/hookline/pkg/freeport"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a running redis-server.
type Server struct {
	Addr   string
	cmd    *exec.Cmd
	exited chan error // cmd's Wait result
	dir    string
	args   []string
}

// Start starts redis-server with no persistence and stops it when the test
// ends. Extra arguments are passed to redis-server (e.g. "--aclfile", path).
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redistest: redis-server not on PATH (run `make test`, which installs it): %v", err)
	}
	s := &Server{dir: tb.TempDir(), args: args}
	// A free port may be taken by another process (tests of other
	// packages run at the same time) before redis-server binds it: then
	// redis-server exits, and another port is tried.
	for range 5 {
		var port int
		port, err = freePort()
		if err != nil {
			tb.Fatalf("redistest: free port: %v", err)
		}
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if err = s.start(bin); err == nil {
			tb.Cleanup(s.Stop)
			return s
		}
	}
	tb.Fatalf("redistest: %v", err)
	return nil
}

func (s *Server) start(bin string) error {
	_, port, _ := net.SplitHostPort(s.Addr)
	args := append([]string{
		"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"),
	}, s.args...)
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd, s.exited = cmd, exited
	// Wait until this redis-server answers PING on the address (an event,
	// not a sleep: poll the socket), or exits (the port was taken).
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("redis-server on %s exited before answering (%v); port taken?", s.Addr, err)
		default:
		}
		if isRedis(s.Addr) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("redis-server on %s did not answer PING within 10s", s.Addr)
}

// isRedis says whether a Redis server answers PING on addr: "+PONG", or
// an error naming authentication when an ACL file requires it. Another
// server on the port (a nats-server says "INFO …") is not Redis.
func isRedis(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	buf := make([]byte, 64)
	n, _ := c.Read(buf)
	reply := string(buf[:n])
	return strings.HasPrefix(reply, "+PONG") || strings.HasPrefix(reply, "-NOAUTH") || strings.HasPrefix(reply, "-NOPERM")
}

// Stop kills the server (like a crash) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		<-s.exited
		s.cmd, s.exited = nil, nil
	}
}

// Restart stops the server and starts a new empty one on the same address.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	if err := s.start(bin); err != nil {
		tb.Fatalf("redistest: restart: %v", err)
	}
}

// Client returns a go-redis client that closes when the test ends.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	tb.Cleanup(func() { _ = c.Close() })
	if err := c.Ping(context.Background()).Err(); err != nil {
		tb.Fatalf("redistest: ping: %v", err)
	}
	return c
}

func freePort() (int, error) { return freeport.Pick() }
