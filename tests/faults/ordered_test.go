package faults

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// Fault 11: ordered delivery per key through a flaky endpoint (one request
// in five answered 500), two deliverer replicas, one kill -9 of a replica.
// Per key, the endpoint never receives a later event before an earlier one
// (publish order is the EVENTS sequence): the only repeats are re-sends of
// the key's head. Nothing is lost.
func TestOrderedDeliveryPerKeyThroughFlakyEndpointAndKill9(t *testing.T) {
	t.Parallel()
	const keys, perKey = 20, 30
	// The breaker is off: a flaky endpoint must not be paused here, only
	// retried (pauses change nothing this test checks and slow it down).
	s := harness.NewStack(t, harness.StackOptions{Deliverers: 2, DefaultSync: true, Env: harness.BreakerOff})
	// Flaky only once warm: the warm-up event has the stack's three
	// attempts like any other, so against one failure in five it was
	// dead-lettered in one run of 125, and Warmup waits for its delivery.
	ep, _ := s.Subscribe("acme", "ordered", []string{"order.*"}, harness.OK, map[string]any{"ordered": true})
	s.Warmup("acme", "order.created", ep)
	ep.SetBehavior(harness.Flaky(5))

	prefix := harness.NewIDPrefix()
	var evs []harness.Event
	for i := range keys * perKey {
		evs = append(evs, harness.Event{
			ID: fmt.Sprintf("evt_%s_%04d", prefix, i), Tenant: "acme", Type: "order.updated",
			Data: []byte(`{}`), OrderingKey: fmt.Sprintf("order-%02d", i%keys),
		})
	}
	// Published in batches, one after another; the order that counts is
	// the one EVENTS stored them in.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	killed := false
	for start := 0; start < len(evs); start += 50 {
		batch := evs[start:min(start+50, len(evs))]
		for _, e := range batch {
			s.Checker.Attempt(e.ID, e.Tenant, e.Type)
		}
		harness.Eventually(t, 30*time.Second, func() error {
			_, err := s.API.PublishBatch(ctx, batch)
			return err
		})
		for _, e := range batch {
			s.Checker.Accept(e.ID, e.Tenant, e.Type)
		}
		if !killed && start >= len(evs)/3 {
			awaitDelivered(t, start/2, 2*time.Minute, ep)
			s.Deliverers[0].Kill()
			s.Deliverers[0].Start()
			killed = true
		}
	}
	r := s.Checker.Await(t, 3*time.Minute, 2*time.Second)
	r.Verify(t, len(evs))

	seqs := eventSeqs(t, s.JS, prefix)
	byKey := map[string][]harness.Receipt{}
	for _, rc := range ep.Receipts() {
		byKey[rc.Key] = append(byKey[rc.Key], rc)
	}
	resends, failures := 0, 0
	for key, rcs := range byKey {
		var last uint64 // EVENTS sequence of the key's latest event received
		lastNumber := uint64(0)
		for i, rc := range rcs {
			seq, ok := seqs[rc.ID]
			if !ok {
				t.Fatalf("key %s: %s received but not in EVENTS", key, rc.ID)
			}
			if seq < last {
				t.Fatalf("key %s: %s (sequence %d) received after an event with sequence %d: %s",
					key, rc.ID, seq, last, describe(rcs[:i+1], seqs))
			}
			if seq == last {
				resends++
			} else if rc.Number <= lastNumber {
				t.Fatalf("key %s: %s numbered %d after %d", key, rc.ID, rc.Number, lastNumber)
			}
			if rc.Status != http.StatusOK {
				failures++
			}
			last, lastNumber = seq, rc.Number
		}
	}
	if len(byKey) != keys {
		t.Fatalf("%d keys received, want %d", len(byKey), keys)
	}
	if failures == 0 {
		t.Fatal("the endpoint never failed: the test proves nothing about failing heads")
	}
	result(t, "ordered per key: flaky endpoint, kill -9 of one of 2 replicas",
		"events", len(evs), "keys", keys, "lost", r.Lost, "dead_lettered", r.DeadLettered,
		"failed_requests", failures, "resends_of_a_head", resends)
}

// eventSeqs maps the event ids with prefix to their EVENTS sequence.
func eventSeqs(t *testing.T, js jetstream.JetStream, prefix string) map[string]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream.Events, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(ctx, stream.Events)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			id, _ := stream.EventIDFromMsgID("acme", m.Headers().Get(stream.HeaderMsgID))
			if strings.Contains(id, prefix) {
				out[id] = meta.Sequence.Stream
			}
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
		if n == 0 {
			t.Fatalf("EVENTS read stopped at %d of %d messages", read, info.State.Msgs)
		}
		read += uint64(n)
	}
	return out
}

func describe(rcs []harness.Receipt, seqs map[string]uint64) string {
	var b strings.Builder
	for _, rc := range rcs {
		fmt.Fprintf(&b, "%s(seq %d, #%d, %d) ", rc.ID, seqs[rc.ID], rc.Number, rc.Status)
	}
	return b.String()
}
