package idempotency_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/idempotency"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func store(t *testing.T, lease, wait time.Duration) (*idempotency.Store, jetstream.JetStream) {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if _, err := js.CreateOrUpdateKeyValue(ctx, stream.IdempotencyKVConfig(stream.Config{})); err != nil {
		t.Fatal(err)
	}
	s := idempotency.New(js, nil, lease, wait)
	if err := s.Bind(ctx); err != nil {
		t.Fatal(err)
	}
	return s, js
}

func req(scope, key, body string, ids ...string) idempotency.Request {
	return idempotency.Request{Scope: scope, Key: key, Method: "POST", Path: "/v1/events", Body: []byte(body), IDs: ids}
}

func TestBeginCompleteReplay(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, time.Second)
	ctx := context.Background()
	c, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil || stored != nil || c == nil || c.IDs()[0] != "evt_1" || c.TakenOver {
		t.Fatalf("first Begin: %v %v %v", c, stored, err)
	}
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Location: "/x", Body: []byte(`{"id":"evt_1"}`)}); err != nil {
		t.Fatal(err)
	}
	c, stored, err = s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
	if err != nil || c != nil || stored == nil || stored.Status != 202 || stored.Location != "/x" || string(stored.Body) != `{"id":"evt_1"}` {
		t.Fatalf("second Begin: %v %+v %v", c, stored, err)
	}
	if _, _, err := s.Begin(ctx, req("acme", "k", `{"other":1}`)); !errors.Is(err, idempotency.ErrMismatch) {
		t.Fatalf("another body: %v, want ErrMismatch", err)
	}
	other := req("acme", "k", "{}")
	other.Path = "/v1/subscriptions"
	if _, _, err := s.Begin(ctx, other); !errors.Is(err, idempotency.ErrMismatch) {
		t.Fatalf("another path: %v, want ErrMismatch", err)
	}
	// Another tenant's key of the same name is another record.
	if c, _, err := s.Begin(ctx, req("globex", "k", `{"other":1}`)); err != nil || c == nil {
		t.Fatalf("another tenant: %v %v", c, err)
	}
}

func TestReleaseLetsTheRetryRun(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, time.Second)
	ctx := context.Background()
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Release(ctx, c); err != nil {
		t.Fatal(err)
	}
	c, _, err = s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
	if err != nil || c == nil || c.IDs()[0] != "evt_2" {
		t.Fatalf("after release: %v %v", c, err)
	}
}

// A claim whose request is still running makes a second request wait
// for its answer; after the wait it is ErrInProgress.
func TestConcurrentRequestWaitsForTheAnswer(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *idempotency.Response, 1)
	go func() {
		_, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
		if err != nil {
			t.Error(err)
		}
		got <- stored
	}()
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r == nil || string(r.Body) != "first" {
		t.Fatalf("the waiting request got %+v", r)
	}

	short, _ := store(t, time.Minute, 50*time.Millisecond)
	if _, _, err := short.Begin(ctx, req("acme", "k", "{}")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := short.Begin(ctx, req("acme", "k", "{}")); !errors.Is(err, idempotency.ErrInProgress) {
		t.Fatalf("%v, want ErrInProgress", err)
	}
}

// Of many concurrent Begins exactly one claims the key.
func TestOneClaimAmongConcurrentBegins(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	var claims, replays atomic.Int32
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			c, stored, err := s.Begin(ctx, req("acme", "k", "{}"))
			switch {
			case err != nil:
				t.Error(err)
			case c != nil:
				claims.Add(1)
				if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("x")}); err != nil {
					t.Error(err)
				}
			case stored != nil:
				replays.Add(1)
			}
		})
	}
	wg.Wait()
	if claims.Load() != 1 || replays.Load() != 31 {
		t.Fatalf("%d claims, %d replays; want 1 and 31", claims.Load(), replays.Load())
	}
}

// A claim whose replica died (no answer within its lease) is taken over
// by a retry, which runs with the ids the first run reserved; the dead
// run's late answer is refused.
func TestTakeoverKeepsTheReservedIDs(t *testing.T) {
	t.Parallel()
	s, _ := store(t, 100*time.Millisecond, 10*time.Second)
	ctx := context.Background()
	dead, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_first"))
	if err != nil {
		t.Fatal(err)
	}
	// The retry waits out the lease (it is shorter than the wait).
	c, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_second"))
	if err != nil || c == nil || !c.TakenOver || c.IDs()[0] != "evt_first" {
		t.Fatalf("retry: %+v %v; want a takeover with evt_first", c, err)
	}
	if err := s.Complete(ctx, dead, idempotency.Response{Status: 202, Body: []byte("late")}); err == nil {
		t.Fatal("the dead claim stored its answer over the takeover")
	}
	if err := s.Complete(ctx, c, idempotency.Response{Status: 202, Body: []byte("retry")}); err != nil {
		t.Fatal(err)
	}
	if _, stored, _ := s.Begin(ctx, req("acme", "k", "{}")); stored == nil || string(stored.Body) != "retry" {
		t.Fatalf("stored %+v", stored)
	}
}

func TestNotBound(t *testing.T) {
	t.Parallel()
	s := idempotency.New(nil, nil, time.Minute, time.Second)
	if _, _, err := s.Begin(context.Background(), req("acme", "k", "{}")); !errors.Is(err, idempotency.ErrNotReady) {
		t.Fatalf("%v, want ErrNotReady", err)
	}
}

// A request waiting on a claim whose request then failed (released) runs
// the request itself.
func TestWaiterRunsWhenTheFirstFails(t *testing.T) {
	t.Parallel()
	s, _ := store(t, time.Minute, 10*time.Second)
	ctx := context.Background()
	first, _, err := s.Begin(ctx, req("acme", "k", "{}", "evt_1"))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *idempotency.Claim, 1)
	go func() {
		c, stored, err := s.Begin(ctx, req("acme", "k", "{}", "evt_2"))
		if err != nil || stored != nil {
			t.Errorf("waiter: %v %v", stored, err)
		}
		got <- c
	}()
	if err := s.Release(ctx, first); err != nil {
		t.Fatal(err)
	}
	if c := <-got; c == nil || c.TakenOver || c.IDs()[0] != "evt_2" {
		t.Fatalf("waiter got %+v, want its own claim", c)
	}
}
