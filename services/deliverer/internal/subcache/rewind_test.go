package subcache_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go/jetstream"
)

// fiveRevisions changes a subscription five times and waits until the
// memo is current at the last change and answers from itself: a registry
// with revisions to go back from.
func fiveRevisions(t *testing.T, m *subcache.Memo, src *source, kv jetstream.KeyValue) uint64 {
	t.Helper()
	var rev uint64
	for range 5 {
		r, err := kv.Put(context.Background(), stream.SubscriptionKey("acme", "sub_2"), []byte(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		rev = r
	}
	eventually(t, 10*time.Second, func() bool { return m.Current(rev) })
	inUse(t, m, src)
	return rev
}

// startRewindable is a memo asking bucketHorizon for the revisions it
// needs, in use for matches and lookups by id, after enough changes that the bucket's revisions are well
// above those of a bucket created again.
func startRewindable(t *testing.T) (*subcache.Memo, *source, jetstream.KeyValue, *natstest.Server) {
	t.Helper()
	m, src, kv, srv, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(bucketHorizon{kv: kv})}
	})
	ctx := context.Background()
	fiveRevisions(t, m, src, kv)
	before := src.calls.Load()
	for range 2 { // a match's answer memoised too
		if _, _, err := m.ForEvent(ctx, "acme", "order.created"); err != nil {
			t.Fatal(err)
		}
	}
	if n := src.calls.Load() - before; n != 1 {
		t.Fatalf("%d source calls for a repeated match; want 1: the memo is not in use", n)
	}
	return m, src, kv, srv
}

// recreate deletes the bucket's stream and creates it again, as it was
// configured: its revisions start over from 1, under another origin.
func recreate(t *testing.T, srv *natstest.Server, kv jetstream.KeyValue) {
	t.Helper()
	ctx := context.Background()
	_, js := srv.Connect(t)
	s, err := js.Stream(ctx, "KV_"+kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
}

// recreateWithAChange recreates the bucket, writes one change into the new
// one and has the next cache answer sub_1 at its new URL: the revision of
// that change.
func recreateWithAChange(t *testing.T, srv *natstest.Server, kv jetstream.KeyValue, src *source) uint64 {
	t.Helper()
	recreate(t, srv, kv)
	rev, err := kv.Put(context.Background(), stream.SubscriptionKey("acme", "sub_2"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	src.set("https://two.example", nil)
	return rev
}

// storedSub is the stored form of sub_1 of acme at url.
func storedSub(t *testing.T, url string) []byte {
	t.Helper()
	b, err := subscription.Marshal(&hooklinev1.Subscription{Id: "sub_1", Tenant: "acme", Url: url,
		EventTypes: []string{"order.created"}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A bucket deleted and created again counts its revisions from 1, and the
// memo's watch goes on without an error, reporting none of its changes: a
// match right after the recreation is not answered from what the memo
// learnt of the old bucket (whose revisions are all above the one the match
// needs) but by the next cache, and the memo then watches the new bucket:
// a change of it is applied to the memo's answers and seen.
func TestMemoDropsARecreatedBucketsPredecessor(t *testing.T) {
	t.Parallel()
	m, src, kv, srv := startRewindable(t)
	ctx := context.Background()
	rev := recreateWithAChange(t, srv, kv, src)
	subs, got, err := m.ForEvent(ctx, "acme", "order.created")
	if err != nil || len(subs) != 1 || subs[0].GetUrl() != "https://two.example" || got != rev {
		t.Fatalf("ForEvent right after the recreation = %v at %d, %v; want the next cache's answer at %d, not the old bucket's", subs, got, err, rev)
	}
	if m.Rewound() == 0 {
		t.Fatal("the recreation was not counted")
	}
	inUse(t, m, src)
	// The memo's watch is on the new bucket: it reports a change there (at
	// a revision below every one of the old bucket) and the memo applies it.
	if _, _, err := m.ForEvent(ctx, "acme", "order.created"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), storedSub(t, "https://three.example")); err != nil {
		t.Fatal(err)
	}
	lagged := m.Lagged()
	subs, _, err = m.ForEvent(ctx, "acme", "order.created")
	if err != nil || len(subs) != 1 || subs[0].GetUrl() != "https://three.example" {
		t.Fatalf("ForEvent after a change of the new bucket = %v, %v; want it applied by the memo's watch", subs, err)
	}
	if m.Lagged() != lagged {
		t.Fatal("the memo's watch did not report the new bucket's change in time")
	}
}

// A delivery's lookup carries the revision its event was matched at, and
// asks no Horizon when the memo has seen it, as every revision of a bucket
// created again is: the memo notices the recreation by itself (it checks
// the bucket's origin every second) and stops answering from the old
// bucket, well before its entries expire.
func TestMemoNoticesARecreatedBucketWithoutAMatch(t *testing.T) {
	t.Parallel()
	m, src, kv, srv := startRewindable(t)
	ctx := context.Background()
	rev := recreateWithAChange(t, srv, kv, src)
	eventually(t, 10*time.Second, func() bool {
		sub, err := m.Get(ctx, "acme", "sub_1", rev)
		return err == nil && sub.GetUrl() == "https://two.example"
	})
	if m.Rewound() == 0 {
		t.Fatal("the recreation was not counted")
	}
}

// rewindHorizon is bucketHorizon, reporting the bucket's last revision as
// low as last while last is set: a bucket restored from an older backup
// (same origin, revisions gone back).
type rewindHorizon struct {
	bucketHorizon
	last *atomic.Uint64
}

func (h rewindHorizon) RequiredState(ctx context.Context) (subscription.BucketState, error) {
	st, err := h.bucketHorizon.RequiredState(ctx)
	if n := h.last.Load(); n != 0 {
		st.Last = min(st.Last, n)
	}
	return st, err
}

// A bucket restored from an older backup keeps its origin; only its last
// revision below the one the memo's watch reported gives it away. The memo
// then answers nothing from before, and watches again.
func TestMemoDropsABucketRestoredBackwards(t *testing.T) {
	t.Parallel()
	last := new(atomic.Uint64)
	m, src, kv, _, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(rewindHorizon{bucketHorizon{kv: kv}, last})}
	})
	ctx := context.Background()
	for range 3 {
		if _, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_2"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	inUse(t, m, src)
	last.Store(1)
	src.set("https://two.example", nil)
	sub, err := m.Get(ctx, "acme", "sub_1", 0)
	last.Store(0)
	if err != nil || sub.GetUrl() != "https://two.example" {
		t.Fatalf("Get after the bucket went back = %v, %v; want the next cache's answer", sub, err)
	}
	if m.Rewound() == 0 {
		t.Fatal("the restore was not counted")
	}
	inUse(t, m, src)
}
