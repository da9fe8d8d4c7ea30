package stream_test

import (
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
)

func TestSeqEventID(t *testing.T) {
	stored := time.Date(2026, 1, 2, 15, 4, 5, 123456789, time.UTC)
	id := stream.SeqEventID(42, stored)
	if err := stream.ValidateEventID(id); err != nil {
		t.Fatalf("%q is not a valid event id: %v", id, err)
	}
	if longest := stream.SeqEventID(^uint64(0), time.Unix(0, 1<<63-1)); stream.ValidateEventID(longest) != nil {
		t.Fatalf("%q is not a valid event id", longest)
	}
	// The same sequence in a recreated stream is another event.
	if again := stream.SeqEventID(42, stored.Add(time.Nanosecond)); again == id {
		t.Fatalf("two events stored at sequence 42 at different times share the id %q", id)
	}
	tests := []struct {
		id     string
		seq    uint64
		stored time.Time
		ok     bool
	}{
		{id: id, seq: 42, stored: stored, ok: true},
		{id: "evt_seq_12", seq: 12, ok: true}, // the older form
		{id: "evt_seq_0"},
		{id: "evt_seq_"},
		{id: "evt_seq_x"},
		{id: "evt_seq_12_"},
		{id: "evt_seq_12_x"},
		{id: "evt_12"},
		{id: "ord_1"},
	}
	for _, tt := range tests {
		seq, at, ok := stream.ParseSeqEventID(tt.id)
		if ok != tt.ok || seq != tt.seq || !at.Equal(tt.stored) {
			t.Errorf("ParseSeqEventID(%q) = %d %s %v; want %d %s %v", tt.id, seq, at, ok, tt.seq, tt.stored, tt.ok)
		}
	}
}
