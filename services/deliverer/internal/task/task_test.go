package task_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
)

func header(kv ...string) nats.Header {
	h := nats.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = []string{kv[i+1]}
	}
	return h
}

func valid(extra ...string) nats.Header {
	h := task.NewHeader("evt_1", "acme", "order.created", "2026-01-01T00:00:00Z", "sub_1")
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = []string{extra[i+1]}
	}
	return h
}

func TestParse(t *testing.T) {
	t.Parallel()
	const subject = "deliveries.acme.sub_1"
	first := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	got, err := task.Parse(subject, valid(
		stream.HeaderAttempt, "3",
		stream.HeaderFirstAttemptAt, first.Format(time.RFC3339Nano),
		stream.HeaderLastStatus, "503",
		stream.HeaderLastError, "HTTP 503",
		stream.HeaderReplay, "42",
	), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.EventID != "evt_1" || got.Tenant != "acme" || got.EventType != "order.created" || got.SubscriptionID != "sub_1" ||
		got.Attempt != 3 || !got.FirstAttemptAt.Equal(first) || got.LastStatus != 503 || got.LastError != "HTTP 503" ||
		got.Replay != "42" || got.Subject != subject {
		t.Fatalf("parsed %+v", got)
	}
	if got.Ordered() {
		t.Fatal("a task without an ordering key is ordered")
	}
}

func TestParseOrdered(t *testing.T) {
	t.Parallel()
	got, err := task.Parse("deliveries.acme.sub_1", valid(
		stream.HeaderOrderingKey, "order 42", stream.HeaderEventSeq, "1234", stream.HeaderOrderingSeq, "7",
	), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if got.OrderingKey != "order 42" || got.EventSeq != 1234 || got.OrderingSeq != 7 || !got.Ordered() {
		t.Fatalf("parsed %+v", got)
	}
	got.Replay = "9"
	if got.Ordered() {
		t.Fatal("a replay waits in its key's line")
	}
}

func TestParseMalformed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		subject string
		h       nats.Header
		want    string
	}{
		{"no headers", "deliveries.acme.sub_1", nil, stream.HeaderEventID},
		{"no event id", "deliveries.acme.sub_1", header(stream.HeaderTenant, "acme", stream.HeaderEventType, "x", stream.HeaderSubscriptionID, "sub_1"), stream.HeaderEventID},
		{"no type", "deliveries.acme.sub_1", header(stream.HeaderEventID, "e", stream.HeaderTenant, "acme", stream.HeaderSubscriptionID, "sub_1"), stream.HeaderEventType},
		{"bad attempt", "deliveries.acme.sub_1", valid(stream.HeaderAttempt, "two"), stream.HeaderAttempt},
		{"negative attempt", "deliveries.acme.sub_1", valid(stream.HeaderAttempt, "-1"), stream.HeaderAttempt},
		{"bad status", "deliveries.acme.sub_1", valid(stream.HeaderLastStatus, "abc"), stream.HeaderLastStatus},
		{"bad time", "deliveries.acme.sub_1", valid(stream.HeaderFirstAttemptAt, "yesterday"), stream.HeaderFirstAttemptAt},
		{"subject mismatch", "deliveries.acme.sub_2", valid(), "do not match"},
		{"bad subject", "deliveries.acme", valid(), "is not deliveries"},
		{"ordering key without seq", "deliveries.acme.sub_1", valid(stream.HeaderOrderingKey, "k"), stream.HeaderEventSeq},
		{"ordering key with zero seq", "deliveries.acme.sub_1", valid(stream.HeaderOrderingKey, "k", stream.HeaderEventSeq, "0"), stream.HeaderEventSeq},
		{"bad ordering key", "deliveries.acme.sub_1", valid(stream.HeaderOrderingKey, "a\x01b", stream.HeaderEventSeq, "4"), stream.HeaderOrderingKey},
		{"bad ordering sequence", "deliveries.acme.sub_1", valid(stream.HeaderOrderingSeq, "-2"), stream.HeaderOrderingSeq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := task.Parse(tt.subject, tt.h, nil)
			if !errors.Is(err, task.ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error %v, want ErrMalformed naming %q", err, tt.want)
			}
			if tt.subject == "deliveries.acme.sub_1" && (got.Tenant != "acme" || got.SubscriptionID != "sub_1") {
				t.Fatalf("tenant/subscription not recovered from the subject: %+v", got)
			}
		})
	}
}

func TestCopyHeaderKeepsOnlyTheContract(t *testing.T) {
	t.Parallel()
	h := valid("Nats-Msg-Id", "evt_1:sub_1", "Nats-Scheduler", "retry.sub_1.7", "Nats-Schedule-Next", "purge", "Other", "x")
	h[stream.HeaderTraceParent] = []string{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	h["Traceparent"] = []string{"not the W3C key"}
	got := task.CopyHeader(h)
	for k := range got {
		if !strings.HasPrefix(k, task.HeaderPrefix) && k != stream.HeaderTraceParent {
			t.Errorf("copied %s", k)
		}
	}
	if got.Get(stream.HeaderEventID) != "evt_1" || len(got) != 6 {
		t.Fatalf("copy %v", got)
	}
	// A retry carries the task's trace context, so its attempt joins the
	// event's trace.
	if got.Get(stream.HeaderTraceParent) != h.Get(stream.HeaderTraceParent) {
		t.Fatalf("traceparent not copied: %v", got)
	}
}

// Headers that name another tenant's subscription than the subject are a
// malformed task, filed under the subject's tenant and subscription: a
// replay of its dead letter must never deliver one tenant's payload to
// another's endpoint.
func TestHeadersNamingAnotherTenantLoseToTheSubject(t *testing.T) {
	t.Parallel()
	h := task.NewHeader("evt_1", "globex", "order.created", "2026-01-02T03:04:05Z", "sub_theirs")
	got, err := task.Parse(stream.DeliverySubject("acme", "sub_ours"), h, []byte(`{}`))
	if !errors.Is(err, task.ErrMalformed) {
		t.Fatalf("err = %v; want ErrMalformed", err)
	}
	if got.Tenant != "acme" || got.SubscriptionID != "sub_ours" {
		t.Fatalf("filed under %s/%s; want the subject's acme/sub_ours", got.Tenant, got.SubscriptionID)
	}
}

// AcceptedAt is the event's storage time as dispatch wrote it, to the
// nanosecond (the delivery-state batches are keyed by it); zero without it.
func TestAcceptedAt(t *testing.T) {
	t.Parallel()
	stored := time.Date(2026, 12, 5, 2, 30, 0, 123456789, time.UTC)
	for _, tt := range []struct {
		name   string
		header nats.Header
		want   time.Time
	}{
		{"set", nats.Header{stream.HeaderAcceptedAt: {task.FormatTime(stored)}}, stored},
		{"absent", nats.Header{}, time.Time{}},
		{"garbage", nats.Header{stream.HeaderAcceptedAt: {"yesterday"}}, time.Time{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tk := task.Task{Header: tt.header}
			if got := tk.AcceptedAt(); !got.Equal(tt.want) {
				t.Fatalf("AcceptedAt() = %v, want %v", got, tt.want)
			}
		})
	}
}
