package eventlog_test

import (
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
)

// An event published without a Nats-Msg-Id is named by its sequence and
// stored time: after EVENTS is recreated (sequences start again at 1) a new
// event gets a new id, so a receiver deduplicating on webhook-id does not
// drop it, and Find tells the two apart. An id of the older form
// (evt_seq_<n>, in dead letters written before) is still found.
func TestSeqIDsSurviveStreamRecreation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, js := natstest.Start(t).Connect(t)
	publish := func() (eventlog.Event, jetstream.Stream) {
		t.Helper()
		if err := stream.EnsureStreams(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(ctx, stream.EventSubject("acme", "ping"), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		var got []eventlog.Event // read as dispatch reads it: a consumer's metadata
		if err := eventlog.Each(ctx, js, eventlog.Filter{Tenant: "acme"}, 0, 0, func(ev eventlog.Event) error {
			got = append(got, ev)
			return nil
		}); err != nil || len(got) != 1 {
			t.Fatalf("events %+v %v; want the one published", got, err)
		}
		s, err := js.Stream(ctx, stream.Events)
		if err != nil {
			t.Fatal(err)
		}
		return got[0], s
	}
	first, s := publish()
	stored, err := s.GetMsg(ctx, first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if want := stream.SeqEventID(first.Seq, stored.Time); first.ID != want {
		t.Fatalf("id %q; want %q (sequence and stored time, as a direct read gives them)", first.ID, want)
	}
	for _, id := range []string{first.ID, "evt_seq_1"} {
		if ev, err := eventlog.Find(ctx, js, "acme", id); err != nil || ev.Seq != 1 || ev.ID != first.ID {
			t.Fatalf("find %s: %+v %v; want the event at sequence 1", id, ev, err)
		}
	}
	if _, err := eventlog.Find(ctx, js, "other", first.ID); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("another tenant found %s: %v", first.ID, err)
	}

	if err := js.DeleteStream(ctx, stream.Events); err != nil {
		t.Fatal(err)
	}
	second, _ := publish()
	if second.Seq != first.Seq || second.ID == first.ID {
		t.Fatalf("recreated EVENTS: event at sequence %d has id %q, the old one at %d had %q; want the same sequence, another id",
			second.Seq, second.ID, first.Seq, first.ID)
	}
	if ev, err := eventlog.Find(ctx, js, "acme", second.ID); err != nil || ev.ID != second.ID {
		t.Fatalf("find %s: %+v %v", second.ID, ev, err)
	}
	if ev, err := eventlog.Find(ctx, js, "acme", first.ID); !errors.Is(err, eventlog.ErrNotFound) {
		t.Fatalf("find %s (an event of the deleted stream): %+v %v; want not found", first.ID, ev, err)
	}
}
