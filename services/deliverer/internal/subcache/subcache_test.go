package subcache_test

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// source is a counting stand-in for the Redis cache (the unit under test is
// the memo; the KV bucket that invalidates it is a real one).
type source struct {
	mu    sync.Mutex
	url   string
	err   error
	calls atomic.Int64
}

func (s *source) set(url string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.url, s.err = url, err
}

func (s *source) sub(id string) (*hooklinev1.Subscription, error) {
	s.calls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	return &hooklinev1.Subscription{Id: id, Tenant: "acme", Url: s.url, EventTypes: []string{"order.created"}}, nil
}

func (s *source) ForEventAt(_ context.Context, _, _ string, _ uint64) ([]*hooklinev1.Subscription, error) {
	sub, err := s.sub("sub_1")
	if err != nil {
		return nil, err
	}
	return []*hooklinev1.Subscription{sub}, nil
}

func (s *source) GetAt(_ context.Context, _, id string, _ uint64) (*hooklinev1.Subscription, error) {
	return s.sub(id)
}

func start(t *testing.T) (*subcache.Memo, *source, jetstream.KeyValue) {
	t.Helper()
	m, src, kv, _, _ := startConn(t)
	return m, src, kv
}

// startConn is start, also returning the server and the memo's connection.
func startConn(t *testing.T) (*subcache.Memo, *source, jetstream.KeyValue, *natstest.Server, *nats.Conn) {
	t.Helper()
	return startWith(t, nil)
}

// startWith is startConn with options built for the bucket.
func startWith(t *testing.T, opts func(jetstream.KeyValue) []subcache.Option) (*subcache.Memo, *source, jetstream.KeyValue, *natstest.Server, *nats.Conn) {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	src := &source{url: "https://one.example"}
	o := []subcache.Option{subcache.WithConn(nc)}
	if opts != nil {
		o = append(o, opts(kv)...)
	}
	m := subcache.New(src, kv, nil, o...)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return m, src, kv, srv, nc
}

// After a nats-server restart the memo's KV watch is dead until missing
// heartbeats tell nats.go (about 20 s), and it misses every change in
// between: the memo must not answer from before the restart meanwhile. A
// URL changed right after the restart is seen at once, not 20 s later.
func TestMemoIsNotStaleAfterANATSRestart(t *testing.T) {
	t.Parallel()
	m, src, kv, srv, nc := startConn(t)
	ctx := context.Background()
	inUse(t, m, src)
	reconnects := nc.Stats().Reconnects
	srv.Restart(t)
	// Reconnected: the client saw the disconnect (ReconnectWait, 2 s here,
	// before it reconnected) and connected again.
	eventually(t, 10*time.Second, func() bool {
		return nc.Stats().Reconnects > reconnects && nc.Status() == nats.CONNECTED
	})
	// Nothing learnt from before the disconnect is answered any more.
	src.set("https://two.example", nil)
	if sub, err := m.Get(ctx, "acme", "sub_1", 0); err != nil || sub.GetUrl() != "https://two.example" {
		t.Fatalf("right after the reconnect: %v, %v; want the current URL, not the one memoised before the restart", sub, err)
	}
	var rev uint64
	eventually(t, 10*time.Second, func() bool {
		r, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`))
		rev = r
		return err == nil
	})
	eventually(t, 10*time.Second, func() bool {
		sub, err := m.Get(ctx, "acme", "sub_1", 0)
		return err == nil && sub.GetUrl() == "https://two.example"
	})
	eventually(t, 10*time.Second, func() bool { return m.Current(rev) })
	inUse(t, m, src) // and in use again, with a live watch
}

// eventually polls cond until it holds, failing after timeout.
func eventually(t *testing.T, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inUse waits until the memo is in use: a repeat no longer reaches the
// source.
func inUse(t *testing.T, m *subcache.Memo, src *source) {
	t.Helper()
	ctx := context.Background()
	eventually(t, 10*time.Second, func() bool {
		// The first may be answered by the source (and remembered), or by
		// the memo already: only the repeat tells. (Counting exactly one
		// call for the pair never held again once a pair was split by the
		// end of the watch's replay: the first bypassed the memo, the
		// second filled it.)
		_, _ = m.Get(ctx, "acme", "sub_1", 0)
		before := src.calls.Load()
		_, _ = m.Get(ctx, "acme", "sub_1", 0)
		return src.calls.Load() == before
	})
}

func TestMemoAnswersRepeatsWithoutAskingAgain(t *testing.T) {
	t.Parallel()
	m, src, _ := start(t)
	ctx := context.Background()
	inUse(t, m, src)
	before := src.calls.Load()
	for range 100 {
		sub, err := m.Get(ctx, "acme", "sub_1", 0)
		if err != nil || sub.GetUrl() != "https://one.example" {
			t.Fatalf("Get = %v, %v", sub, err)
		}
		subs, _, err := m.ForEvent(ctx, "acme", "order.created")
		if err != nil || len(subs) != 1 {
			t.Fatalf("ForEvent = %v, %v", subs, err)
		}
	}
	if got := src.calls.Load() - before; got > 1 {
		t.Fatalf("%d source calls for 200 repeated lookups, want at most 1 (the first ForEvent)", got)
	}
}

func TestMemoForgetsATenantWhenItsSubscriptionChanges(t *testing.T) {
	t.Parallel()
	m, src, kv := start(t)
	ctx := context.Background()
	inUse(t, m, src)
	src.set("https://two.example", nil)
	if _, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool {
		sub, err := m.Get(ctx, "acme", "sub_1", 0)
		return err == nil && sub.GetUrl() == "https://two.example"
	})
}

func TestMemoIsCurrentOnceTheWatchReportsARevision(t *testing.T) {
	t.Parallel()
	m, src, kv := start(t)
	ctx := context.Background()
	inUse(t, m, src)
	// The memo is in use, and the last change it saw is older than the next
	// one: it is not current for a revision it has not seen.
	next, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_2"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if m.Current(next + 1) {
		t.Fatalf("Current(%d) before any such revision exists", next+1)
	}
	eventually(t, 10*time.Second, func() bool { return m.Current(next) })
	src.set("https://two.example", nil)
	rev, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return m.Current(rev) })
	// Current means the change is seen: no stale answer follows.
	if sub, err := m.Get(ctx, "acme", "sub_1", 0); err != nil || sub.GetUrl() != "https://two.example" {
		t.Fatalf("Get after Current(%d) = %v, %v; want the new URL", rev, sub, err)
	}
}

func TestMemoNeverRemembersErrors(t *testing.T) {
	t.Parallel()
	m, src, _ := start(t)
	ctx := context.Background()
	src.set("", subscription.ErrNotFound)
	for range 3 {
		if _, err := m.Get(ctx, "acme", "sub_1", 0); !errors.Is(err, subscription.ErrNotFound) {
			t.Fatalf("Get = %v, want ErrNotFound", err)
		}
	}
	src.set("https://back.example", nil)
	sub, err := m.Get(ctx, "acme", "sub_1", 0)
	if err != nil || sub.GetUrl() != "https://back.example" {
		t.Fatalf("Get after the error = %v, %v", sub, err)
	}
}

// A memo whose watch died without a word (its consumer deleted, as the
// loss of the node hosting it does) never answers a lookup that needs a
// revision the watch has not reported: after CatchUp it asks the next
// cache, counts it, and watches again — and is in use again once the new
// watch has replayed.
func TestMemoBehindTheNeededRevisionAsksTheNextCache(t *testing.T) {
	t.Parallel()
	m, src, kv, srv, _ := startConn(t)
	ctx := context.Background()
	inUse(t, m, src)
	_, js := srv.Connect(t)
	s, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	names := s.ConsumerNames(ctx)
	for name := range names.Name() {
		if err := s.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no watch consumer to delete: the test would prove nothing")
	}
	rev, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	src.set("https://two.example", nil)
	sub, err := m.Get(ctx, "acme", "sub_1", rev)
	if err != nil || sub.GetUrl() != "https://two.example" {
		t.Fatalf("Get(need %d) = %v, %v; want the next cache's answer, not the memoised one", rev, sub.GetUrl(), err)
	}
	if m.Lagged() == 0 {
		t.Fatal("the lookup the memo could not answer was not counted")
	}
	eventually(t, 10*time.Second, func() bool { return m.Current(rev) })
	inUse(t, m, src)
}

// bucketHorizon is the registry's state (last revision and origin), as
// subscription.Horizon reads it (one request per call here).
type bucketHorizon struct{ kv jetstream.KeyValue }

func (h bucketHorizon) RequiredState(ctx context.Context) (subscription.BucketState, error) {
	return subscription.ReadBucketState(ctx, h.kv)
}

// A task whose revision header is beyond anything the registry holds (a
// forged header, or a task scheduled before the bucket was restored or
// recreated, whose revisions then start lower) cannot make a live memo
// wait, restart its watch and send the lookup to the KV leader: the memo
// is as current as the registry itself, and answers.
func TestTaskRevisionBeyondTheRegistryIsAnsweredFromACurrentMemo(t *testing.T) {
	t.Parallel()
	m, src, kv, _, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(bucketHorizon{kv})}
	})
	ctx := context.Background()
	rev, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return m.Current(rev) })
	inUse(t, m, src)
	before := src.calls.Load()
	for _, need := range []uint64{rev + 1000, math.MaxUint64} {
		sub, err := m.Get(ctx, "acme", "sub_1", need)
		if err != nil || sub.GetUrl() != "https://one.example" {
			t.Fatalf("Get(need %d) = %v, %v", need, sub, err)
		}
	}
	if n := src.calls.Load() - before; n != 0 || m.Lagged() != 0 {
		t.Fatalf("a current memo sent %d lookups to the next cache and counted %d as lagging, for revisions the registry never reached", n, m.Lagged())
	}
}
