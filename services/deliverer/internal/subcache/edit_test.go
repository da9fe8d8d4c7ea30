package subcache_test

import (
	"context"
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// urls maps each subscription of a match to its URL.
func urls(subs []*hooklinev1.Subscription) map[string]string {
	out := make(map[string]string, len(subs))
	for _, s := range subs {
		out[s.GetId()] = s.GetUrl()
	}
	return out
}

// sameAsRedis checks that the memo matches every event type as the Redis
// cache itself does at revision rev.
func (r *registry) sameAsRedis(t *testing.T, tenant string, rev uint64) {
	t.Helper()
	ctx := context.Background()
	for _, et := range benchTypes {
		got, _, err := r.memo.ForEvent(ctx, tenant, et)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.src.next.ForEventAt(ctx, tenant, et, rev)
		if err != nil {
			t.Fatal(err)
		}
		if g, w := urls(got), urls(want); !maps.Equal(g, w) {
			t.Fatalf("%s matched %d subscriptions, redis %d; differing: %v", et, len(g), len(w), diff(g, w))
		}
	}
}

func diff(a, b map[string]string) []string {
	var out []string
	for id, u := range a {
		if b[id] != u {
			out = append(out, id+"="+u+" (memo)")
		}
	}
	for id, u := range b {
		if a[id] != u {
			out = append(out, id+"="+u+" (redis)")
		}
	}
	slices.Sort(out)
	return out
}

// An edit of one subscription costs the deliverer that subscription, not
// its tenant: the memo applies the changed record its watch reports, and
// the matches that follow read nothing from Redis, yet answer exactly what
// Redis answers. Before, each change made the memo forget the whole tenant,
// and the next match of each event type read and decoded every
// subscription of the tenant again.
func TestAnEditDoesNotReReadTheTenant(t *testing.T) {
	t.Parallel()
	const tenant = "acme"
	r := startRegistry(t, tenant, 100)
	ctx := context.Background()
	r.matchAll(t, tenant) // the memo holds every event type's answer
	if _, err := r.memo.Get(ctx, tenant, benchSubID(0), 0); err != nil {
		t.Fatal(err)
	}
	reads, gets := r.src.tenantReads.Load(), r.src.gets.Load()

	// An edit that moves a subscription to another URL and other event
	// types; a delete; a create; an edit that disables one.
	_, rev, err := r.store.Update(ctx, benchSubID(0), func(s *hooklinev1.Subscription) error {
		s.Url, s.EventTypes = "https://moved.example/hook", []string{"invoice.*", "user.>"}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r.awaitSeen(t, rev)
	r.sameAsRedis(t, tenant, rev)
	if sub, err := r.memo.Get(ctx, tenant, benchSubID(0), rev); err != nil || sub.GetUrl() != "https://moved.example/hook" {
		t.Fatalf("Get after the edit = %v, %v; want the new URL", sub.GetUrl(), err)
	}

	if _, rev, err = r.store.Delete(ctx, benchSubID(1)); err != nil {
		t.Fatal(err)
	}
	r.awaitSeen(t, rev)
	r.sameAsRedis(t, tenant, rev)

	if rev, err = r.store.Create(ctx, &hooklinev1.Subscription{Id: "sub_new", Tenant: tenant,
		Url: "https://new.example/hook", EventTypes: []string{"order.*"}}); err != nil {
		t.Fatal(err)
	}
	r.awaitSeen(t, rev)
	r.sameAsRedis(t, tenant, rev)

	if _, rev, err = r.store.Update(ctx, benchSubID(4), func(s *hooklinev1.Subscription) error {
		s.Disabled = true
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.awaitSeen(t, rev)
	r.sameAsRedis(t, tenant, rev)

	if n := r.src.tenantReads.Load() - reads; n != 0 {
		t.Fatalf("4 changes to one subscription each made the memo read the whole tenant from redis %d times; want 0", n)
	}
	if n := r.src.gets.Load() - gets; n != 0 {
		t.Fatalf("a memoised Get asked redis %d times after an edit; want 0", n)
	}
}

// A match that begins after an edit was acknowledged sees the edit, while
// another matcher keeps the memo busy (its fetches racing with the
// changes): the consistency rule, with the memo applying changes instead
// of forgetting tenants.
func TestAMatchRightAfterAnEditSeesIt(t *testing.T) {
	t.Parallel()
	const tenant = "acme"
	r := startRegistry(t, tenant, 50)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, et := range benchTypes {
				if _, _, err := r.memo.ForEvent(ctx, tenant, et); err != nil && ctx.Err() == nil {
					t.Error(err)
					return
				}
			}
		}
	})
	defer wg.Wait()
	defer cancel()
	id := benchSubID(0)
	for i := range 100 {
		url := "https://example.com/v" + strconv.Itoa(i)
		filters := []string{"order.created"}
		if i%3 == 2 {
			filters = []string{"invoice.*"} // no longer matches order.created
		}
		_, rev, err := r.store.Update(ctx, id, func(s *hooklinev1.Subscription) error {
			s.Url, s.EventTypes = url, filters
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		subs, matchRev, err := r.memo.ForEvent(ctx, tenant, "order.created")
		if err != nil {
			t.Fatal(err)
		}
		got, found := urls(subs)[id]
		if want := i%3 != 2; found != want || (found && got != url) {
			t.Fatalf("edit %d (revision %d, %v): a match right after it found %s: %v, %q; want %v, %q",
				i, rev, filters, id, found, got, want, url)
		}
		if matchRev < rev {
			t.Fatalf("match revision %d is before the edit's %d", matchRev, rev)
		}
		sub, err := r.memo.Get(ctx, tenant, id, matchRev)
		if err != nil || sub.GetUrl() != url {
			t.Fatalf("edit %d: Get at the match's revision = %v, %v; want %q", i, sub.GetUrl(), err, url)
		}
	}
}
