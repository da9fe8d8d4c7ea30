package deliverystate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
)

// setup starts a nats-server that fsyncs every write, as production's,
// with the topology (the bucket hookline_deliveries among it).
func setup(t *testing.T) (jetstream.JetStream, jetstream.KeyValue) {
	t.Helper()
	srv := natstest.Start(t, func(o *server.Options) { o.SyncAlways = true })
	_, js := srv.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{}); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, stream.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	return js, kv
}

// stored is how many messages the bucket's stream has stored.
func stored(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), "KV_"+stream.DeliveriesBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

func flush(t *testing.T, w *deliverystate.Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

// t0 starts a window.
var t0 = time.Unix(1_765_000_000, 0)

// The states of events stored in the same window ride in one message, and
// Read and Get give each event its own.
func TestBatchedStatesAreReadBack(t *testing.T) {
	js, kv := setup(t)
	ctx := context.Background()
	w := deliverystate.NewBatchWriter(js, deliverystate.BatchConfig{Linger: time.Hour}) // only Flush stores
	at := t0
	puts := []struct {
		event string
		s     deliverystate.State
	}{
		{"ord.1", deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.Retrying, Attempts: 1, LastStatus: 503}},
		{"ord.1", deliverystate.State{SubscriptionID: "sub_b", State: deliverystate.Delivered, Attempts: 1, LastStatus: 200, LastAttemptAt: &at}},
		{"ord.10", deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.DeadLettered, Attempts: 3, LastStatus: 500, Reason: "attempts_exhausted"}},
		{"ord.1", deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.Delivered, Attempts: 2, LastStatus: 204}},
	}
	for i, p := range puts {
		// Stored 1 ms apart, in one window.
		if err := w.PutStored("acme", p.event, t0.Add(time.Duration(i)*time.Millisecond), p.s); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w)
	if n := stored(t, js); n != 1 {
		t.Fatalf("the bucket stored %d messages for 4 states of one window, want 1", n)
	}
	got, err := deliverystate.Read(ctx, js, "acme", "ord.1", t0.Add(3*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["sub_a"].State != deliverystate.Delivered || got["sub_a"].Attempts != 2 || got["sub_a"].LastStatus != 204 ||
		got["sub_b"].State != deliverystate.Delivered || got["sub_b"].LastAttemptAt == nil || !got["sub_b"].LastAttemptAt.Equal(at) ||
		got["sub_a"].UpdatedAt == nil {
		t.Fatalf("Read(ord.1) = %+v, want sub_a delivered after 2 attempts (the later state) and sub_b delivered", got)
	}
	got, err = deliverystate.Read(ctx, js, "acme", "ord.10", t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got["sub_a"].State != deliverystate.DeadLettered || got["sub_a"].Reason != "attempts_exhausted" {
		t.Fatalf("Read(ord.10) = %+v, want only sub_a dead_lettered (ord.1's states are not its own)", got)
	}
	s, ok, err := deliverystate.Get(ctx, kv, "acme", "ord.1", t0, "sub_b")
	if err != nil || !ok || s.State != deliverystate.Delivered {
		t.Fatalf("Get(ord.1, sub_b) = %+v, %v, %v; want delivered", s, ok, err)
	}
	if _, ok, err := deliverystate.Get(ctx, kv, "acme", "ord.10", t0, "sub_b"); err != nil || ok {
		t.Fatalf("Get(ord.10, sub_b) = %v, %v; want none", ok, err)
	}
	// Another tenant, another window: nothing.
	for _, q := range []struct {
		tenant string
		at     time.Time
	}{{"other", t0}, {"acme", t0.Add(deliverystate.Window)}} {
		got, err := deliverystate.Read(ctx, js, q.tenant, "ord.1", q.at)
		if err != nil || len(got) != 0 {
			t.Fatalf("Read(%s, ord.1 stored at %s) = %+v, %v; want none", q.tenant, q.at, got, err)
		}
	}
}

// States stored alone (every deliverer before batches, and Put) are still
// read, next to batched ones: the newer state of a key wins either way.
func TestStatesStoredAloneAreStillRead(t *testing.T) {
	js, kv := setup(t)
	ctx := context.Background()
	alone := deliverystate.NewWriter(js)
	batched := deliverystate.NewBatchWriter(js, deliverystate.BatchConfig{Linger: time.Hour})
	put := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// sub_a: retrying alone, then delivered in a batch.
	put(alone.Put("acme", "evt.1", deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.Retrying, Attempts: 1}))
	put(batched.PutStored("acme", "evt.1", t0, deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.Delivered, Attempts: 2}))
	// sub_b: retrying in a batch, then dead-lettered alone — before the
	// batch is stored: the newer state wins, not the later message.
	put(batched.PutStored("acme", "evt.1", t0, deliverystate.State{SubscriptionID: "sub_b", State: deliverystate.Retrying, Attempts: 1}))
	put(alone.Put("acme", "evt.1", deliverystate.State{SubscriptionID: "sub_b", State: deliverystate.DeadLettered, Attempts: 1, Reason: "gone"}))
	// sub_c: alone only.
	put(alone.Put("acme", "evt.1", deliverystate.State{SubscriptionID: "sub_c", State: deliverystate.Delivered, Attempts: 1}))
	flush(t, batched) // waits for the Puts' acks too (one js)
	got, err := deliverystate.Read(ctx, js, "acme", "evt.1", t0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"sub_a": deliverystate.Delivered, "sub_b": deliverystate.DeadLettered, "sub_c": deliverystate.Delivered}
	if len(got) != len(want) {
		t.Fatalf("Read = %+v, want %v", got, want)
	}
	for sub, st := range want {
		if got[sub].State != st {
			t.Fatalf("Read[%s] = %+v, want %s (all: %+v)", sub, got[sub], st, got)
		}
		s, ok, err := deliverystate.Get(ctx, kv, "acme", "evt.1", t0, sub)
		if err != nil || !ok || s.State != st {
			t.Fatalf("Get(%s) = %+v, %v, %v; want %s", sub, s, ok, err, st)
		}
	}
	// Without the time stored (an event read headers-only elsewhere), the
	// states stored alone are still there.
	got, err = deliverystate.Read(ctx, js, "acme", "evt.1", time.Time{})
	if err != nil || got["sub_c"].State != deliverystate.Delivered || got["sub_a"].State != deliverystate.Retrying {
		t.Fatalf("Read without a time = %+v, %v; want the states stored alone", got, err)
	}
}

// A burst of deliveries, faster than a nats-server that fsyncs each
// message stores them, keeps every state: one message per state dropped
// those beyond the client's 4,000 unacknowledged writes.
func TestBurstOfStatesIsStored(t *testing.T) {
	js, kv := setup(t)
	ctx := context.Background()
	w := deliverystate.NewBatchWriter(js, deliverystate.BatchConfig{})
	const events = 20000
	start := t0
	for i := range events {
		// 3,000 events/s as EVENTS stored them.
		at := start.Add(time.Duration(i) * time.Second / 3000)
		if err := w.PutStored("acme", fmt.Sprintf("evt.%d", i), at, deliverystate.State{SubscriptionID: "sub_a", State: deliverystate.Delivered, Attempts: 1}); err != nil {
			t.Fatalf("state %d: %v", i, err)
		}
	}
	flush(t, w)
	if n := stored(t, js); n > events/20 {
		t.Fatalf("the bucket stored %d messages for %d states, want at most %d", n, events, events/20)
	}
	l := deliverystate.NewLookup(kv)
	for i := range events {
		at := start.Add(time.Duration(i) * time.Second / 3000)
		s, ok, err := l.Get(ctx, "acme", fmt.Sprintf("evt.%d", i), at, "sub_a")
		if err != nil || !ok || s.State != deliverystate.Delivered {
			t.Fatalf("state of evt.%d: %+v, %v, %v; want delivered", i, s, ok, err)
		}
	}
}
