package attempt_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/attempt"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

type stored struct {
	subject string
	eventID string // the message's Hookline-Event-Id
	records []*hooklinev1.Attempt
}

// recorderRig is a Recorder on a real nats-server with the topology.
func recorderRig(t *testing.T, o attempt.Config) (*attempt.Recorder, jetstream.JetStream, prometheus.Counter) {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.Connect(t)
	if err := stream.Ensure(context.Background(), js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	failed := prometheus.NewCounter(prometheus.CounterOpts{Name: "failed_total"})
	o.Log, o.Failed = zap.NewNop(), failed
	rec, err := attempt.NewRecorder(nc, o)
	if err != nil {
		t.Fatal(err)
	}
	return rec, js, failed
}

func readAll(t *testing.T, js jetstream.JetStream) []stored {
	t.Helper()
	var out []stored
	for _, m := range natstest.Messages(t, js, stream.Attempts) {
		st := stored{subject: m.Subject, eventID: m.Header.Get(stream.HeaderEventID)}
		for _, line := range stream.AttemptRecords(m.Data) {
			a := &hooklinev1.Attempt{}
			if err := protojson.Unmarshal(line, a); err != nil {
				t.Fatalf("seq %d: %v", m.Sequence, err)
			}
			st.records = append(st.records, a)
		}
		out = append(out, st)
	}
	return out
}

func sample(sub string, i int) *hooklinev1.Attempt {
	return &hooklinev1.Attempt{
		EventId: fmt.Sprintf("evt_%s_%d", sub, i), Tenant: "acme", EventType: "order.created",
		SubscriptionId: sub, Attempt: 1, StartedAt: timestamppb.New(time.Unix(1700000000, int64(i))),
		DurationSeconds: 0.01, Status: 200, Outcome: "success",
		ResponseExcerpt: "line one\nline two", // a newline inside a record stays escaped
	}
}

// Records of one subscription share messages; of two, never; every record
// is stored once, in order; the event id header is on one-record messages.
func TestRecorderBatchesPerSubscription(t *testing.T) {
	rec, js, failed := recorderRig(t, attempt.Config{Linger: time.Hour, MaxRecords: 40})
	const n = 100
	for i := range n {
		for _, sub := range []string{"sub_a", "sub_b"} {
			rec.Record(sample(sub, i))
		}
	}
	solo := sample("sub_c", 0)
	rec.Record(solo)
	// MaxRecords published 2 full messages per subscription already; Flush
	// publishes the rest (the linger is an hour).
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, js)
	if len(msgs) != 7 {
		t.Fatalf("%d messages, want 7 (40+40+20 records for each of two subscriptions, 1 for the third)", len(msgs))
	}
	got := map[string][]*hooklinev1.Attempt{}
	for _, m := range msgs {
		for _, a := range m.records {
			if want := stream.AttemptSubject(a.GetTenant(), a.GetSubscriptionId()); m.subject != want {
				t.Fatalf("record of %s in a message on %s", a.GetSubscriptionId(), m.subject)
			}
		}
		if len(m.records) == 1 && m.eventID != m.records[0].GetEventId() || len(m.records) > 1 && m.eventID != "" {
			t.Fatalf("message of %d records has event id header %q", len(m.records), m.eventID)
		}
		got[m.subject] = append(got[m.subject], m.records...)
	}
	for _, sub := range []string{"sub_a", "sub_b"} {
		recs := got[stream.AttemptSubject("acme", sub)]
		if len(recs) != n {
			t.Fatalf("%s: %d records, want %d", sub, len(recs), n)
		}
		for i, a := range recs {
			if !proto.Equal(a, sample(sub, i)) {
				t.Fatalf("%s record %d = %v, want %v", sub, i, a, sample(sub, i))
			}
		}
	}
	if c := got[stream.AttemptSubject("acme", "sub_c")]; len(c) != 1 || !proto.Equal(c[0], solo) {
		t.Fatalf("sub_c records %v", c)
	}
	if f := testutil.ToFloat64(failed); f != 0 {
		t.Fatalf("%v records counted as failed", f)
	}
}

// Without a linger every record is its own message, as before batching.
func TestRecorderWithoutLinger(t *testing.T) {
	rec, js, _ := recorderRig(t, attempt.Config{})
	for i := range 5 {
		rec.Record(sample("sub_a", i))
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	msgs := readAll(t, js)
	if len(msgs) != 5 {
		t.Fatalf("%d messages, want 5", len(msgs))
	}
	for i, m := range msgs {
		if len(m.records) != 1 || m.eventID != sample("sub_a", i).GetEventId() {
			t.Fatalf("message %d: %d records, header %q", i, len(m.records), m.eventID)
		}
	}
}

// The linger alone publishes: no Flush, no full message.
func TestRecorderLingerPublishes(t *testing.T) {
	rec, js, _ := recorderRig(t, attempt.Config{Linger: 20 * time.Millisecond})
	for i := range 3 {
		rec.Record(sample("sub_a", i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := readAll(t, js)
		total := 0
		for _, m := range msgs {
			total += len(m.records)
		}
		if total == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 records stored after 10s", total)
		}
		time.Sleep(10 * time.Millisecond) // polling the stream: the publish is asynchronous
	}
}

// A record that cannot be encoded is counted, not published.
func TestRecorderCountsUnencodable(t *testing.T) {
	rec, js, failed := recorderRig(t, attempt.Config{Linger: time.Hour})
	bad := sample("sub_a", 0)
	bad.Error = "\xff\xfe not utf-8"
	rec.Record(bad)
	rec.Record(sample("sub_a", 1))
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f := testutil.ToFloat64(failed); f != 1 {
		t.Fatalf("failed = %v, want 1", f)
	}
	msgs := readAll(t, js)
	if len(msgs) != 1 || len(msgs[0].records) != 1 || msgs[0].records[0].GetEventId() != "evt_sub_a_1" {
		t.Fatalf("stored %+v, want the one good record", msgs)
	}
}
