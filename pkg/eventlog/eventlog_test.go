package eventlog_test

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/stream"
)

func TestULIDTime(t *testing.T) {
	// 01ARZ3NDEK is 1469922850259 ms (what oklog/ulid reads from it).
	got, ok := eventlog.ULIDTime("evt_01ARZ3NDEKTSV4RRFFQ69G5FAV")
	if !ok || got.UnixMilli() != 1469922850259 {
		t.Fatalf("ULIDTime = %v %v", got, ok)
	}
	for _, id := range []string{"evt_short", "ord_01ARZ3NDEKTSV4RRFFQ69G5FAV", "evt_01ARZ3NDEKTSV4RRFFQ69G5FAU0", "evt_01ARZ3NDEKTSV4RRFFQ69G5FA!", "evt_ZZZZZZZZZZTSV4RRFFQ69G5FAV"} {
		if _, ok := eventlog.ULIDTime(id); ok {
			t.Errorf("ULIDTime(%q) read a time", id)
		}
	}
}

func TestDecode(t *testing.T) {
	stored := time.Unix(1_700_000_000, 0)
	h := nats.Header{}
	h.Set(stream.HeaderMsgID, "acme:ord.7")
	h.Set(stream.HeaderOccurredAt, "2026-01-02T15:04:05Z")
	h.Set(stream.HeaderOrderingKey, "o7")
	ev, ok := eventlog.Decode("events.acme.order.created", 9, stored, h, []byte(`{}`))
	if !ok || ev.ID != "ord.7" || ev.Tenant != "acme" || ev.Type != "order.created" || ev.OrderingKey != "o7" ||
		ev.OccurredAt.Format(time.RFC3339) != "2026-01-02T15:04:05Z" || !ev.ReceivedAt.Equal(stored) {
		t.Fatalf("Decode = %+v %v", ev, ok)
	}
	// No Nats-Msg-Id: the deliverer's evt_seq_<seq>_<stored>, and the stored time.
	ev, _ = eventlog.Decode("events.acme.ping", 12, stored, nats.Header{}, nil)
	if ev.ID != "evt_seq_12_1700000000000000000" || !ev.OccurredAt.Equal(stored) {
		t.Fatalf("Decode without headers = %+v", ev)
	}
	if _, ok := eventlog.Decode("events.acme", 1, stored, nats.Header{}, nil); ok {
		t.Fatal("a subject without a type decoded")
	}
}
