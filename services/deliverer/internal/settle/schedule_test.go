package settle_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/natstest"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/deliverer/internal/settle"
	"github.com/nats-io/nats.go"
)

// A schedule publish whose ack was lost but that the server stored is a
// schedule made: Schedule succeeds (the deliverer acks the task) instead of
// failing (the deliverer would nak it, and the nak's redelivery would start
// a second retry chain beside the stored schedule). A publish that stored
// nothing still fails.
func TestScheduleWithALostAckIsCheckedNotDoubled(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	c := settle.Copy{Header: nats.Header{"Hookline-Attempt": {"1"}}, Body: []byte(`{}`), Tenant: "acme",
		SubscriptionID: "sub_1", Seq: 7, Delay: time.Hour}

	lost := settle.NewScheduler(js)
	settle.LoseAcks(lost, context.DeadlineExceeded)
	if err := lost.Schedule(ctx, c); err != nil {
		t.Fatalf("stored schedule with a lost ack: %v; want success", err)
	}
	st, err := js.Stream(ctx, stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetLastMsgForSubject(ctx, stream.RetrySubject("sub_1", 7)); err != nil {
		t.Fatalf("the schedule is not stored: %v", err)
	}

	failed := settle.NewScheduler(js)
	settle.FailPublishes(failed, errors.New("nats unavailable"))
	c.Seq = 8
	if err := failed.Schedule(ctx, c); err == nil {
		t.Fatal("a publish that stored nothing reported success")
	}
}

// A deliverer whose clock is an hour ahead (or behind) schedules a retry
// at the server's time + delay: the schedule fires after the delay, not an
// hour late (or at once). Today's code added the delay to the local clock.
func TestScheduleUsesTheServersClock(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := ns.Connect(t)
	ctx := context.Background()
	if err := stream.Ensure(ctx, js, stream.Config{MemoryStorage: true}); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, stream.Deliveries)
	if err != nil {
		t.Fatal(err)
	}
	const delay = 30 * time.Second
	for i, skew := range []time.Duration{time.Hour, -time.Hour, 72 * time.Hour} {
		clock := settle.NewServerClock(js)
		clock.Local = func() time.Time { return time.Now().Add(skew) }
		s := settle.NewScheduler(js)
		s.Clock = clock
		seq := uint64(100 + i)
		c := settle.Copy{Header: nats.Header{"Hookline-Attempt": {"1"}}, Body: []byte(`{}`), Tenant: "acme",
			SubscriptionID: "sub_1", Seq: seq, Delay: delay}
		if err := s.Schedule(ctx, c); err != nil {
			t.Fatal(err)
		}
		m, err := st.GetLastMsgForSubject(ctx, stream.RetrySubject("sub_1", seq))
		if err != nil {
			t.Fatal(err)
		}
		at, err := time.Parse(time.RFC3339, strings.TrimPrefix(m.Header.Get("Nats-Schedule"), "@at "))
		if err != nil {
			t.Fatalf("schedule header %q: %v", m.Header.Get("Nats-Schedule"), err)
		}
		// m.Time is the server's clock when it stored the schedule.
		if in := at.Sub(m.Time); in < delay-time.Second || in > delay+2*time.Second {
			t.Errorf("clock skewed by %s: the retry fires %s after it was stored, want %s", skew, in.Round(time.Millisecond), delay)
		}
		if off := clock.Offset(); (off + skew).Abs() > time.Second {
			t.Errorf("clock skewed by %s: measured offset %s", skew, off)
		}
	}
}
