package subscription_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/redistest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap/zaptest"
)

type env struct {
	nats  *natstest.Server
	js    jetstream.JetStream
	redis *redistest.Server
	rdb   *redis.Client
	store *subscription.Store
	cache *subscription.Cache
}

// newEnv starts a real nats-server and redis-server and binds a Store and
// a Cache to them.
func newEnv(t *testing.T) *env {
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
	rdb := rs.Client(t)
	return &env{nats: ns, js: js, redis: rs, rdb: rdb, store: store,
		cache: subscription.NewCache(rdb, store)}
}

// runSyncer runs a Syncer until the test ends and waits for the cache to
// be ready.
func (e *env) runSyncer(t *testing.T, opts ...subscription.SyncerOption) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	s := subscription.NewSyncer(e.store, e.cache, zaptest.NewLogger(t), opts...)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("syncer Run: %v", err)
		}
	})
	e.awaitReady(t)
}

func (e *env) awaitReady(t *testing.T) {
	t.Helper()
	eventually(t, "cache ready marker", func() bool {
		ok, err := e.rdb.HExists(context.Background(), subscription.ReadyKey, subscription.ReadyAll).Result()
		return err == nil && ok
	})
}

// eventually polls cond until it holds or a deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// within polls cond for at most d (a coherence bound, not a sleep).
func within(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s not seen within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newSub(tenant, id string, filters ...string) *hooklinev1.Subscription {
	return &hooklinev1.Subscription{
		Id: id, Tenant: tenant, Url: "https://example.com/hook", EventTypes: filters,
		Keys: []*hooklinev1.SigningKey{{Secret: "whsec_c2VjcmV0"}},
	}
}

func ids(subs []*hooklinev1.Subscription) []string {
	out := make([]string, 0, len(subs))
	for _, s := range subs {
		out = append(out, s.GetId())
	}
	return out
}
