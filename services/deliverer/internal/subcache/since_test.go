package subcache_test

import (
	"context"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/deliverer/internal/subcache"
	"github.com/nats-io/nats.go/jetstream"
)

// A match needs the registry's revision as of when its event was
// received, not as of when the match began: an event that waited in
// dispatch's buffer takes the revision a later-begun match learnt instead
// of asking the registry again (a round trip to a server that is busy,
// since events wait), and an event received after every earlier match
// began still asks, and sees a change acknowledged before it came.
func TestMatchTakesARevisionLearntAfterItsEventCame(t *testing.T) {
	t.Parallel()
	m, _, kv, _, _ := startWith(t, func(kv jetstream.KeyValue) []subcache.Option {
		return []subcache.Option{subcache.WithHorizon(bucketHorizon{kv})}
	})
	ctx := context.Background()
	first, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_1"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	received := time.Now() // an event comes, and waits
	_, learnt, err := m.ForEventSince(ctx, time.Now(), "acme", "order.created")
	if err != nil {
		t.Fatal(err)
	}
	if learnt < first {
		t.Fatalf("a match that began after revision %d was acknowledged needs %d", first, learnt)
	}
	later, err := kv.Put(ctx, stream.SubscriptionKey("acme", "sub_2"), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}

	// The waiting event: the match above began after it came, so what
	// that match learnt is as current as the event needs (the change
	// acknowledged since came after the event).
	_, rev, err := m.ForEventSince(ctx, received, "acme", "order.created")
	if err != nil {
		t.Fatal(err)
	}
	if rev != learnt {
		t.Errorf("the waiting event's match needs revision %d, want %d, learnt by the match that began after it came (a request of its own)", rev, learnt)
	}

	// An event that comes now: no match began since, so it asks, and
	// needs the change acknowledged before it came.
	_, rev, err = m.ForEventSince(ctx, time.Now(), "acme", "order.created")
	if err != nil {
		t.Fatal(err)
	}
	if rev < later {
		t.Errorf("an event received after revision %d was acknowledged was matched needing only %d", later, rev)
	}
	// ForEvent is a match for an event received now.
	if _, rev, err = m.ForEvent(ctx, "acme", "order.created"); err != nil || rev < later {
		t.Errorf("ForEvent needs revision %d (%v), want at least %d", rev, err, later)
	}
}
