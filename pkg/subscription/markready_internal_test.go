package subscription

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/redistest"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// A replay marks the cache ready only after it wrote every tenant's hash,
// and Redis under maxmemory with allkeys-lru may evict one of those hashes
// in between (CI saw it: TestEvictedCacheNeverAnswersNone). markReady used
// to list only the tenants whose hash still existed, so the evicted
// tenant read as ready with no hash: "no subscriptions" for every event,
// each acked and dropped. A tenant the replay left with a live
// subscription is listed whatever its hash, and reads as lost (answered
// from KV); one left with none is not listed.
func TestMarkReadyListsATenantWhoseHashWasEvicted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, store := newMemStore(t)
	rdb := redistest.Start(t).Client(t)
	sub := &hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Url: "https://acme.example/hook", EventTypes: []string{"order.*"}}
	if _, err := store.Create(ctx, sub); err != nil {
		t.Fatal(err)
	}
	const token = "replay-1"
	if err := rdb.Set(ctx, SyncKey, token, 0).Err(); err != nil {
		t.Fatal(err)
	}
	// The replay saw acme's sub_1 (live) and globex's sub_9 put then
	// deleted; neither hash exists any more when it marks the cache ready.
	tenants := map[string]map[string]bool{"acme": {"sub_1": true}, "globex": {}}
	res, err := markReady.Run(ctx, rdb, []string{SyncKey, ReadyKey}, markReadyArgs(token, 0, tenants)...).Int()
	if err != nil || res != 1 {
		t.Fatalf("markReady = %d, %v; want 1 (marked ready)", res, err)
	}
	if ok, _ := rdb.HExists(ctx, ReadyKey, "acme").Result(); !ok {
		t.Fatal("acme, with a live subscription and its hash evicted, is not listed: it would read as having none")
	}
	if ok, _ := rdb.HExists(ctx, ReadyKey, "globex").Result(); ok {
		t.Fatal("globex, left with no subscription and no hash, is listed: every lookup would replay")
	}
	cache := NewCache(rdb, store)
	got, err := cache.ForEvent(ctx, "acme", "order.created")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].GetId() != "sub_1" {
		t.Fatalf("ForEvent(acme) = %v; want [sub_1] (from KV)", got)
	}
}
