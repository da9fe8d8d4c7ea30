package deadletter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
)

// ErrInterrupted is returned by Replayer.Run when its context ends before
// every entry was replayed. The entry in flight was finished first; the
// entries not replayed are still in DEADLETTER.
var ErrInterrupted = errors.New("replay interrupted")

// Outcome is what happened to one entry.
type Outcome string

const (
	// Replayed: the task publish was acknowledged, then the entry deleted.
	Replayed Outcome = "replayed"
	// Gone: the entry had left DEADLETTER before its turn (replayed or
	// purged by someone else meanwhile); nothing was published.
	Gone Outcome = "gone"
	// Purged: the entry was deleted without a replay.
	Purged Outcome = "purged"
)

// Result is the outcome of one entry.
type Result struct {
	Seq            uint64  `json:"seq"`
	EventID        string  `json:"event_id"`
	Tenant         string  `json:"tenant"`
	SubscriptionID string  `json:"subscription_id"`
	Outcome        Outcome `json:"outcome"`
	// TaskSeq is the DELIVERIES sequence of the replayed task.
	TaskSeq uint64 `json:"task_seq,omitempty"`
	// Duplicate: the task had already been published by an earlier run that
	// stopped before deleting the entry; it was not published again.
	Duplicate bool `json:"duplicate,omitempty"`
}

// Replayer turns dead letters back into delivery tasks.
//
// For each entry, in order: ask a deliverer to replay it (pkg/replay: the
// deliverer reads the entry from DEADLETTER and publishes its task to
// deliveries.<tenant>.<subscription> with the dedup id
// <event>:<subscription>:replay:<seq>; hookctl cannot publish tasks), wait
// for the acknowledgement, and only then delete the entry from DEADLETTER. The
// deletion is the checkpoint: a run stopped at any point and started again
// with the same selection finds exactly the entries not yet replayed, and a
// stop between the acknowledgement and the deletion is harmless because the
// next run's publish is deduplicated (within the stream's duplicate window).
type Replayer struct {
	JS    jetstream.JetStream
	Store *Store
	// Rate is the most entries per second (0: no pacing).
	Rate float64
	// Timeout bounds the NATS calls of one entry (default 10s).
	Timeout time.Duration
	// OnResult, if set, is called after each entry with how many are done.
	OnResult func(done int, r Result)
}

// Run replays entries in order. When ctx ends it finishes the entry in
// flight, stops, and returns the results so far with ErrInterrupted. On a
// NATS error it stops at once and returns it; the failed entry stays in
// DEADLETTER.
func (r *Replayer) Run(ctx context.Context, entries []Entry) ([]Result, error) {
	var interval time.Duration
	if r.Rate > 0 {
		interval = time.Duration(float64(time.Second) / r.Rate)
	}
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	results := make([]Result, 0, len(entries))
	var next time.Time
	for _, e := range entries {
		if err := wait(ctx, next); err != nil {
			return results, ErrInterrupted
		}
		if interval > 0 {
			next = time.Now().Add(interval)
		}
		// The entry in flight is finished even when ctx ends meanwhile:
		// Ctrl-C never leaves a half-done entry behind.
		ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
		res, err := r.one(ectx, e)
		cancel()
		if err != nil {
			return results, err
		}
		results = append(results, res)
		if r.OnResult != nil {
			r.OnResult(len(results), res)
		}
	}
	return results, nil
}

// wait returns when the time has come or ctx ended (with its error).
func wait(ctx context.Context, until time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	d := time.Until(until)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func (r *Replayer) one(ctx context.Context, e Entry) (Result, error) {
	rec := e.Record
	res := Result{Seq: rec.GetSeq(), EventID: rec.GetEventId(), Tenant: rec.GetTenant(), SubscriptionID: rec.GetSubscriptionId()}
	ans, err := replay.Ask(ctx, r.JS.Conn(), rec.GetSeq())
	if err != nil {
		return res, fmt.Errorf("%w (the entry stays in %s)", err, stream.DeadLetter)
	}
	if ans.Outcome == replay.Gone {
		res.Outcome = Gone
		return res, nil
	}
	res.TaskSeq, res.Duplicate = ans.TaskSeq, ans.Duplicate
	if err := r.Store.Delete(ctx, rec.GetSeq()); err != nil && !errors.Is(err, ErrNotFound) {
		return res, fmt.Errorf("seq %d: task published (%s seq %d) but the entry could not be deleted: %w; running the same replay again is safe (the task is deduplicated)", rec.GetSeq(), stream.Deliveries, ans.TaskSeq, err)
	}
	res.Outcome = Replayed
	return res, nil
}

// Unreplayable returns the entries that lack what a task needs: an event
// id, a tenant and a subscription id.
func Unreplayable(entries []Entry) []Entry {
	var bad []Entry
	for _, e := range entries {
		if e.Record.GetEventId() == "" || e.Record.GetTenant() == "" || e.Record.GetSubscriptionId() == "" {
			bad = append(bad, e)
		}
	}
	return bad
}
