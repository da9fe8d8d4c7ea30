package faults

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// Fault 11: poison messages on events.> — no headers, binary garbage, an
// empty body, nested JSON as large as EVENTS takes, one byte more, a
// garbage occurred-at, an odd event id, an unknown tenant, a subject
// without a type. Each is delivered, dead-lettered with a reason, refused
// at publish (the size cap: the publisher gets the error), or refused and
// counted
// (hookline_events_invalid_total / hookline_events_unmatched_total); none is
// redelivered forever, and a valid event published after each one is
// delivered: the pipeline keeps flowing.
func TestPoisonMessagesOnEvents(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	d := s.Deliverers[0]
	ep, sub := s.Subscribe("acme", "all", []string{">"}, harness.OK)
	s.Warmup("acme", "order.created", ep)
	counted := func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m, err := d.Metrics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		n := m["hookline_events_unmatched_total"]
		for k, v := range m {
			if strings.HasPrefix(k, "hookline_events_invalid_total") {
				n += v
			}
		}
		return n
	}
	countedBefore := counted()

	garbage := make([]byte, 4096)
	_, _ = rand.Read(garbage)
	// The EVENTS cap counts headers too; leave them 4 KiB.
	half := (int(stream.EventsLimit(1<<20)) - 4096) / 2 // default max_payload: 1 MiB
	nested := strings.Repeat("[", half) + strings.Repeat("]", half)
	tooLarge := make([]byte, stream.EventsLimit(1<<20)+1)
	for i := range tooLarge {
		tooLarge[i] = ' '
	}
	poison := []struct {
		name, subject, id string
		header            nats.Header
		body              []byte
		// matches: the acme subscription matches the subject, so the
		// message is an event to deliver or dead-letter, or an invalid one
		// to count.
		matches bool
		// overCap: JetStream refuses the publish (nothing is accepted).
		overCap bool
		// invalidID: the id is no event id; the event goes by its
		// sequence id and is dead-lettered.
		invalidID bool
	}{
		{name: "no headers", subject: "events.acme.order.created", body: []byte(`{"ok":true}`), matches: true},
		{name: "binary garbage", subject: "events.acme.order.created", id: "evt_poison_garbage", body: garbage, matches: true},
		{name: "empty body", subject: "events.acme.order.created", id: "evt_poison_empty", body: nil, matches: true},
		{name: "nested JSON up to the size cap", subject: "events.acme.order.created", id: "evt_poison_nested", body: []byte(nested), matches: true},
		{name: "one byte over the size cap", subject: "events.acme.order.created", id: "evt_poison_huge", body: tooLarge, overCap: true},
		{name: "garbage occurred-at", subject: "events.acme.order.created", id: "evt_poison_time",
			header: nats.Header{stream.HeaderOccurredAt: {"yesterday-ish"}}, body: []byte(`{}`), matches: true},
		{name: "odd event id", subject: "events.acme.order.created", id: "evt poison ☃ " + strings.Repeat("x", 200), body: []byte(`{}`), matches: true, invalidID: true},
		{name: "unknown tenant", subject: "events.nobody.order.created", id: "evt_poison_tenant", body: []byte(`{}`)},
		{name: "no type", subject: "events.acme", id: "evt_poison_notype", body: []byte(`{}`)},
	}
	outcomes := map[string]string{}
	refused := 0
	for _, p := range poison {
		m := nats.NewMsg(p.subject)
		m.Data = p.body
		for k, v := range p.header {
			m.Header[k] = v
		}
		if p.id != "" {
			m.Header.Set(stream.HeaderMsgID, p.id)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ack, err := s.JS.PublishMsg(ctx, m)
		cancel()
		if p.overCap {
			if !errors.Is(err, jetstream.ErrStreamMessageExceedsMaximum) {
				t.Fatalf("%s: publish: %v, want %v", p.name, err, jetstream.ErrStreamMessageExceedsMaximum)
			}
			outcomes[p.name] = "refused at publish"
			t.Logf("%s: %s", p.name, outcomes[p.name])
			continue
		}
		if err != nil {
			t.Fatalf("%s: publish: %v", p.name, err)
		}
		id := p.id
		if id == "" || p.invalidID {
			if id, err = harness.SeqIDOf(context.Background(), s.JS, ack.Sequence); err != nil {
				t.Fatal(err)
			}
		}
		if p.matches {
			// It may be delivered or dead-lettered; the checker must not
			// call that unexpected.
			s.Checker.Attempt(id, "acme", "order.created")
		}
		// The pipeline keeps flowing: a valid event after the poison one.
		next := s.Publish("acme", "order.created", "", `{"after":"`+p.name+`"}`)
		ep.AwaitDelivered(t, next, 30*time.Second)
		settle(t, s.JS, 30*time.Second)

		switch {
		case ep.Hits(id) != nil && ep.Hits(id).Delivered > 0:
			outcomes[p.name] = "delivered"
			if !p.matches {
				t.Errorf("%s: delivered to a subscription it does not match", p.name)
			}
		case s.Checker.DeadLetterCount(id, sub.ID) > 0 || deadLettered(t, s, id) != "":
			outcomes[p.name] = "dead-lettered (" + deadLettered(t, s, id) + ")"
		default:
			outcomes[p.name] = "refused and counted"
			refused++
		}
		t.Logf("%s: %s", p.name, outcomes[p.name])
		if p.invalidID && outcomes[p.name] != "dead-lettered (invalid_payload)" {
			t.Errorf("%s: %s; want dead-lettered (invalid_payload) under its sequence id", p.name, outcomes[p.name])
		}
	}
	if got := counted() - countedBefore; got < float64(refused) {
		t.Errorf("%d poison messages were neither delivered nor dead-lettered, but only %v were counted as invalid or unmatched", refused, got)
	}
	if !d.Running() {
		t.Fatal("the deliverer is gone")
	}
	r := s.Checker.Await(t, 30*time.Second, time.Second)
	r.Verify(t, 0)
	result(t, "poison messages on events.>", "messages", len(poison), "outcomes", fmt.Sprintf("%q", outcomes), "lost_valid", r.Lost)
}

// deadLettered returns the reason of a dead letter of the event, "" when
// there is none.
func deadLettered(t *testing.T, s *harness.Stack, eventID string) string {
	t.Helper()
	for _, m := range readDeadLetters(t, s) {
		if m.Header.Get(stream.HeaderEventID) == eventID {
			return m.Header.Get(stream.HeaderReason)
		}
	}
	return ""
}
