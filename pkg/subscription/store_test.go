package subscription_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go/jetstream"
)

func TestStoreCRUD(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	s := e.store

	sub := newSub("acme", "sub_1", "order.*")
	sub.Secret = "whsec_revealonce"
	rev, err := s.Create(ctx, sub)
	if err != nil || rev == 0 {
		t.Fatalf("create: rev %d err %v", rev, err)
	}
	if _, err := s.Create(ctx, newSub("acme", "sub_1", "x")); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second create: %v, want ErrKeyExists", err)
	}
	if _, err := s.Create(ctx, newSub("Bad Tenant", "sub_2", "x")); err == nil {
		t.Fatal("create with a bad tenant succeeded")
	}
	if _, err := s.Create(ctx, newSub("acme", "sub_2", "a.>.b")); err == nil {
		t.Fatal("create with a bad filter succeeded")
	}

	got, grev, err := s.Get(ctx, "sub_1")
	if err != nil || grev != rev || got.GetTenant() != "acme" || got.GetUrl() != sub.GetUrl() {
		t.Fatalf("get: %v rev %d (want %d) err %v", got, grev, rev, err)
	}
	if got.GetSecret() != "" {
		t.Fatal("the one-time secret was stored")
	}
	if len(got.GetKeys()) != 1 || got.GetKeys()[0].GetSecret() != "whsec_c2VjcmV0" {
		t.Fatalf("keys not stored: %v", got.GetKeys())
	}
	if _, _, err := s.GetTenant(ctx, "acme", "sub_1"); err != nil {
		t.Fatalf("get tenant: %v", err)
	}
	if _, _, err := s.GetTenant(ctx, "other", "sub_1"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("get other tenant: %v, want ErrNotFound", err)
	}
	for _, id := range []string{"sub_missing", "a.b", "*", ">", ""} {
		if _, _, err := s.Get(ctx, id); !errors.Is(err, subscription.ErrNotFound) {
			t.Fatalf("get %q: %v, want ErrNotFound", id, err)
		}
	}

	upd, urev, err := s.Update(ctx, "sub_1", func(sub *hooklinev1.Subscription) error {
		sub.Description = "changed"
		return nil
	})
	if err != nil || urev <= rev || upd.GetDescription() != "changed" {
		t.Fatalf("update: %v rev %d err %v", upd, urev, err)
	}
	if _, _, err := s.Update(ctx, "sub_1", func(sub *hooklinev1.Subscription) error {
		sub.Tenant = "other"
		return nil
	}); err == nil {
		t.Fatal("update changed the tenant")
	}
	boom := errors.New("boom")
	if _, _, err := s.Update(ctx, "sub_1", func(*hooklinev1.Subscription) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("update fn error: %v", err)
	}

	if _, err := s.Create(ctx, newSub("acme", "sub_0", ">")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, newSub("beta", "sub_9", ">")); err != nil {
		t.Fatal(err)
	}
	list, err := s.List(ctx, "acme")
	if err != nil || !slices.Equal(ids(list), []string{"sub_0", "sub_1"}) {
		t.Fatalf("list acme: %v err %v", ids(list), err)
	}
	all, err := s.List(ctx, "")
	if err != nil || !slices.Equal(ids(all), []string{"sub_0", "sub_1", "sub_9"}) {
		t.Fatalf("list all: %v err %v", ids(all), err)
	}
	none, err := s.List(ctx, "nobody")
	if err != nil || len(none) != 0 {
		t.Fatalf("list empty tenant: %v err %v", ids(none), err)
	}

	tenant, drev, err := s.Delete(ctx, "sub_1")
	if err != nil || tenant != "acme" || drev <= urev {
		t.Fatalf("delete: tenant %q rev %d err %v", tenant, drev, err)
	}
	if _, _, err := s.Get(ctx, "sub_1"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, _, err := s.Delete(ctx, "sub_1"); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, _, err := s.Update(ctx, "sub_1", func(*hooklinev1.Subscription) error { return nil }); !errors.Is(err, subscription.ErrNotFound) {
		t.Fatalf("update deleted: %v", err)
	}
	// The delete marker's revision is the key's latest.
	kv, _ := e.js.KeyValue(ctx, stream.SubscriptionsBucket)
	hist, err := kv.History(ctx, stream.SubscriptionKey("acme", "sub_1"))
	if err != nil {
		t.Fatal(err)
	}
	last := hist[len(hist)-1]
	if last.Operation() != jetstream.KeyValueDelete || last.Revision() != drev {
		t.Fatalf("last history entry op %v rev %d, want delete at %d", last.Operation(), last.Revision(), drev)
	}
	// A deleted id can be created again.
	if _, err := s.Create(ctx, newSub("acme", "sub_1", "x")); err != nil {
		t.Fatalf("re-create: %v", err)
	}
}

func TestStoreUpdateRetriesOnConflict(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.store.Create(ctx, newSub("acme", "sub_1", "x")); err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	got, _, err := e.store.Update(ctx, "sub_1", func(sub *hooklinev1.Subscription) error {
		if calls.Add(1) == 1 {
			// A concurrent writer gets in between our read and our write.
			if _, _, err := e.store.Update(ctx, "sub_1", func(sub *hooklinev1.Subscription) error {
				sub.Description = "concurrent"
				return nil
			}); err != nil {
				t.Errorf("concurrent update: %v", err)
			}
		}
		sub.EventTypes = append(sub.EventTypes, "y")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 2 {
		t.Fatalf("fn called %d times, want 2 (conflict then retry)", calls.Load())
	}
	if got.GetDescription() != "concurrent" || !slices.Equal(got.GetEventTypes(), []string{"x", "y"}) {
		t.Fatalf("lost update: %v", got)
	}
}
