package subcache_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go/jetstream"
)

// gatedHorizon is bucketHorizon, failing while off is set (the registry
// unreachable for a moment: neither the patrol nor a lookup can check the
// bucket then).
type gatedHorizon struct {
	bucketHorizon
	off *atomic.Bool
}

func (h gatedHorizon) RequiredState(ctx context.Context) (subscription.BucketState, error) {
	if h.off.Load() {
		return subscription.BucketState{}, errors.New("registry unreachable")
	}
	return h.bucketHorizon.RequiredState(ctx)
}

// The revision a match learnt counts in the bucket it was read from. When
// the memo's watch is replaced by one on a recreated bucket through Run
// (the watch broke, lagged or the connection came back, and watch() found
// another origin: counted in Rewound) rather than through check, the
// learnt revision of the old bucket must not be handed to an event that
// waited: it is above anything the new bucket holds, so the memo waits
// CatchUp for it, counts the match as lagging, restarts its watch, and the
// event's tasks carry a revision the registry never reached.
func TestLearntRevisionOfAGoneBucketIsNotReused(t *testing.T) {
	t.Parallel()
	off := new(atomic.Bool)
	m, src, kv, srv, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(gatedHorizon{bucketHorizon{kv: kv}, off})}
	})
	ctx := context.Background()
	rev := fiveRevisions(t, m, src, kv)

	received := time.Now() // an event comes, and waits in dispatch's buffer
	_, old, err := m.ForEventSince(ctx, time.Now(), "acme", "order.created")
	if err != nil || old < rev {
		t.Fatalf("match before the recreation: rev %d, %v; want at least %d", old, err, rev)
	}

	// The registry is unreachable for a moment while the bucket is
	// recreated; the watch is replaced meanwhile (here: a lookup finds it
	// lagging), and the new one is on the new bucket.
	off.Store(true)
	recreate(t, srv, kv)
	newRev, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_3"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if newRev >= old {
		t.Fatalf("new bucket at %d, not below the old one's %d: the test would prove nothing", newRev, old)
	}
	rewound := m.Rewound()
	_, _ = m.Get(ctx, "acme", "sub_1", old+1000) // lags: the watch restarts
	eventually(t, 10*time.Second, func() bool { return m.Rewound() > rewound })
	off.Store(false)
	eventually(t, 10*time.Second, func() bool { return m.Current(newRev) })
	inUse(t, m, src) // the new watch is live, its bucket checked

	st, err := subscription.ReadBucketState(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	lagged := m.Lagged()
	began := time.Now()
	_, need, err := m.ForEventSince(ctx, received, "acme", "order.created")
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	if need > st.Last {
		t.Errorf("the waiting event was matched needing revision %d, learnt from the bucket that is gone; the registry's last is %d (took %v, lagging lookups %d -> %d)",
			need, st.Last, took, lagged, m.Lagged())
	}
	if m.Lagged() != lagged {
		t.Errorf("a live, current memo counted the waiting event's match as lagging (%d -> %d, took %v)", lagged, m.Lagged(), took)
	}
}

type holdKey struct{}

// holdingHorizon is bucketHorizon; a lookup whose context carries a
// holdKey channel pair has its state read at once, but handed back only
// once released: a request answered before the bucket was recreated,
// whose lookup runs on after the memo noticed the recreation.
type holdingHorizon struct{ bucketHorizon }

type hold struct{ read, release chan struct{} }

func (h holdingHorizon) RequiredState(ctx context.Context) (subscription.BucketState, error) {
	st, err := h.bucketHorizon.RequiredState(ctx)
	if hd, ok := ctx.Value(holdKey{}).(hold); ok {
		close(hd.read)
		<-hd.release
	}
	return st, err
}

// check clears what a match learnt when it finds the bucket gone; a match
// whose request was answered by the old bucket and which stores what it
// learnt only after that (it was descheduled between its request and its
// store, here held) puts the old bucket's revision back, and every event
// that waited since before that match began takes it.
func TestLearntStoredAfterTheBucketWasFoundGoneIsNotReused(t *testing.T) {
	t.Parallel()
	m, src, kv, srv, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(holdingHorizon{bucketHorizon{kv: kv}})}
	})
	ctx := context.Background()
	fiveRevisions(t, m, src, kv)

	received := time.Now() // an event comes, and waits in dispatch's buffer
	hd := hold{read: make(chan struct{}), release: make(chan struct{})}
	held := make(chan uint64, 1)
	go func() {
		_, need, _ := m.ForEventSince(context.WithValue(ctx, holdKey{}, hd), time.Now(), "acme", "order.created")
		held <- need
	}()
	<-hd.read // its request was answered by the old bucket

	rewound := m.Rewound()
	newRev := recreateWithAChange(t, srv, kv, src)
	eventually(t, 10*time.Second, func() bool { return m.Rewound() > rewound }) // the patrol's check
	eventually(t, 10*time.Second, func() bool { return m.Current(newRev) })
	inUse(t, m, src)
	close(hd.release)
	if old := <-held; old <= newRev {
		t.Fatalf("the held match needed %d, not above the new bucket's %d: the test would prove nothing", old, newRev)
	}

	st, err := subscription.ReadBucketState(ctx, kv)
	if err != nil {
		t.Fatal(err)
	}
	_, need, err := m.ForEventSince(ctx, received, "acme", "order.created")
	if err != nil {
		t.Fatal(err)
	}
	if need > st.Last {
		t.Errorf("the waiting event was matched needing revision %d, learnt from the bucket that is gone; the registry's last is %d", need, st.Last)
	}
}
