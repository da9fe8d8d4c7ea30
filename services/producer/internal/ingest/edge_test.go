package ingest_test

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/services/producer/internal/ingest"
	"github.com/hookline/hookline/services/producer/internal/publish"
)

// fakePub is a Publisher that holds each event until release is closed
// (or its context ends) and counts what it holds.
type fakePub struct {
	release       chan struct{}
	calls         atomic.Int64
	held, maxHeld atomic.Int64
	mu            sync.Mutex
	lastCall      time.Time
}

func (f *fakePub) PublishGrouped(ctx context.Context, ev publish.Event) (publish.Result, error) {
	f.calls.Add(1)
	f.mu.Lock()
	f.lastCall = time.Now()
	f.mu.Unlock()
	n := f.held.Add(int64(len(ev.Data)))
	for {
		m := f.maxHeld.Load()
		if n <= m || f.maxHeld.CompareAndSwap(m, n) {
			break
		}
	}
	defer f.held.Add(-int64(len(ev.Data)))
	select {
	case <-f.release:
		return publish.Result{ID: ev.ID, Seq: 1}, nil
	case <-ctx.Done():
		return publish.Result{}, ctx.Err()
	}
}

func (f *fakePub) MaxData() int64 { return 0 }

// runFake runs the ingest on pub; it returns a connection to publish on
// and a stop that cancels Run and returns when Run has.
func runFake(t *testing.T, pub *fakePub, inFlight int, timeout time.Duration) (*nats.Conn, func()) {
	t.Helper()
	ns := natstest.Start(t)
	nc, _ := ns.Connect(t)
	in := ingest.New(nc, pub, zap.NewNop(), timeout)
	in.InFlight = inFlight
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = in.Run(ctx); close(done) }()
	client, _ := ns.Connect(t)
	// Wait for the subscription: a request answered (400: no data).
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := client.Request("ingest.warmup.ping", nil, 200*time.Millisecond); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the ingest never answered")
		}
	}
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return client, stop
}

// Under a flood of large publishes the data held in flight must be
// bounded (64 MiB at the default InFlight of 4,096: InFlight x 16 KiB),
// not InFlight x max_payload (4 GiB at 1 MiB).
func TestIngestBoundsTheBytesInFlight(t *testing.T) {
	t.Parallel()
	pub := &fakePub{release: make(chan struct{})}
	const inFlight = 64
	nc, stop := runFake(t, pub, inFlight, 10*time.Second)
	data := []byte(`"` + strings.Repeat("a", 64<<10) + `"`)
	const n = 60
	for range n {
		if err := nc.Publish("ingest.acme.order.created", data); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Let the ingest take what it will.
	for last, stable := int64(-1), 0; stable < 5; time.Sleep(50 * time.Millisecond) {
		if c := pub.calls.Load(); c == last {
			stable++
		} else {
			last, stable = c, 0
		}
	}
	max := pub.maxHeld.Load()
	close(pub.release)
	for deadline := time.Now().Add(10 * time.Second); pub.calls.Load() < n+0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	if bound := int64(inFlight * 16 << 10); max > bound {
		t.Fatalf("held %d bytes of data at once; want at most %d", max, bound)
	}
	if c := pub.calls.Load(); c != n {
		t.Fatalf("%d publishes handled; want %d", c, n)
	}
}

// Once Run has returned, no publish may still be handed to the publisher
// (whose own Run the server stops next): a drain that outlasts Timeout
// used to leave the subscription's callback starting goroutines (wg.Go
// racing wg.Wait) after Run returned.
func TestIngestServesNothingAfterRun(t *testing.T) {
	t.Parallel()
	pub := &fakePub{release: make(chan struct{})} // never released: each publish waits Timeout
	const timeout = 200 * time.Millisecond
	nc, stop := runFake(t, pub, 1, timeout)
	for range 10 {
		if err := nc.Publish("ingest.acme.order.created", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); pub.calls.Load() < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the ingest took nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	returned := time.Now()
	callsAtReturn := pub.calls.Load()
	time.Sleep(3 * timeout)
	pub.mu.Lock()
	last := pub.lastCall
	pub.mu.Unlock()
	if last.After(returned) {
		t.Fatalf("publisher called %d more times after Run returned", pub.calls.Load()-callsAtReturn)
	}
}
