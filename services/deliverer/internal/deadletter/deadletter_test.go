package deadletter_test

import (
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/wire"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
	"github.com/hookline/hookline/services/deliverer/internal/task"
	"github.com/nats-io/nats.go"
)

func TestBuild(t *testing.T) {
	t.Parallel()
	h := task.NewHeader("evt_1", "acme", "order.created", "2026-01-01T00:00:00Z", "sub_1")
	h["Nats-Msg-Id"] = []string{"evt_1:sub_1"}
	h["Nats-Scheduler"] = []string{"retry.sub_1.9"}
	h["Nats-Schedule-Next"] = []string{"purge"}
	h[stream.HeaderTest] = []string{"true"}
	first := time.Date(2026, 1, 1, 0, 0, 1, 0, time.UTC)
	last := first.Add(time.Hour)
	now := last.Add(time.Second)
	tests := []struct {
		name      string
		replay    string
		wantMsgID string
	}{
		{"first delivery", "", "evt_1:sub_1:dlq"},
		{"replayed task failing again", "17", "evt_1:sub_1:dlq:17"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m := deadletter.Build(deadletter.Letter{
				Header: h, Body: []byte(`{"x":1}`), DeadLetter: wire.DeadLetter{
					EventID: "evt_1", Tenant: "acme", EventType: "order.created", SubscriptionID: "sub_1",
					Replay: tt.replay, Reason: "attempts_exhausted", Attempts: 8, LastStatus: 503, LastError: "HTTP 503",
					FirstAttemptAt: first, LastAttemptAt: last, OriginalSubject: "deliveries.acme.sub_1",
				},
			}, now)
			want := map[string]string{
				stream.HeaderMsgID:           tt.wantMsgID,
				stream.HeaderReason:          "attempts_exhausted",
				stream.HeaderAttempt:         "8",
				stream.HeaderLastStatus:      "503",
				stream.HeaderLastError:       "HTTP 503",
				stream.HeaderFirstAttemptAt:  "2026-01-01T00:00:01Z",
				stream.HeaderLastAttemptAt:   "2026-01-01T01:00:01Z",
				stream.HeaderDeadLetteredAt:  "2026-01-01T01:00:02Z",
				stream.HeaderOriginalSubject: "deliveries.acme.sub_1",
				stream.HeaderEventID:         "evt_1",
				stream.HeaderTenant:          "acme",
				stream.HeaderEventType:       "order.created",
				stream.HeaderSubscriptionID:  "sub_1",
				stream.HeaderOccurredAt:      "2026-01-01T00:00:00Z",
				stream.HeaderTest:            "true",
				stream.HeaderReplay:          tt.replay,
			}
			for k, v := range want {
				if got := m.Header.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			for k := range m.Header {
				if strings.HasPrefix(k, "Nats-") && k != stream.HeaderMsgID {
					t.Errorf("%s copied into the dead letter", k)
				}
			}
			if m.Subject != "deadletter.acme.sub_1" || string(m.Data) != `{"x":1}` {
				t.Errorf("subject %s body %q", m.Subject, m.Data)
			}
		})
	}
}

func TestBuildWithoutAttempts(t *testing.T) {
	t.Parallel()
	m := deadletter.Build(deadletter.Letter{
		Header: nats.Header{}, DeadLetter: wire.DeadLetter{EventID: "evt_1", Tenant: "acme", SubscriptionID: "sub_1",
			Reason: "subscription_deleted", OriginalSubject: "deliveries.acme.sub_1"},
	}, time.Now())
	if m.Header.Get(stream.HeaderAttempt) != "0" || m.Header.Get(stream.HeaderLastStatus) != "0" ||
		m.Header.Get(stream.HeaderFirstAttemptAt) != "" || m.Header.Get(stream.HeaderLastError) != "" {
		t.Fatalf("header %v", m.Header)
	}
}
