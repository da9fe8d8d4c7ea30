package service_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/signing"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// killWatches deletes every consumer of the subscriptions bucket's stream:
// the KV watches of the deliverer's memo and of its Redis syncer. That is
// what the death of the cluster node hosting an R1 watch consumer does; a
// watch learns of it only from missing heartbeats, seconds later, and
// meanwhile reports no change.
func (e *env) killWatches(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	st, err := e.js.Stream(ctx, "KV_"+stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	names := st.ConsumerNames(ctx)
	n := 0
	for name := range names.Name() {
		if err := st.DeleteConsumer(ctx, name); err != nil {
			t.Fatal(err)
		}
		n++
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
	if n == 0 {
		t.Fatal("no watch consumer to delete: the test would prove nothing")
	}
}

// An event is matched, and its task delivered, against a view that holds
// every subscription change acknowledged before the event was published —
// even when every watch that keeps the memo and the Redis cache current is
// dead and reports nothing. Before the watermark, the memo answered from
// entries it had no way to know were stale: the event below went to the
// old URL, a deleted subscription still received, and a new subscription's
// event was acked as unmatched (lost).
func TestViewNeverOlderThanTheRegistryWhenWatchesDie(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	oldURL := newReceiver(t, always(200))
	newURL := newReceiver(t, always(200))
	deleted := newReceiver(t, always(200))
	fresh := newReceiver(t, always(200))
	moved, _ := e.subscribe(t, oldURL.URL(), "order.created")
	gone, _ := e.subscribe(t, deleted.URL(), "order.created")
	e.publish(t, "order.created", "evt_1", `{}`)
	eventually(t, await, "evt_1 delivered to both subscriptions (the memo holds them)", func() bool {
		return oldURL.count() == 1 && deleted.count() == 1
	})

	e.killWatches(t)
	ctx := context.Background()
	// The producer's way: KV first, then the Redis write-through; no wait
	// for any watch.
	sub, rev, err := e.store.Update(ctx, moved.GetId(), func(s *hooklinev1.Subscription) error { s.Url = newURL.URL(); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, tenant, sub.GetId(), sub); err != nil {
		t.Fatal(err)
	}
	tn, rev, err := e.store.Delete(ctx, gone.GetId())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cache.Apply(ctx, rev, tn, gone.GetId(), nil); err != nil {
		t.Fatal(err)
	}
	secret, err := signing.NewHMACSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := timestamppb.Now()
	created := &hooklinev1.Subscription{Id: "sub_fresh", Tenant: tenant, Url: fresh.URL(), EventTypes: []string{"order.created"},
		Keys: []*hooklinev1.SigningKey{{Secret: secret, CreatedAt: now}}, CreatedAt: now, UpdatedAt: now}
	if _, err := e.store.Create(ctx, created); err != nil {
		t.Fatal(err) // not even written through to Redis: the KV bucket is the truth
	}

	e.publish(t, "order.created", "evt_2", `{}`)
	eventually(t, await, "evt_2 at the new URL and at the new subscription", func() bool {
		return newURL.count() == 1 && fresh.count() == 1
	})
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if oldURL.count() != 1 || deleted.count() != 1 {
		t.Fatalf("evt_2 reached a view older than the registry: old URL got %v, deleted subscription got %v", oldURL.ids(), deleted.ids())
	}
	if got := newURL.ids(); got[0] != "evt_2" {
		t.Fatalf("new URL got %v", got)
	}
	if n := testutil.ToFloat64(e.svc.Metrics.EventsUnmatched); n != 0 {
		t.Fatalf("%v events counted unmatched", n)
	}
	if e.svc.Cache().Behind() == 0 {
		t.Fatal("no lookup counted the Redis cache behind the registry, yet its syncer's watch was dead")
	}
}
