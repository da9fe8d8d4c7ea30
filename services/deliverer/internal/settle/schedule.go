package settle

import (
	"context"
	"fmt"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Scheduler parks a copy of a task in DELIVERIES as a JetStream message
// schedule that fires into the task's delivery subject at a given time.
//
// Why a schedule and not NakWithDelay: a nak'ed message stays counted
// against the consumer's MaxAckPending until it is redelivered, so the
// waiting retries of one dead endpoint would fill the window and starve
// every healthy endpoint (measured; docs/architecture.md). A schedule sits outside the
// deliver consumer's filter (retry.>), so waiting costs the consumer nothing.
//
// Crash safety: the schedule subject is retry.<subscription>.<sequence of
// the task copy being retried>, and its Nats-Msg-Id is that subject too. A
// deliverer that crashes after scheduling but before acking the original
// gets the original redelivered and schedules again: within the duplicate
// window the publish is deduplicated (even when the first schedule already
// fired), after it the second schedule replaces the first if it has not
// fired yet.
//
// Time: a schedule fires at an absolute time the server's clock is compared
// with, so it is computed from the server's time (Clock), not this
// deliverer's: a skewed deliverer clock would compress or stretch every
// retry it schedules.
type Scheduler struct {
	js      jetstream.JetStream
	publish func(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
	// Clock is the server's time (NewScheduler: a ServerClock on js).
	Clock interface {
		Now(ctx context.Context) time.Time
	}
}

// NewScheduler publishes schedules with js, timed by the server's clock.
func NewScheduler(js jetstream.JetStream) *Scheduler {
	return &Scheduler{js: js, publish: js.PublishMsg, Clock: NewServerClock(js)}
}

// Copy is a task copy to schedule.
type Copy struct {
	// Header holds the copy's Hookline-* headers (nothing else).
	Header         nats.Header
	Body           []byte
	Tenant         string
	SubscriptionID string
	// Seq is the DELIVERIES sequence of the task being retried.
	Seq uint64
	// EventID, when set, says the attempt was made from dispatch and no
	// task was stored (Seq is 0): the schedule is keyed by the event and
	// subscription instead.
	EventID string
	// Delay from now; 0 fires on the scheduler's next tick.
	Delay time.Duration
}

// Schedule publishes the copy and waits for JetStream's ack.
//
// A publish whose ack was lost (a timeout, a dropped connection) may still
// have been stored. Naking the task then would start a second retry chain
// beside the stored schedule — for a long delay, after the duplicate
// window, a duplicate delivery. So an error is checked against the stream:
// a schedule on the subject (one per retried task) means it is stored, and
// Schedule succeeds.
func (s *Scheduler) Schedule(ctx context.Context, c Copy) error {
	subject := stream.RetrySubject(c.SubscriptionID, c.Seq)
	msgID := subject
	if c.EventID != "" {
		subject = stream.DirectRetrySubject(c.EventID, c.SubscriptionID)
		// The retry of a first attempt from dispatch stands for the task
		// that was never stored, under the task's dedup id: a fan-out
		// redone after it (the event's ack lost, another task refused)
		// publishes that task again, and DELIVERIES deduplicates it
		// instead of starting a second retry chain beside this one. The
		// server strips the id from the copy it fires.
		msgID = stream.TaskMsgID(c.EventID, c.SubscriptionID)
	}
	m := &nats.Msg{Subject: subject, Header: c.Header, Data: c.Body}
	_, err := s.publish(ctx, m,
		jetstream.WithScheduleAt(FireAt(s.Clock.Now(ctx), c.Delay)),
		jetstream.WithScheduleTarget(stream.DeliverySubject(c.Tenant, c.SubscriptionID)),
		jetstream.WithMsgID(msgID),
		jetstream.WithExpectStream(stream.Deliveries),
	)
	if err != nil {
		if s.stored(ctx, subject) {
			return nil
		}
		return fmt.Errorf("schedule retry: %w", err)
	}
	return nil
}

// stored reports whether a schedule is on subject (given a few seconds of
// its own: the publish's context may be what ran out).
func (s *Scheduler) stored(ctx context.Context, subject string) bool {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	st, err := s.js.Stream(ctx, stream.Deliveries)
	if err != nil {
		return false
	}
	_, err = st.GetLastMsgForSubject(ctx, subject)
	return err == nil
}

// FireAt is when a schedule for now+delay fires. Schedules have one-second
// resolution (the time is sent as RFC 3339 seconds), so a positive delay is
// rounded up to the next whole second, never down: a retry never comes
// early. A zero delay is "now", already past once truncated, which the
// server fires on its next tick.
func FireAt(now time.Time, delay time.Duration) time.Time {
	if delay <= 0 {
		return now
	}
	at := now.Add(delay)
	if t := at.Truncate(time.Second); !t.Equal(at) {
		at = t.Add(time.Second)
	}
	return at
}
