package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type fixture struct {
	reg   *Registry
	store *subscription.Store
	redis *redistest.Server
	clock time.Time
}

func newFixture(t *testing.T, overlap time.Duration) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	store, err := subscription.NewStore(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	f := &fixture{store: store, redis: rs, clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	f.reg = New(overlap, zaptest.NewLogger(t))
	f.reg.now = func() time.Time { return f.clock }
	f.reg.Attach(store, subscription.NewCache(rs.Client(t), store), nil)
	return f
}

func (f *fixture) create(t *testing.T) *hooklinev1.Subscription {
	t.Helper()
	sub, err := f.reg.Create(context.Background(), &hooklinev1.CreateSubscriptionRequest{
		Tenant: "acme", Url: "https://example.com", EventTypes: []string{"a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func TestNotReadyBeforeAttach(t *testing.T) {
	t.Parallel()
	r := New(time.Hour, zaptest.NewLogger(t))
	if _, err := r.Get(context.Background(), "sub_x"); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Get before Attach: %v", err)
	}
}

func TestRotationOverlapAndExpiry(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	sub := f.create(t)
	k0 := sub.GetSecret()

	f.clock = f.clock.Add(time.Minute)
	r1, err := f.reg.RotateSecret(ctx, sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	k1 := r1.GetSecret()
	keys := r1.GetKeys()
	if len(keys) != 2 || keys[0].GetSecret() != k1 || keys[1].GetSecret() != k0 {
		t.Fatal("after the first rotation: want [k1, k0]")
	}
	if !keys[1].GetExpiresAt().AsTime().Equal(f.clock.Add(time.Hour)) || keys[0].GetExpiresAt() != nil {
		t.Fatalf("k0 expires %v, want %v; k1 must not expire", keys[1].GetExpiresAt().AsTime(), f.clock.Add(time.Hour))
	}

	// 30 minutes later k0 still overlaps; a rotation keeps its expiry.
	f.clock = f.clock.Add(30 * time.Minute)
	r2, err := f.reg.RotateSecret(ctx, sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	keys = r2.GetKeys()
	if len(keys) != 3 || keys[2].GetSecret() != k0 || !keys[2].GetExpiresAt().AsTime().Equal(f.clock.Add(-30*time.Minute+time.Hour)) {
		t.Fatal("after the second rotation: want [k2, k1, k0] with k0's expiry unchanged")
	}

	// Two hours later k0 and k1 have expired: a rotation drops them.
	f.clock = f.clock.Add(2 * time.Hour)
	r3, err := f.reg.RotateSecret(ctx, sub.GetId())
	if err != nil {
		t.Fatal(err)
	}
	keys = r3.GetKeys()
	if len(keys) != 2 || keys[0].GetSecret() != r3.GetSecret() || keys[1].GetSecret() != r2.GetSecret() {
		t.Fatalf("after the third rotation: want [k3, k2], got %d keys", len(keys))
	}
	stored, _, err := f.store.Get(ctx, sub.GetId())
	if err != nil || !proto.Equal(stored, withoutSecret(r3)) {
		t.Fatal("the store does not hold what RotateSecret returned")
	}
}

func withoutSecret(s *hooklinev1.Subscription) *hooklinev1.Subscription {
	c := proto.CloneOf(s)
	c.Secret = ""
	return c
}

func TestDisableKeepsAutomaticReason(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	sub := f.create(t)
	// A deliverer disabled it (410 Gone).
	gone := f.clock.Add(-time.Hour)
	if _, _, err := f.store.Update(ctx, sub.GetId(), func(s *hooklinev1.Subscription) error {
		s.Disabled, s.DisabledReason = true, "gone"
		s.DisabledAt = timestamp(gone)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	got, err := f.reg.Update(ctx, sub.GetId(), &hooklinev1.UpdateSubscriptionRequest{Disabled: &yes})
	if err != nil || got.GetDisabledReason() != "gone" || !got.GetDisabledAt().AsTime().Equal(gone) {
		t.Fatalf("disable of a disabled subscription changed its reason: %v %v", got, err)
	}
	got, err = f.reg.Update(ctx, sub.GetId(), &hooklinev1.UpdateSubscriptionRequest{Disabled: &no})
	if err != nil || got.GetDisabled() || got.GetDisabledReason() != "" || got.GetDisabledAt() != nil {
		t.Fatalf("enable: %v %v", got, err)
	}
	got, err = f.reg.Update(ctx, sub.GetId(), &hooklinev1.UpdateSubscriptionRequest{Disabled: &yes})
	if err != nil || got.GetDisabledReason() != wire.DisabledManual || !got.GetDisabledAt().AsTime().Equal(f.clock) {
		t.Fatalf("manual disable: %v %v", got, err)
	}
}

// TestWritesSurviveRedisOutage: the KV write is the truth; a failed
// write-through is logged, not returned.
func TestWritesSurviveRedisOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	f.redis.Stop()
	sub := f.create(t)
	if _, _, err := f.store.Get(context.Background(), sub.GetId()); err != nil {
		t.Fatalf("created subscription not in kv: %v", err)
	}
	if err := f.reg.Delete(context.Background(), sub.GetId()); err != nil {
		t.Fatalf("delete with redis down: %v", err)
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// CreateAs of an id that exists (the same Idempotency-Key request run
// again after its replica died) creates nothing and returns the
// subscription with its current secret, sealed at rest or not.
func TestCreateAsAnExistingID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, time.Hour)
	ctx := context.Background()
	req := &hooklinev1.CreateSubscriptionRequest{Tenant: "acme", Url: "https://example.com", EventTypes: []string{"a"}}
	id := NewSubscriptionID()
	first, err := f.reg.CreateAs(ctx, id, req)
	if err != nil {
		t.Fatal(err)
	}
	again, err := f.reg.CreateAs(ctx, id, req)
	if err != nil {
		t.Fatal(err)
	}
	if again.GetId() != id || again.GetSecret() == "" || again.GetSecret() != first.GetSecret() {
		t.Fatalf("again: id %s secret revealed %v, want %s with the first secret", again.GetId(), again.GetSecret() != "", id)
	}
	if n, err := f.store.Count(ctx, "acme"); err != nil || n != 1 {
		t.Fatalf("%d subscriptions (%v), want 1", n, err)
	}
}
