package subscription_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go/jetstream"
)

func (e *env) watermark(t *testing.T) uint64 {
	t.Helper()
	v, err := e.rdb.Get(context.Background(), subscription.WatermarkKey).Result()
	if err != nil {
		return 0
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("watermark %q: %v", v, err)
	}
	return n
}

// The Redis cache says how current it is: after its replay and after each
// change its Syncer applies, the watermark is the registry's last revision.
func TestWatermarkFollowsTheRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	last := func() uint64 {
		n, err := e.store.LastRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	e.runSyncer(t)
	eventually(t, "the watermark at the replayed revision", func() bool { return e.watermark(t) == last() })
	for i := range 3 {
		if _, _, err := e.store.Update(ctx, "sub_a", func(s *hooklinev1.Subscription) error {
			s.Description = strconv.Itoa(i)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		want := last()
		eventually(t, "the watermark at the changed revision", func() bool { return e.watermark(t) == want })
	}
	if _, _, err := e.store.Delete(ctx, "sub_a"); err != nil {
		t.Fatal(err)
	}
	want := last()
	eventually(t, "the watermark past a delete", func() bool { return e.watermark(t) == want })
}

// A lookup that needs a revision the cache has not reached reads the
// registry, even where Redis holds an answer: the Syncer may be dead, and
// its hash entry is then the old subscription.
func TestLookupBehindTheWatermarkReadsTheRegistry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	rev, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*"))
	if err != nil {
		t.Fatal(err)
	}
	ctxSync, stopSync := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- subscription.NewSyncer(e.store, e.cache, nil).Run(ctxSync) }()
	e.awaitReady(t)
	eventually(t, "the watermark", func() bool { return e.watermark(t) == rev })
	stopSync()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Nobody applies these to Redis.
	if _, _, err := e.store.Update(ctx, "sub_a", func(s *hooklinev1.Subscription) error {
		s.Url = "https://new.example/hook"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Create(ctx, newSub("acme", "sub_b", "order.*")); err != nil {
		t.Fatal(err)
	}
	need, err := e.store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Without a need, Redis answers as it is (what every lookup did before).
	stale, err := e.cache.ForEvent(ctx, "acme", "order.paid")
	if err != nil || len(stale) != 1 {
		t.Fatalf("the stale cache answered %v, %v: the test proves nothing", ids(stale), err)
	}
	subs, err := e.cache.ForEventAt(ctx, "acme", "order.paid", need)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 {
		t.Fatalf("ForEventAt(%d) = %v, want sub_a and sub_b", need, ids(subs))
	}
	got, err := e.cache.GetAt(ctx, "acme", "sub_a", need)
	if err != nil || got.GetUrl() != "https://new.example/hook" {
		t.Fatalf("GetAt(%d) = %v, %v; want the new URL", need, got.GetUrl(), err)
	}
	if e.cache.Behind() != 2 {
		t.Fatalf("Behind() = %d, want the 2 lookups counted", e.cache.Behind())
	}
}

// A Redis that comes back from an older snapshot (or a failover to a
// replica that lagged) has lost writes it acknowledged while still saying
// ready: the Syncer notices at its next change, because the watermark it
// set went back, and replays.
func TestRedisThatLostWritesIsReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	rev, err := e.store.Create(ctx, newSub("acme", "sub_b", "order.*"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the watermark", func() bool { return e.watermark(t) == rev })
	// The snapshot from before sub_b: its record and the watermark that
	// covered it are gone, the ready marker is still there.
	if err := e.rdb.HDel(ctx, subscription.TenantKey("acme"), "sub_b").Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.Set(ctx, subscription.WatermarkKey, strconv.FormatUint(rev-1, 10), 0).Err(); err != nil {
		t.Fatal(err)
	}
	rev, err = e.store.Create(ctx, newSub("acme", "sub_c", "order.*"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "a replay restoring sub_b and the watermark", func() bool {
		ok, err := e.rdb.HExists(ctx, subscription.TenantKey("acme"), "sub_b").Result()
		return err == nil && ok && e.watermark(t) >= rev
	})
	subs, err := e.cache.ForEventAt(ctx, "acme", "order.paid", rev)
	if err != nil || len(subs) != 3 {
		t.Fatalf("after the replay: %v, %v", ids(subs), err)
	}
}

// When the bucket's newest records are gone from its stream (deleted by
// hand, or purged), the replay's own revisions stop short of the stream's
// last sequence: the leader, asked, has nothing in between, so the cache is
// current up to that sequence and lookups needing it are answered from
// Redis rather than from the registry forever.
func TestWatermarkReachesTheLastRevisionAfterTheNewestRecordsWentAway(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, id := range []string{"sub_a", "sub_b", "sub_c"} {
		if _, err := e.store.Create(ctx, newSub("acme", id, "order.*")); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := e.store.Delete(ctx, "sub_c"); err != nil {
		t.Fatal(err)
	}
	kv, err := e.js.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.PurgeDeletes(ctx, jetstream.DeleteMarkersOlderThan(-1)); err != nil {
		t.Fatal(err)
	}
	last, err := e.store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	eventually(t, "the watermark at the stream's last sequence", func() bool { return e.watermark(t) == last })
	subs, err := e.cache.ForEventAt(ctx, "acme", "order.paid", last)
	if err != nil || len(subs) != 2 || e.cache.Behind() != 0 {
		t.Fatalf("ForEventAt(%d) = %v, %v with %d lookups behind; want sub_a and sub_b from Redis", last, ids(subs), err, e.cache.Behind())
	}
}
