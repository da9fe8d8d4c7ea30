package service_test

import (
	"context"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/proto"
)

// A subscriptions bucket deleted and created again (or restored from an
// older backup) counts its revisions from lower down. An event published
// right after is matched against the new bucket alone — through the memo,
// the Redis cache and the KV fallback — not against Redis' records of the
// old one, whose watermark and revisions are higher: the moved
// subscription gets it at its new URL, the one the new bucket lacks gets
// nothing, a new one gets it.
func TestRecreatedRegistryIsNeverMatchedAsTheOldOne(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	oldURL := newReceiver(t, always(200))
	newURL := newReceiver(t, always(200))
	dropped := newReceiver(t, always(200))
	fresh := newReceiver(t, always(200))
	moved, _ := e.subscribe(t, oldURL.URL(), "order.created")
	e.subscribe(t, dropped.URL(), "order.created")
	ctx := context.Background()
	for range 5 { // the old bucket's revisions well above the new one's
		sub, rev, err := e.store.Update(ctx, moved.GetId(), func(s *hooklinev1.Subscription) error { s.Description += "x"; return nil })
		if err != nil {
			t.Fatal(err)
		}
		if err := e.cache.Apply(ctx, rev, tenant, sub.GetId(), sub); err != nil {
			t.Fatal(err)
		}
		e.seen(t, rev)
	}
	e.publish(t, "order.created", "evt_1", `{}`)
	eventually(t, await, "evt_1 delivered to both subscriptions", func() bool {
		return oldURL.count() == 1 && dropped.count() == 1
	})

	st, err := e.js.Stream(ctx, "KV_"+stream.SubscriptionsBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	oldLast := st.CachedInfo().State.LastSeq
	if err := e.js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	again := proto.CloneOf(moved)
	again.Url = newURL.URL()
	if _, err := e.store.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	created := proto.CloneOf(moved)
	created.Id, created.Url = "sub_fresh", fresh.URL()
	last, err := e.store.Create(ctx, created)
	if err != nil {
		t.Fatal(err)
	}
	if last >= oldLast {
		t.Fatalf("the new bucket's revision %d is not below the old %d: the test proves nothing", last, oldLast)
	}

	e.publish(t, "order.created", "evt_2", `{}`)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("old %v new %v dropped %v fresh %v", oldURL.ids(), newURL.ids(), dropped.ids(), fresh.ids())
			for _, l := range e.logs.All() {
				if l.Level >= 0 {
					t.Logf("%s %s %v", l.Level, l.Message, l.ContextMap())
				}
			}
		}
	})
	eventually(t, await, "evt_2 at the new URL and at the new subscription", func() bool {
		return newURL.count() == 1 && fresh.count() == 1
	})
	eventually(t, await, "pipeline idle", func() bool { return e.idle(t) })
	if oldURL.count() != 1 || dropped.count() != 1 {
		t.Fatalf("evt_2 was matched against the old bucket: old URL got %v, the dropped subscription got %v", oldURL.ids(), dropped.ids())
	}
	if n := testutil.ToFloat64(e.svc.Metrics.EventsUnmatched); n != 0 {
		t.Fatalf("%v events counted unmatched", n)
	}
	eventually(t, await, "the recreation counted", func() bool { return e.svc.Cache().Rewound() > 0 })
}
