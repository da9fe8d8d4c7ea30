package subscription_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A tenant hash that is gone while the cache is ready (evicted by an LRU
// policy, or deleted) is "unknown", never "no subscriptions": the lookup
// answers from KV and the Syncer refills Redis. A tenant that never had a
// subscription is "none" from Redis alone.
func TestMissingTenantHashIsUnknownNotNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_ev", "order.*")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	if err := e.rdb.Del(ctx, subscription.TenantKey("acme")).Err(); err != nil {
		t.Fatal(err)
	}
	if got := forEventIDs(t, e.cache, "acme", "order.created"); !slices.Equal(got, []string{"sub_ev"}) {
		t.Fatalf("tenant hash evicted: ForEvent = %v; want [sub_ev] (from kv), not none", got)
	}
	eventually(t, "the hash refilled", func() bool {
		ok, _ := e.rdb.HExists(ctx, subscription.TenantKey("acme"), "sub_ev").Result()
		return ok
	})
	if got := forEventIDs(t, e.cache, "nobody", "order.created"); len(got) != 0 {
		t.Fatalf("a tenant without subscriptions: %v", got)
	}
	if ok, _ := e.rdb.HExists(ctx, subscription.ReadyKey, "nobody").Result(); ok {
		t.Fatal("a tenant without subscriptions is listed as having a hash")
	}
}

// The same with real eviction: Redis with a memory limit and allkeys-lru
// evicts the tenant hash (and maybe the marker); every lookup still finds
// the subscription.
func TestEvictedCacheNeverAnswersNone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_lru", "order.*")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	if err := e.rdb.ConfigSet(ctx, "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.ConfigSet(ctx, "maxmemory", "4mb").Err(); err != nil {
		t.Fatal(err)
	}
	// Fill Redis past its limit: the oldest keys (the cache's among them)
	// are evicted.
	junk := make([]byte, 64<<10)
	evicted := false
	for i := 0; i < 400 && !evicted; i++ {
		_ = e.rdb.Set(ctx, fmt.Sprintf("junk:%d", i), junk, 0).Err()
		n, err := e.rdb.Exists(ctx, subscription.TenantKey("acme")).Result()
		evicted = err == nil && n == 0
		if got := forEventIDs(t, e.cache, "acme", "order.created"); !slices.Equal(got, []string{"sub_lru"}) {
			t.Fatalf("after %d junk keys: ForEvent = %v; want [sub_lru]", i+1, got)
		}
	}
	if !evicted {
		t.Fatal("the tenant hash was never evicted: the test proves nothing")
	}
}

// After a FLUSHALL, several syncers (producers and deliverers) no longer
// cancel each other's replay: one claims it, the others wait, and the
// cache is ready again with few replays.
func TestSeveralSyncersReplayOnceAfterFlush(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	const subs, syncers = 2000, 4
	for i := range subs {
		if _, err := e.store.Create(ctx, newSub(fmt.Sprintf("t%d", i%50), fmt.Sprintf("sub_%04d", i), "order.*")); err != nil {
			t.Fatal(err)
		}
	}
	core, logs := observer.New(zapcore.InfoLevel)
	var wg sync.WaitGroup
	rctx, cancel := context.WithCancel(ctx)
	for range syncers {
		s := subscription.NewSyncer(e.store, subscription.NewCache(e.rdb, e.store), zap.New(core))
		wg.Go(func() { _ = s.Run(rctx) })
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	e.awaitReady(t)
	replaysBefore := logs.FilterMessage("subscription cache incomplete; replaying kv into redis").Len()
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		ok, _ := e.rdb.HExists(ctx, subscription.ReadyKey, subscription.ReadyAll).Result()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 60s after FLUSHALL; %d replays", logs.FilterMessage("subscription cache incomplete; replaying kv into redis").Len()-replaysBefore)
		}
		time.Sleep(20 * time.Millisecond)
	}
	replays := logs.FilterMessage("subscription cache incomplete; replaying kv into redis").Len() - replaysBefore
	t.Logf("ready %s after FLUSHALL with %d syncers and %d subscriptions; %d replays", time.Since(start).Round(time.Millisecond), syncers, subs, replays)
	if replays > 2*syncers {
		t.Fatalf("%d replays for %d syncers; want at most two each", replays, syncers)
	}
	if n, _ := e.rdb.HLen(ctx, subscription.ReadyKey).Result(); n != 52 {
		t.Fatalf("ready hash has %d fields; want the ready field, the origin and 50 tenants", n)
	}
}

// A KV record whose body names another tenant or id than its key (written
// by hand, or by a compromised writer) is trusted for nothing: the store,
// the cache and a replay all treat it as absent, so it can neither receive
// a tenant's events nor be looked up as another's subscription.
func TestRecordThatDisagreesWithItsKeyIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	kv, err := e.js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := subscription.Marshal(newSub("globex", "sub_victim", "order.*"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_forged"), forged); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.GetTenant(ctx, "acme", "sub_forged"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("store GetTenant: %v; want ErrNotFound", err)
	}
	if subs, err := e.store.List(ctx, "acme"); err != nil || len(subs) != 0 {
		t.Fatalf("store List: %v, %v; want none", ids(subs), err)
	}
	e.runSyncer(t)
	if got := forEventIDs(t, e.cache, "acme", "order.created"); len(got) != 0 {
		t.Fatalf("ForEvent: %v; want none", got)
	}
	if _, err := e.cache.Get(ctx, "acme", "sub_forged"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("cache Get: %v; want ErrNotFound", err)
	}
}
