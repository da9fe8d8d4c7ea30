package subscription

import (
	"context"
	"slices"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestTenantListFallbackIsAsCurrentAsTheRevisionItNeeds: when Redis
// cannot answer, a match lists the tenant from the KV bucket, and that
// list may be read from an R3 follower that has not applied the newest
// writes (here a stale bucket stands in for it: it answers the watch and
// the direct gets, while the JetStream API answers from the real stream,
// as the leader does). The list must hold every change up to the revision
// the match needs: a changed URL, a new subscription, a tenant the
// follower does not know yet, a deleted subscription.
func TestTenantListFallbackIsAsCurrentAsTheRevisionItNeeds(t *testing.T) {
	ctx := context.Background()
	js, store := newMemStore(t)
	newSub := func(tenant, id string) *hooklinev1.Subscription {
		return &hooklinev1.Subscription{Id: id, Tenant: tenant, Url: "https://old.example/" + id, EventTypes: []string{"order.*"}}
	}
	stale, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "stale_view", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	// What the follower applied: sub_a at its old URL, sub_gone.
	for _, sub := range []*hooklinev1.Subscription{newSub("acme", "sub_a"), newSub("acme", "sub_gone")} {
		if _, err := store.Create(ctx, sub); err != nil {
			t.Fatal(err)
		}
		b, _ := Marshal(sub)
		if _, err := stale.Put(ctx, stream.SubscriptionKey(sub.GetTenant(), sub.GetId()), b); err != nil {
			t.Fatal(err)
		}
	}
	// What only the leader has.
	if _, _, err := store.Update(ctx, "sub_a", func(s *hooklinev1.Subscription) error {
		s.Url = "https://new.example/sub_a"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, newSub("acme", "sub_b")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := store.Delete(ctx, "sub_gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Create(ctx, newSub("globex", "sub_g")); err != nil {
		t.Fatal(err)
	}
	need, err := store.LastRevision(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A Redis that is not ready: every match falls back to the bucket.
	rdb := redistest.Start(t).Client(t)
	follower := NewCache(rdb, &Store{js: js, kv: stale})
	leader := NewCache(rdb, store)
	urls := func(c *Cache, tenant string) []string {
		t.Helper()
		subs, err := c.ForEventAt(ctx, tenant, "order.paid", need)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range subs {
			out = append(out, s.GetId()+" "+s.GetUrl())
		}
		return out
	}
	for name, c := range map[string]*Cache{"through a lagging follower": follower, "through the leader": leader} {
		if got, want := urls(c, "acme"), []string{"sub_a https://new.example/sub_a", "sub_b https://old.example/sub_b"}; !slices.Equal(got, want) {
			t.Errorf("%s: acme matched %v; want %v", name, got, want)
		}
		if got, want := urls(c, "globex"), []string{"sub_g https://old.example/sub_g"}; !slices.Equal(got, want) {
			t.Errorf("%s: globex matched %v; want %v", name, got, want)
		}
		if got := urls(c, "nobody"); len(got) != 0 {
			t.Errorf("%s: a tenant without subscriptions matched %v", name, got)
		}
	}
	// A current replica's direct answer is taken as it is (no request per
	// record to the leader); a lagging one's says how far it is.
	if subs, upTo, err := store.directTenant(ctx, "acme"); err != nil || upTo < need || len(subs) != 2 {
		t.Fatalf("direct get from the stream: %d subscriptions up to %d, %v; want 2 up to %d at least", len(subs), upTo, err, need)
	}
	if _, upTo, err := (&Store{js: js, kv: stale}).directTenant(ctx, "acme"); err != nil || upTo >= need {
		t.Fatalf("direct get from the stand-in follower: up to %d, %v; want below %d", upTo, err, need)
	}
	// A revision beyond anything the registry holds is capped at its last.
	if subs, err := store.ListAt(ctx, "acme", need+1000); err != nil || len(subs) != 2 {
		t.Fatalf("ListAt beyond the registry: %d subscriptions, %v", len(subs), err)
	}
	// Without a needed revision (need 0) the list is what it always was.
	if subs, err := follower.ForEventAt(ctx, "acme", "order.paid", 0); err != nil || len(subs) != 2 {
		t.Fatalf("need 0 through the follower: %d subscriptions, %v; want its 2 (sub_a old, sub_gone)", len(subs), err)
	}
}
