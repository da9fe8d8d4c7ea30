package subscription_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// runObservedSyncer runs a Syncer that logs into an observer until the
// test ends, and waits for the cache to be ready.
func (e *env) runObservedSyncer(t *testing.T) *observer.ObservedLogs {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := subscription.NewSyncer(e.store, e.cache, zap.New(core))
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer Run: %v", err)
		}
	})
	e.awaitReady(t)
	return logs
}

func setURL(t *testing.T, e *env, id, url string) uint64 {
	t.Helper()
	_, rev, err := e.store.Update(context.Background(), id, func(s *hooklinev1.Subscription) error {
		s.Url = url
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// match is a deliverer's match: the revision it needs from the Horizon,
// then the cache's answer for it.
func match(t *testing.T, e *env, h *subscription.Horizon, tenant string) map[string]string {
	t.Helper()
	ctx := context.Background()
	need, err := h.Required(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := e.cache.ForEventAt(ctx, tenant, "order.paid", need)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, s := range subs {
		out[s.GetId()] = s.GetUrl()
	}
	return out
}

func sameMatch(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A subscriptions bucket deleted and created again counts its revisions
// from 1: the Redis watermark of the old bucket (and its records' higher
// revisions) must not make the cache look current, nor keep the new
// records out. A match right after the recreation sees the new bucket, and
// the cache is reset and replayed, so that Redis answers from the new
// truth again.
func TestRecreatedBucketIsNotTrustedAndReplays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, id := range []string{"sub_a", "sub_b", "sub_c", "sub_d", "sub_e"} {
		if _, err := e.store.Create(ctx, newSub("acme", id, "order.*")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 4 {
		setURL(t, e, "sub_a", "https://old.example/a"+strconv.Itoa(i))
	}
	oldLast, err := e.store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logs := e.runObservedSyncer(t)
	eventually(t, "the watermark of the old bucket", func() bool { return e.watermark(t) == oldLast })
	h := subscription.NewHorizon(e.store)
	if got := match(t, e, h, "acme"); len(got) != 5 {
		t.Fatalf("before: %v", got)
	}

	// The bucket is deleted and created again, with fewer records.
	if err := e.js.DeleteKeyValue(ctx, stream.SubscriptionsBucket); err != nil {
		t.Fatal(err)
	}
	if err := stream.Ensure(ctx, e.js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Create(ctx, newSub("acme", "sub_b", "order.*")); err != nil {
		t.Fatal(err)
	}
	last := setURL(t, e, "sub_a", "https://new.example/a")
	if last >= oldLast {
		t.Fatalf("the new bucket's revision %d is not below the old %d: the test proves nothing", last, oldLast)
	}
	want := map[string]string{"sub_a": "https://new.example/a", "sub_b": "https://example.com/hook"}

	// At once: the truth, not Redis' records of the old bucket.
	if got := match(t, e, h, "acme"); !sameMatch(got, want) {
		t.Fatalf("right after the recreation a match saw %v; want %v", got, want)
	}
	need, err := h.Required(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.cache.GetAt(ctx, "acme", "sub_c", need); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("a subscription of the old bucket only: %v; want ErrNotFound", err)
	}
	if got, err := e.cache.GetAt(ctx, "acme", "sub_a", need); err != nil || got.GetUrl() != want["sub_a"] {
		t.Fatalf("GetAt(sub_a) = %v, %v; want %s", got.GetUrl(), err, want["sub_a"])
	}

	// The cache is reset and replayed: Redis holds the new bucket alone,
	// its watermark is the new bucket's, and it answers matches itself.
	eventually(t, "redis replayed from the new bucket", func() bool {
		hash, err := e.rdb.HGetAll(ctx, subscription.TenantKey("acme")).Result()
		if err != nil || len(hash) != 2 || e.watermark(t) != last {
			return false
		}
		ok, _ := e.rdb.HExists(ctx, subscription.ReadyKey, subscription.ReadyAll).Result()
		return ok
	})
	behind := e.cache.Behind()
	if got := match(t, e, h, "acme"); !sameMatch(got, want) || e.cache.Behind() != behind {
		t.Fatalf("after the replay a match saw %v (%d lookups behind); want %v from redis", got, e.cache.Behind()-behind, want)
	}
	if e.cache.Rewound() == 0 {
		t.Fatal("the recreation was not counted")
	}
	if logs.FilterMessageSnippet("recreated or restored backwards").Len() == 0 {
		t.Fatal("the recreation was not logged")
	}

	// And it keeps following the new bucket.
	last = setURL(t, e, "sub_b", "https://new.example/b")
	want["sub_b"] = "https://new.example/b"
	eventually(t, "the watermark of the next change", func() bool { return e.watermark(t) == last })
	if got := match(t, e, h, "acme"); !sameMatch(got, want) {
		t.Fatalf("after a change in the new bucket a match saw %v; want %v", got, want)
	}
}

// A bucket restored from an older backup keeps the backed-up stream's
// creation time (nats stream restore): only its last revision, below the
// cache's watermark, gives it away. Stood in for here by a cache whose
// watermark and records are beyond the bucket (as they are after such a
// restore): the Syncer resets and replays it.
func TestWatermarkBeyondTheBucketIsReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	last := setURL(t, e, "sub_a", "https://restored.example/a")
	logs := e.runObservedSyncer(t)
	eventually(t, "the watermark", func() bool { return e.watermark(t) == last })
	// What the cache held before the restore: later revisions.
	e.cacheBeyond(t, last+50)
	eventually(t, "the cache reset and replayed without the records beyond the bucket", func() bool {
		hash, err := e.rdb.HGetAll(ctx, subscription.TenantKey("acme")).Result()
		ok, _ := e.rdb.HExists(ctx, subscription.ReadyKey, subscription.ReadyAll).Result()
		return err == nil && ok && len(hash) == 1 && e.watermark(t) == last
	})
	need, err := subscription.NewHorizon(e.store).Required(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := e.cache.ForEventAt(ctx, "acme", "order.paid", need)
	if err != nil || !slices.Equal(ids(subs), []string{"sub_a"}) {
		t.Fatalf("after the reset: %v, %v; want [sub_a]", ids(subs), err)
	}
	if e.cache.Rewound() == 0 || logs.FilterMessageSnippet("recreated or restored backwards").Len() == 0 {
		t.Fatalf("the reset was not counted (%d) or not logged", e.cache.Rewound())
	}
}

// The same restore seen by a lookup before any Syncer checks: the cache's
// watermark beyond the bucket's last revision (which the lookup's Horizon
// round read) is not trusted, and the registry answers.
func TestLookupDoesNotTrustAWatermarkBeyondTheBucket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- subscription.NewSyncer(e.store, e.cache, nil).Run(sctx) }()
	e.awaitReady(t)
	last, err := e.store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watermark", func() bool { return e.watermark(t) == last })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	e.cacheBeyond(t, last+50)
	need, err := subscription.NewHorizon(e.store).Required(ctx)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := e.cache.ForEventAt(ctx, "acme", "order.paid", need)
	if err != nil || !slices.Equal(ids(subs), []string{"sub_a"}) {
		t.Fatalf("a match against a cache beyond the bucket saw %v, %v; want [sub_a] from the registry", ids(subs), err)
	}
	if _, err := e.cache.GetAt(ctx, "acme", "sub_gone", need); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("GetAt(sub_gone) = %v; want ErrNotFound from the registry", err)
	}
}

// A busy registry is no rewound one: two syncers follow a stream of
// changes while matches keep asking them to check the bucket (each match
// that finds the watermark beyond the last revision its Horizon read), and
// neither resets the cache. (The check reads the watermark before the
// bucket's last revision, so a change applied between the two reads cannot
// pass for a rewind; the window is too short for this test to hit with the
// reads the other way round, so it does not prove the order.)
func TestBusyRegistryIsNotTakenForARewoundOne(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	var caches []*subscription.Cache
	done := make(chan error, 2)
	for range 2 {
		c := subscription.NewCache(e.rdb, e.store)
		caches = append(caches, c)
		s := subscription.NewSyncer(e.store, c, nil)
		go func() { done <- s.Run(rctx) }()
	}
	t.Cleanup(func() {
		cancel()
		for range 2 {
			<-done
		}
	})
	e.awaitReady(t)
	// Matches meanwhile: each that finds the watermark beyond the last
	// revision its Horizon read has a syncer check the bucket, so there
	// are many checks amid the changes.
	h := subscription.NewHorizon(e.store)
	lctx, stopLookups := context.WithCancel(ctx)
	looked := make(chan struct{})
	go func() {
		defer close(looked)
		for n := 0; lctx.Err() == nil; n++ {
			need, err := h.Required(lctx)
			if err != nil {
				continue
			}
			_, _ = caches[n%2].ForEventAt(lctx, "acme", "order.paid", need)
		}
	}()
	start := time.Now()
	i := 0
	for time.Since(start) < 2200*time.Millisecond { // two ticks of each syncer, and the matches' checks
		setURL(t, e, "sub_a", "https://example.com/"+strconv.Itoa(i))
		i++
		// Paced, so that no syncer falls 256 changes behind (a watch
		// stopped with its channel full leaves nats.go's callback
		// blocked, which goleak reports).
		time.Sleep(5 * time.Millisecond)
	}
	stopLookups()
	<-looked
	// Caught up before they stop (a watch stopped with a full channel
	// leaves nats.go's callback blocked).
	last, err := e.store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the syncers caught up", func() bool { return e.watermark(t) == last })
	for n, c := range caches {
		if c.Rewound() != 0 {
			t.Fatalf("syncer %d took a busy registry (%d changes) for a rewound one %d times", n, i, c.Rewound())
		}
	}
	t.Logf("%d changes", i)
}

// cacheBeyond writes into Redis what a cache of a bucket that went back
// holds: a record (sub_gone) and the watermark at rev, beyond the bucket's
// last revision.
func (e *env) cacheBeyond(t *testing.T, rev uint64) {
	t.Helper()
	ctx := context.Background()
	ahead := strconv.FormatUint(rev, 10)
	gone, err := subscription.Marshal(newSub("acme", "sub_gone", "order.*"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, subscription.TenantKey("acme"), "sub_gone", ahead+" "+string(gone)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.Set(ctx, subscription.WatermarkKey, ahead, 0).Err(); err != nil {
		t.Fatal(err)
	}
}
