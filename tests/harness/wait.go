package harness

import (
	"context"
	"errors"
	"fmt"
	"github.com/hookline/hookline/pkg/freeport"
	"net"
	"strconv"
	"testing"
	"time"
)

// PollInterval is how often conditions are re-evaluated.
const PollInterval = 50 * time.Millisecond

// Eventually polls cond until it returns nil, and fails the test with cond's
// last error when timeout passes first. Call it from the test goroutine.
func Eventually(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	if err := Poll(context.Background(), timeout, cond); err != nil {
		tb.Fatal(err)
	}
}

// Poll evaluates cond every PollInterval until it returns nil, ctx ends or
// timeout passes; the error then names cond's last complaint.
func Poll(ctx context.Context, timeout time.Duration, cond func() error) error {
	return pollEvery(ctx, timeout, PollInterval, cond)
}

func pollEvery(ctx context.Context, timeout, interval time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		err := cond()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not within %s: %w", timeout, err)
		case <-t.C:
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(tb testing.TB) int {
	tb.Helper()
	p, err := freeport.Pick()
	if err != nil {
		tb.Fatalf("free port: %v", err)
	}
	return p
}

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(tb)))
}

// RefusedURL returns an http URL on a loopback port where nothing listens:
// connecting to it is refused. The port is 9 (discard), below the range
// the kernel hands out to listeners on port 0: a free ephemeral port could
// be taken a moment later by another test process's server, which would
// then receive these requests as its own (seen in a CI-like run). Only when
// something does listen on 9 is an ephemeral port used.
func RefusedURL(tb testing.TB) string {
	tb.Helper()
	if c, err := net.DialTimeout("tcp", "127.0.0.1:9", time.Second); err == nil {
		_ = c.Close()
		return "http://" + FreeAddr(tb) + "/refused"
	}
	return "http://127.0.0.1:9/refused"
}

var errNotYet = errors.New("not yet")
