package subscription

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// TestNotFoundIsBelievedOnlyFromTheLeader: a direct get answered by a view
// that has not applied a create yet (an R3 follower; here a stale bucket
// standing in for it) must not make a fresh subscription "not found": the
// store asks the stream's leader before it says so. Deleted and unknown
// ids are still not found.
func TestNotFoundIsBelievedOnlyFromTheLeader(t *testing.T) {
	ctx := context.Background()
	js, store := newMemStore(t)
	sub := &hooklinev1.Subscription{Id: "sub_fresh", Tenant: "acme", Url: "https://example.com/hook", EventTypes: []string{"order.*"}}
	rev, err := store.Create(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "stale_view", Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	behind := &Store{js: js, kv: stale}

	got, gotRev, err := behind.GetTenant(ctx, "acme", "sub_fresh")
	if err != nil {
		t.Fatalf("a subscription the leader holds read as %v through a stale view", err)
	}
	if got.GetUrl() != sub.GetUrl() || gotRev != rev {
		t.Fatalf("leader read %s at revision %d, want %s at %d", got.GetUrl(), gotRev, sub.GetUrl(), rev)
	}
	if _, _, err := behind.GetTenant(ctx, "acme", "sub_never"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
	if _, _, err := behind.GetTenant(ctx, "other", "sub_fresh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("another tenant's id: %v, want ErrNotFound", err)
	}
	if _, _, err := store.Delete(ctx, "sub_fresh"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := behind.GetTenant(ctx, "acme", "sub_fresh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted subscription: %v, want ErrNotFound", err)
	}
	if _, _, err := store.GetTenant(ctx, "acme", "sub_fresh"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted subscription through the store: %v, want ErrNotFound", err)
	}
}
