package subscription_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/redis/go-redis/v9"
)

// coherence is how soon a KV change must be visible through the Cache.
const coherence = time.Second

func forEventIDs(t *testing.T, c *subscription.Cache, tenant, eventType string) []string {
	t.Helper()
	subs, err := c.ForEvent(context.Background(), tenant, eventType)
	if err != nil {
		t.Fatalf("ForEvent: %v", err)
	}
	got := ids(subs)
	slices.Sort(got)
	return got
}

// TestCacheSeesKVChanges writes only to the Store (no write-through): the
// Syncer alone must carry every change into Redis.
func TestCacheSeesKVChanges(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_old", "order.created")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	if got := forEventIDs(t, e.cache, "acme", "order.created"); !slices.Equal(got, []string{"sub_old"}) {
		t.Fatalf("initial replay: %v", got)
	}

	if _, err := e.store.Create(ctx, newSub("acme", "sub_a", "order.*")); err != nil {
		t.Fatal(err)
	}
	within(t, coherence, "create", func() bool {
		return slices.Equal(forEventIDs(t, e.cache, "acme", "order.created"), []string{"sub_a", "sub_old"})
	})

	if _, _, err := e.store.Update(ctx, "sub_a", func(s *hooklinev1.Subscription) error {
		s.EventTypes = []string{"invoice.>"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	within(t, coherence, "update", func() bool {
		return slices.Equal(forEventIDs(t, e.cache, "acme", "invoice.paid"), []string{"sub_a"}) &&
			slices.Equal(forEventIDs(t, e.cache, "acme", "order.created"), []string{"sub_old"})
	})

	if _, _, err := e.store.Update(ctx, "sub_a", func(s *hooklinev1.Subscription) error {
		s.Disabled, s.DisabledReason = true, "manual"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	within(t, coherence, "disable", func() bool {
		return len(forEventIDs(t, e.cache, "acme", "invoice.paid")) == 0
	})
	// Disabled subscriptions are still readable one by one.
	got, err := e.cache.Get(ctx, "acme", "sub_a")
	if err != nil || !got.GetDisabled() || got.GetDisabledReason() != "manual" {
		t.Fatalf("Get disabled: %v err %v", got, err)
	}

	if _, _, err := e.store.Delete(ctx, "sub_a"); err != nil {
		t.Fatal(err)
	}
	within(t, coherence, "delete", func() bool {
		_, err := e.cache.Get(ctx, "acme", "sub_a")
		return errors.Is(err, subscription.ErrNotFound)
	})
	// The tombstone is in Redis (answered by the cache, not the store).
	v, err := e.rdb.HGet(ctx, subscription.TenantKey("acme"), "sub_a").Result()
	if err != nil || !strings.HasSuffix(v, " ") || strings.TrimSpace(v) == "" {
		t.Fatalf("tombstone %q err %v", v, err)
	}
	// Tenants are isolated.
	if got := forEventIDs(t, e.cache, "other", "order.created"); len(got) != 0 {
		t.Fatalf("other tenant sees %v", got)
	}
}

func TestCacheWriteThroughIsImmediate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.runSyncer(t)
	sub := newSub("acme", "sub_w", "ping")
	rev, err := e.store.Create(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, "acme", "sub_w", sub); err != nil {
		t.Fatal(err)
	}
	// No waiting: the write-through already put it in Redis.
	if got := forEventIDs(t, e.cache, "acme", "ping"); !slices.Equal(got, []string{"sub_w"}) {
		t.Fatalf("after write-through: %v", got)
	}
	c, err := e.cache.Get(ctx, "acme", "sub_w")
	if err != nil || len(c.GetKeys()) != 1 || c.GetKeys()[0].GetSecret() == "" {
		t.Fatalf("cached record lacks its signing keys: %v err %v", c, err)
	}
}

// advanceRegistry writes records until the registry's last revision is
// at least rev: the revisions a test applies must be ones the registry
// could have (the cache repairs a record beyond it).
func (e *env) advanceRegistry(t *testing.T, rev uint64) {
	t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		last, err := e.store.LastRevision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if last >= rev {
			return
		}
		if _, err := e.store.Create(ctx, newSub("filler", fmt.Sprintf("sub_fill_%d", i), "x")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCacheRevisionGuard(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.advanceRegistry(t, 100)
	newer := newSub("acme", "sub_g", "new.type")
	older := newSub("acme", "sub_g", "old.type")
	if err := e.cache.Apply(ctx, 10, "acme", "sub_g", newer); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, 9, "acme", "sub_g", older); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, subscription.ReadyKey, subscription.ReadyAll, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got := forEventIDs(t, e.cache, "acme", "new.type"); !slices.Equal(got, []string{"sub_g"}) {
		t.Fatalf("older revision overwrote newer: %v", got)
	}
	// A tombstone wins over older writes and loses to newer ones.
	if err := e.cache.Apply(ctx, 11, "acme", "sub_g", nil); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, 10, "acme", "sub_g", newer); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cache.Get(ctx, "acme", "sub_g"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("older write resurrected a deleted subscription: %v", err)
	}
	// Revisions compare as numbers, not strings ("100" > "99").
	if err := e.cache.Apply(ctx, 100, "acme", "sub_g", older); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, 99, "acme", "sub_g", newer); err != nil {
		t.Fatal(err)
	}
	if got := forEventIDs(t, e.cache, "acme", "old.type"); !slices.Equal(got, []string{"sub_g"}) {
		t.Fatalf("rev 99 overwrote rev 100: %v", got)
	}
}

func TestCacheSurvivesFlushAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_f", "order.*")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// The very next lookup is still right (answered from KV) …
	if got := forEventIDs(t, e.cache, "acme", "order.created"); !slices.Equal(got, []string{"sub_f"}) {
		t.Fatalf("after FLUSHALL: %v", got)
	}
	if got, err := e.cache.Get(ctx, "acme", "sub_f"); err != nil || got.GetId() != "sub_f" {
		t.Fatalf("Get after FLUSHALL: %v err %v", got, err)
	}
	// … and it made the Syncer refill Redis.
	e.awaitReady(t)
	eventually(t, "hash refilled", func() bool {
		n, _ := e.rdb.HExists(ctx, subscription.TenantKey("acme"), "sub_f").Result()
		return n
	})
	// The Syncer still follows changes after the refill.
	if _, err := e.store.Create(ctx, newSub("acme", "sub_g", "order.created")); err != nil {
		t.Fatal(err)
	}
	within(t, coherence, "create after refill", func() bool {
		n, _ := e.rdb.HExists(ctx, subscription.TenantKey("acme"), "sub_g").Result()
		return n
	})
}

func TestCacheSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_r", ">")); err != nil {
		t.Fatal(err)
	}
	e.runSyncer(t)

	e.redis.Stop()
	// Redis down: lookups answer from KV instead of failing.
	if got := forEventIDs(t, e.cache, "acme", "x.y"); !slices.Equal(got, []string{"sub_r"}) {
		t.Fatalf("with redis down: %v", got)
	}
	// A change made while Redis is down …
	if _, err := e.store.Create(ctx, newSub("acme", "sub_s", "x.*")); err != nil {
		t.Fatal(err)
	}
	e.redis.Restart(t)
	// … is there after it comes back empty.
	eventually(t, "lookups answer again with redis back", func() bool {
		return slices.Equal(forEventIDs(t, e.cache, "acme", "x.y"), []string{"sub_r", "sub_s"})
	})
	e.awaitReady(t)
	eventually(t, "hash refilled", func() bool {
		n, _ := e.rdb.HLen(ctx, subscription.TenantKey("acme")).Result()
		return n == 2
	})
}

func TestCacheWithoutRedisMarkerUsesStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	// No Syncer ever ran: nothing in Redis, no marker.
	if _, err := e.store.Create(ctx, newSub("acme", "sub_n", "a.b")); err != nil {
		t.Fatal(err)
	}
	if got := forEventIDs(t, e.cache, "acme", "a.b"); !slices.Equal(got, []string{"sub_n"}) {
		t.Fatalf("no marker: %v", got)
	}
	if _, err := e.cache.Get(ctx, "acme", "sub_nope"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}

// A deleted subscription's tombstone blocks late older writes for the
// tombstone TTL, then the Syncer prunes it, so that tenants that churn
// subscriptions do not grow their hash forever. A field that changed since
// (re-created) is not pruned.
func TestSyncerPrunesTombstones(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for _, id := range []string{"sub_gone", "sub_back", "sub_last", "sub_kept"} {
		if _, err := e.store.Create(ctx, newSub("acme", id, "order.*")); err != nil {
			t.Fatal(err)
		}
	}
	e.runSyncer(t, subscription.WithTombstoneTTL(200*time.Millisecond))
	field := func(id string) (string, bool) {
		v, err := e.rdb.HGet(ctx, subscription.TenantKey("acme"), id).Result()
		if errors.Is(err, redis.Nil) {
			return "", false
		}
		if err != nil {
			t.Fatal(err)
		}
		return v, true
	}

	_, rev, err := e.store.Delete(ctx, "sub_gone")
	if err != nil {
		t.Fatal(err)
	}
	tomb := strconv.FormatUint(rev, 10) + " "
	eventually(t, "the tombstone", func() bool { v, ok := field("sub_gone"); return ok && v == tomb })
	eventually(t, "the tombstone pruned", func() bool { _, ok := field("sub_gone"); return !ok })

	// Deleted and created again before its tombstone is due: the new
	// revision stays. sub_last's tombstone is queued after sub_back's, so
	// once it is pruned, sub_back's turn has come and gone.
	if _, _, err := e.store.Delete(ctx, "sub_back"); err != nil {
		t.Fatal(err)
	}
	backRev, err := e.store.Create(ctx, newSub("acme", "sub_back", "invoice.*"))
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "sub_back re-created in redis", func() bool {
		v, ok := field("sub_back")
		return ok && strings.HasPrefix(v, strconv.FormatUint(backRev, 10)+" {")
	})
	if _, _, err := e.store.Delete(ctx, "sub_last"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "sub_last's tombstone pruned", func() bool { _, ok := field("sub_last"); return !ok })
	if v, ok := field("sub_back"); !ok || !strings.HasPrefix(v, strconv.FormatUint(backRev, 10)+" {") {
		t.Fatalf("sub_back = %q (present %v), want revision %d kept", v, ok, backRev)
	}
	if got := forEventIDs(t, e.cache, "acme", "order.created"); !slices.Equal(got, []string{"sub_kept"}) {
		t.Fatalf("ForEvent after pruning = %v, want [sub_kept]", got)
	}
	if _, err := e.cache.Get(ctx, "acme", "sub_gone"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("Get of a pruned subscription: %v, want ErrNotFound", err)
	}
}

// A record planted in Redis with a revision the registry never reached (a
// hijack that a later write could not repair: the revision guard kept it)
// is replaced by the next real write.
func TestCacheRepairsAnImpossibleRevision(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	real := newSub("acme", "sub_h", "order.*")
	rev, err := e.store.Create(ctx, real)
	if err != nil {
		t.Fatal(err)
	}
	forged := newSub("acme", "sub_h", "order.*")
	forged.Url = "https://attacker.example/"
	b, err := subscription.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, subscription.TenantKey("acme"), "sub_h", "999999999 "+string(b)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, "acme", "sub_h", real); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, subscription.ReadyKey, subscription.ReadyAll, "x").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := e.cache.Get(ctx, "acme", "sub_h")
	if err != nil || got.GetUrl() != real.GetUrl() {
		t.Fatalf("after the real write: %v (url %q), want the registry's url", err, got.GetUrl())
	}
}

// With record authentication, a record written by anyone without the key
// is never believed: the registry answers, and the next write repairs it.
func TestCacheRecordAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	key, err := secretbox.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.Config{Key: key}.Box()
	if err != nil {
		t.Fatal(err)
	}
	cache := subscription.NewCache(e.rdb, e.store, subscription.WithRecordAuth(box))
	real := newSub("acme", "sub_a", "order.*")
	rev, err := e.store.Create(ctx, real)
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Apply(ctx, rev, "acme", "sub_a", real); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.HSet(ctx, subscription.ReadyKey, subscription.ReadyAll, "x").Err(); err != nil {
		t.Fatal(err)
	}
	if got, err := cache.Get(ctx, "acme", "sub_a"); err != nil || got.GetUrl() != real.GetUrl() {
		t.Fatalf("authenticated record: %v %v", got, err)
	}
	// Forged in Redis: another URL, the same revision, no or a copied tag.
	forged := newSub("acme", "sub_a", "order.*")
	forged.Url = "https://attacker.example/"
	b, err := subscription.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	cur := e.rdb.HGet(ctx, subscription.TenantKey("acme"), "sub_a").Val()
	tag := strings.Fields(cur)[1]
	for _, v := range []string{fmt.Sprintf("%d %s", rev, b), fmt.Sprintf("%d %s %s", rev, tag, b)} {
		if err := e.rdb.HSet(ctx, subscription.TenantKey("acme"), "sub_a", v).Err(); err != nil {
			t.Fatal(err)
		}
		got, err := cache.Get(ctx, "acme", "sub_a")
		if err != nil || got.GetUrl() != real.GetUrl() {
			t.Fatalf("forged record %.40q believed: url %q err %v", v, got.GetUrl(), err)
		}
		subs, err := cache.ForEvent(ctx, "acme", "order.created")
		if err != nil || len(subs) != 1 || subs[0].GetUrl() != real.GetUrl() {
			t.Fatalf("forged record %.40q matched: %v %v", v, subs, err)
		}
	}
	// The next real write replaces it, whatever revision it claimed.
	if err := e.rdb.HSet(ctx, subscription.TenantKey("acme"), "sub_a", fmt.Sprintf("999999999 %s", b)).Err(); err != nil {
		t.Fatal(err)
	}
	if err := cache.Apply(ctx, rev, "acme", "sub_a", real); err != nil {
		t.Fatal(err)
	}
	v := e.rdb.HGet(ctx, subscription.TenantKey("acme"), "sub_a").Val()
	if !strings.HasPrefix(v, fmt.Sprintf("%d h1:", rev)) {
		t.Fatalf("record after the real write: %.60q", v)
	}
}
