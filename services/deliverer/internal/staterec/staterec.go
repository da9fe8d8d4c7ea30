// Package staterec writes the delivery state of each event × subscription
// (pkg/deliverystate) from what the deliver stage already reports: it
// wraps the attempt recorder (every attempt's outcome) and the dead-letter
// publisher (dead-lettered, attempted or not), so the stage itself does
// not change.
package staterec

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/deadletter"
)

// Recorder is the deliver stage's attempt recorder.
type Recorder interface {
	Record(a *hooklinev1.Attempt)
}

// DeadLetters is the deliver stage's dead-letter publisher.
type DeadLetters interface {
	Publish(ctx context.Context, l deadletter.Letter) (duplicate bool, err error)
}

// Attempts records through inner, then stores the attempt's outcome as the
// delivery state (delivered or retrying; a dead_letter outcome is stored by
// the dead-letter publisher, with its reason). Its RecordStored is told
// when EVENTS stored the event, which a batch writer batches by.
func Attempts(inner Recorder, w *deliverystate.Writer, log *zap.Logger) *AttemptStates {
	return &AttemptStates{inner: inner, w: w, log: log}
}

// AttemptStates is Attempts' recorder.
type AttemptStates struct {
	inner Recorder
	w     *deliverystate.Writer
	log   *zap.Logger
}

// Record records r, its event's storage time unknown.
func (a *AttemptStates) Record(r *hooklinev1.Attempt) { a.RecordStored(r, time.Time{}) }

// RecordStored records r of an event EVENTS stored at storedAt.
func (a *AttemptStates) RecordStored(r *hooklinev1.Attempt, storedAt time.Time) {
	a.inner.Record(r)
	if r.GetOutcome() == "dead_letter" {
		return
	}
	s := deliverystate.State{SubscriptionID: r.GetSubscriptionId(), State: deliverystate.Retrying,
		Attempts: r.GetAttempt(), LastStatus: r.GetStatus()}
	if r.GetOutcome() == "success" {
		s.State = deliverystate.Delivered
	}
	if r.GetStartedAt() != nil {
		t := r.GetStartedAt().AsTime().UTC()
		s.LastAttemptAt = &t
	}
	if err := a.w.PutStored(r.GetTenant(), r.GetEventId(), storedAt, s); err != nil {
		a.log.Debug("delivery state not stored", zap.String("subscription_id", r.GetSubscriptionId()), zap.Error(err))
	}
}

// DeadLettersTo publishes through inner, then stores dead_lettered.
func DeadLettersTo(inner DeadLetters, w *deliverystate.Writer, log *zap.Logger) DeadLetters {
	return &deadLetters{inner: inner, w: w, log: log}
}

type deadLetters struct {
	inner DeadLetters
	w     *deliverystate.Writer
	log   *zap.Logger
}

func (d *deadLetters) Publish(ctx context.Context, l deadletter.Letter) (bool, error) {
	dup, err := d.inner.Publish(ctx, l)
	if err != nil {
		return dup, err
	}
	s := deliverystate.State{SubscriptionID: l.SubscriptionID, State: deliverystate.DeadLettered,
		Attempts: uint32(max(l.Attempts, 0)), LastStatus: int32(l.LastStatus), Reason: l.Reason}
	if !l.LastAttemptAt.IsZero() {
		t := l.LastAttemptAt.UTC()
		s.LastAttemptAt = &t
	}
	// A letter carries its task's header, Hookline-Accepted-At with it.
	storedAt, _ := time.Parse(time.RFC3339Nano, l.Header.Get(stream.HeaderAcceptedAt))
	if perr := d.w.PutStored(l.Tenant, l.EventID, storedAt, s); perr != nil {
		d.log.Debug("delivery state not stored", zap.String("subscription_id", l.SubscriptionID), zap.Error(perr))
	}
	return dup, nil
}
