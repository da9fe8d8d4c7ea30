package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/tests/harness"
)

// One event, three subscriptions, one of them failing: the two healthy ones
// get exactly one copy each (a failing endpoint never causes a duplicate
// elsewhere), and the failing one is dead-lettered after exactly the
// configured attempts with a complete record.
func TestFanOutOneFailingSubscription(t *testing.T) {
	t.Parallel()
	s := harness.NewStack(t, harness.StackOptions{})
	a, _ := s.Subscribe("acme", "a", []string{"order.created"}, harness.OK)
	b, _ := s.Subscribe("acme", "b", []string{"order.*"}, harness.OK)
	bad, badSub := s.Subscribe("acme", "bad", []string{"order.>"}, harness.Fail)
	// Another tenant's subscription to the same type gets nothing.
	other, _ := s.Subscribe("globex", "other", []string{"order.created"}, harness.OK)

	data := `{"order_id":42}`
	id := s.Publish("acme", "order.created", "", data)
	r := s.Checker.Await(t, 30*time.Second, 2*time.Second)
	r.Verify(t, 0)

	for _, ep := range []*harness.Endpoint{a, b} {
		if h := ep.Hits(id); h == nil || h.Attempts != 1 || h.Delivered != 1 {
			t.Errorf("healthy endpoint %s: %+v; want exactly one copy", ep.Name, h)
		}
	}
	if n := other.Stats().Attempts; n != 0 {
		t.Errorf("another tenant's endpoint got %d requests", n)
	}
	const attempts = 3 // HOOKLINE_RETRY_SCHEDULE=0s,1s,1s
	h := bad.Hits(id)
	if h == nil || h.Attempts != attempts {
		t.Fatalf("failing endpoint: %+v; want exactly %d attempts", h, attempts)
	}
	if r.DeadLettered != 1 || s.Checker.DeadLetterCount(id, badSub.ID) != 1 {
		t.Fatalf("want one dead letter for the failing subscription: %s", r)
	}
	// Retries follow the schedule: the second and third attempt come at
	// least 1s after the one before (schedules have 1s resolution).
	for i := 1; i < len(h.Times); i++ {
		if gap := h.Times[i].Sub(h.Times[i-1]); gap < 900*time.Millisecond {
			t.Errorf("attempt %d came %s after attempt %d; the schedule says 1s", i+1, gap, i)
		}
	}

	dl := readDeadLetter(t, s.JS, id, badSub.ID)
	if string(dl.Data) != data {
		t.Errorf("dead letter body %q; want the original data %q", dl.Data, data)
	}
	want := map[string]string{
		stream.HeaderEventID:         id,
		stream.HeaderSubscriptionID:  badSub.ID,
		stream.HeaderTenant:          "acme",
		stream.HeaderEventType:       "order.created",
		stream.HeaderLastStatus:      "500",
		stream.HeaderAttempt:         strconv.Itoa(attempts),
		stream.HeaderOriginalSubject: stream.DeliverySubject("acme", badSub.ID),
	}
	for k, v := range want {
		if got := dl.Header.Get(k); got != v {
			t.Errorf("dead letter %s = %q; want %q", k, got, v)
		}
	}
	for _, k := range []string{stream.HeaderReason, stream.HeaderFirstAttemptAt, stream.HeaderLastAttemptAt, stream.HeaderDeadLetteredAt, stream.HeaderOccurredAt} {
		v := dl.Header.Get(k)
		if v == "" {
			t.Errorf("dead letter has no %s", k)
			continue
		}
		if k != stream.HeaderReason {
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				t.Errorf("dead letter %s = %q: not RFC 3339", k, v)
			}
		}
	}
	if got := dl.Header.Get(stream.HeaderReason); got != "attempts_exhausted" {
		t.Errorf("dead letter reason %q; want attempts_exhausted", got)
	}
}

// readDeadLetter returns the dead letter of a pair from DEADLETTER.
func readDeadLetter(t *testing.T, js jetstream.JetStream, eventID, subID string) *jetstream.RawStreamMsg {
	t.Helper()
	for _, m := range natstest.Messages(t, js, stream.DeadLetter) {
		if m.Header.Get(stream.HeaderEventID) == eventID && m.Header.Get(stream.HeaderSubscriptionID) == subID {
			return m
		}
	}
	t.Fatalf("no dead letter for %s × %s", eventID, subID)
	return nil
}
