// Package faults injects the faults production will bring — crashes,
// restarts, partitions, a lost cache, poison endpoints and messages — into
// the real binaries and proves with the checker that nothing is lost: every
// accepted event × matching subscription ends delivered or dead-lettered,
// and duplicates stay within what the fault can explain.
//
// Each test logs one line starting with "RESULT" (events, lost, duplicated,
// recovery time): `go test -v ./faults/ | grep RESULT` is the table of
// docs/guarantees.md.
package faults

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// result logs the line docs/guarantees.md's table is made of.
func result(t *testing.T, fault string, kv ...any) {
	t.Helper()
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	t.Logf("RESULT fault=%q%s", fault, b.String())
}

// delivered is the number of 2xx answers over endpoints.
func delivered(eps ...*harness.Endpoint) int {
	n := 0
	for _, ep := range eps {
		n += ep.Stats().Delivered
	}
	return n
}

// awaitDelivered waits until the endpoints together answered n 2xx.
func awaitDelivered(t *testing.T, n int, timeout time.Duration, eps ...*harness.Endpoint) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		if got := delivered(eps...); got < n {
			return fmt.Errorf("%d of %d delivered", got, n)
		}
		return nil
	})
}

// deliveredAfter waits for the first 2xx answered after since and returns
// how long after since it came.
func deliveredAfter(t *testing.T, since time.Time, timeout time.Duration, eps ...*harness.Endpoint) time.Duration {
	t.Helper()
	var first time.Time
	harness.Eventually(t, timeout, func() error {
		first = firstDeliveredAfter(since, eps...)
		if first.IsZero() {
			return fmt.Errorf("no delivery since %s", since.Format(time.StampMilli))
		}
		return nil
	})
	return first.Sub(since)
}

// firstDeliveredAfter is the earliest of the endpoints' last 2xx answers
// that came after since (zero: none did).
func firstDeliveredAfter(since time.Time, eps ...*harness.Endpoint) time.Time {
	var first time.Time
	for _, ep := range eps {
		if l := ep.Stats().LastDelivered; l.After(since) && (first.IsZero() || l.Before(first)) {
			first = l
		}
	}
	return first
}

// resumedAfter is deliveredAfter for a fault whose load may have been
// delivered in full before since (the deliverers worked on while the test
// waited for every node to be ready): it also ends, with done, once the
// load has finished and every pair it was acknowledged is delivered or
// dead-lettered, when there is nothing left to resume.
func resumedAfter(t *testing.T, since time.Time, timeout time.Duration, load *harness.Load, c *harness.Checker, eps ...*harness.Endpoint) (after time.Duration, done bool) {
	t.Helper()
	var first time.Time
	harness.Eventually(t, timeout, func() error {
		first = firstDeliveredAfter(since, eps...)
		if !first.IsZero() {
			return nil
		}
		if load.Finished() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if r, err := c.Check(ctx); err == nil && r.Lost == 0 && r.Expected > 0 {
				done = true
				return nil
			}
		}
		return fmt.Errorf("no delivery since %s, and deliveries outstanding", since.Format(time.StampMilli))
	})
	if done {
		return 0, true
	}
	return first.Sub(since), false
}

// inFlightPairs bounds the deliveries a fault may repeat, in pairs: each
// unacknowledged task is one pair, and each unacknowledged event up to one
// pair per matching subscription, since a redone fan-out sends its direct
// deliveries again.
func inFlightPairs(tasks, events, subs int) int {
	return tasks + events*subs
}

// consumerLoad is num_pending and num_ack_pending of a durable consumer.
func consumerLoad(t *testing.T, js jetstream.JetStream, streamName, consumer string) (pending uint64, ackPending int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, streamName, consumer)
	if err != nil {
		t.Fatalf("consumer %s: %v", consumer, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatalf("consumer %s: %v", consumer, err)
	}
	return info.NumPending, info.NumAckPending
}

// Sampler polls a service's /metrics in the background and keeps the
// largest goroutine count and resident memory it saw.
type Sampler struct {
	stop chan struct{}
	done chan struct{}

	mu                    sync.Mutex
	maxGoroutines, maxRSS float64
	samples               int
}

func sample(s *harness.Service) *Sampler {
	sm := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(sm.done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			m, err := s.Metrics(ctx)
			cancel()
			if err == nil {
				sm.mu.Lock()
				sm.samples++
				sm.maxGoroutines = max(sm.maxGoroutines, m["go_goroutines"])
				sm.maxRSS = max(sm.maxRSS, m["process_resident_memory_bytes"])
				sm.mu.Unlock()
			}
			select {
			case <-sm.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return sm
}

// Stop ends the sampling and returns the maxima.
func (sm *Sampler) Stop() (goroutines, rss float64, samples int) {
	close(sm.stop)
	<-sm.done
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.maxGoroutines, sm.maxRSS, sm.samples
}

// awaitGoroutines waits until the service's goroutine count is back to at
// most limit and returns it.
func awaitGoroutines(t *testing.T, s *harness.Service, limit float64, timeout time.Duration) float64 {
	t.Helper()
	var g float64
	harness.Eventually(t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		m, err := s.Metrics(ctx)
		if err != nil {
			return err
		}
		g = m["go_goroutines"]
		if g > limit {
			return fmt.Errorf("%s has %v goroutines; want at most %v", s.Name, g, limit)
		}
		return nil
	})
	return g
}

// idleGoroutines waits until the deliverer's goroutine count is steady and
// returns the highest count of that steady window. An idle deliverer still
// moves by a goroutine or two from one scrape to the next (the scrape
// itself: net/http's background read, the registry's gather workers), so
// "steady" is twenty polls in a row (a second) within 4 of each other, not
// ten identical ones: that took more than 30 s on a busy machine.
func idleGoroutines(t *testing.T, s *harness.Service) float64 {
	t.Helper()
	var window []float64
	var high float64
	harness.Eventually(t, 30*time.Second, func() error {
		window = append(window, s.Metric(t, "go_goroutines"))
		if len(window) > 20 {
			window = window[1:]
		}
		lo, hi := slices.Min(window), slices.Max(window)
		if len(window) < 20 || hi-lo > 4 {
			return fmt.Errorf("goroutines still moving (%v to %v over the last %d polls)", lo, hi, len(window))
		}
		high = hi
		return nil
	})
	return high
}

// settle waits until both consumers have nothing pending nor in flight.
func settle(t *testing.T, js jetstream.JetStream, timeout time.Duration) {
	t.Helper()
	harness.Eventually(t, timeout, func() error {
		for _, c := range [][2]string{{stream.Events, stream.DispatchConsumer}, {stream.Deliveries, stream.DeliverConsumer}} {
			p, a := consumerLoad(t, js, c[0], c[1])
			if p != 0 || a != 0 {
				return fmt.Errorf("%s: %d pending, %d in flight", c[1], p, a)
			}
		}
		return nil
	})
}

// readDeadLetters returns every message in DEADLETTER.
func readDeadLetters(t *testing.T, s *harness.Stack) []*jetstream.RawStreamMsg {
	t.Helper()
	return natstest.Messages(t, s.JS, stream.DeadLetter)
}
