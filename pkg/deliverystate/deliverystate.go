// Package deliverystate keeps the state of each event × subscription in
// the KV bucket hookline_deliveries, so that GET /v1/events/{id}/deliveries
// answers from one filtered key listing per event instead of scanning
// ATTEMPTS. Deliverers write a key at each attempt's outcome and when they
// dead-letter; the bucket keeps a key as long as EVENTS keeps events.
package deliverystate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/groupcommit"
	"github.com/hookline/hookline/pkg/stream"
)

// States.
const (
	// Pending: matched, no outcome yet (never stored: the reader's word
	// for a matching subscription without a key).
	Pending      = "pending"
	Delivered    = "delivered"
	Retrying     = "retrying"
	DeadLettered = "dead_lettered"
)

// State is what is stored per event × subscription.
type State struct {
	SubscriptionID string     `json:"subscription_id"`
	State          string     `json:"state" enum:"pending,delivered,retrying,dead_lettered"`
	Attempts       uint32     `json:"attempts" doc:"HTTP attempts made (the latest delivery: a replay starts again at 1)"`
	LastStatus     int32      `json:"last_status" doc:"last HTTP status; 0: no answer or no attempt"`
	LastAttemptAt  *time.Time `json:"last_attempt_at,omitempty"`
	Reason         string     `json:"reason,omitempty" doc:"the dead-letter reason"`
	UpdatedAt      *time.Time `json:"updated_at,omitempty"`
}

// Writer stores states without waiting for their acknowledgement (a state
// is informational: a lost write leaves an older state, never a lost
// delivery).
type Writer struct {
	js    jetstream.JetStream
	group *groupcommit.Publisher
}

// NewWriter writes through js.
func NewWriter(js jetstream.JetStream) *Writer { return &Writer{js: js} }

// NewGroupWriter writes through p (the caller runs it), which stores the
// states written together in one atomic batch. p must commit one batch at
// a time (Concurrency 1), so that a key's states are stored in the order
// they were written.
func NewGroupWriter(p *groupcommit.Publisher) *Writer { return &Writer{group: p} }

// Put stores s for the event of tenant. It returns at once; the error is
// a refused publish (too many unacknowledged writes, not connected).
func (w *Writer) Put(tenant, eventID string, s State) error {
	if tenant == "" || eventID == "" || s.SubscriptionID == "" || strings.ContainsAny(tenant+s.SubscriptionID, ".*> ") {
		return fmt.Errorf("delivery state: no key for tenant %q, event %q, subscription %q", tenant, eventID, s.SubscriptionID)
	}
	now := time.Now().UTC()
	s.UpdatedAt = &now
	b, _ := json.Marshal(s)
	subject := "$KV." + stream.DeliveriesBucket + "." + stream.DeliveryStateKey(tenant, eventID, s.SubscriptionID)
	if w.group != nil {
		f := w.group.Publish(context.Background(), &nats.Msg{Subject: subject, Header: nats.Header{}, Data: b}, "")
		select {
		case <-f.Done():
			return f.Err() // refused at once (stopped)
		default:
			return nil
		}
	}
	_, err := w.js.PublishAsync(subject, b)
	return err
}

// Read returns the stored states of one event of tenant, by subscription.
// It costs one filtered key listing and one read per subscription the
// event went to.
func Read(ctx context.Context, js jetstream.JetStream, tenant, eventID string) (map[string]State, error) {
	kv, err := js.KeyValue(ctx, stream.DeliveriesBucket)
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", stream.DeliveriesBucket, err)
	}
	lister, err := kv.ListKeysFiltered(ctx, stream.DeliveryStateFilter(tenant, eventID))
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return map[string]State{}, nil
		}
		return nil, fmt.Errorf("list delivery states: %w", err)
	}
	out := map[string]State{}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read delivery state: %w", err)
		}
		var s State
		if json.Unmarshal(e.Value(), &s) != nil || s.SubscriptionID == "" {
			continue
		}
		out[s.SubscriptionID] = s
	}
	return out, nil
}

// Get returns the stored state of one event of tenant for one
// subscription (ok false when there is none).
func Get(ctx context.Context, kv jetstream.KeyValue, tenant, eventID, subscriptionID string) (State, bool, error) {
	e, err := kv.Get(ctx, stream.DeliveryStateKey(tenant, eventID, subscriptionID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read delivery state: %w", err)
	}
	var s State
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return State{}, false, nil
	}
	return s, true, nil
}
