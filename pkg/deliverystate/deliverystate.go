// Package deliverystate keeps the state of each event × subscription in
// the KV bucket hookline_deliveries, so that GET /v1/events/{id}/deliveries
// answers from two filtered key listings per event instead of scanning
// ATTEMPTS. Deliverers write a state at each attempt's outcome and when
// they dead-letter; the bucket keeps it as long as EVENTS keeps events.
//
// A state is stored one of two ways, and readers read both:
//
//   - alone, under its own key (stream.DeliveryStateKey): what Put writes,
//     and what every deliverer wrote before batches;
//   - in a batch (PutStored with a batch writer): the states of the events
//     EVENTS stored in the same Window, written together within a linger,
//     as one message under stream.DeliveryStateBatchKey, one JSON line
//     each. Under sync_interval: always nats-server fsyncs each stored
//     message, so one state per message cost a delivery a second fsync,
//     and beyond what the disk takes the writes were dropped.
//
// Of several states of one key the newest (UpdatedAt, then the order
// stored) is the answer.
package deliverystate

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hookline/hookline/pkg/linger"
	"strconv"
	"strings"
	"sync/atomic"
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
	batch *batcher // nil: one message per state
}

// NewWriter writes through js, one message per state.
func NewWriter(js jetstream.JetStream) *Writer { return &Writer{js: js} }

// NewGroupWriter writes through p (the caller runs it), which stores the
// states written together in one atomic batch. p must commit one batch at
// a time (Concurrency 1), so that a key's states are stored in the order
// they were written.
func NewGroupWriter(p *groupcommit.Publisher) *Writer { return &Writer{group: p} }

// Window is the span of EVENTS storage times whose events' states a batch
// writer stores together: a reader reads every state of the window of the
// event it looks up (at 3,000 events/s, 60 events' states).
const Window = 20 * time.Millisecond

func window(storedAt time.Time) int64 { return storedAt.UnixNano() / int64(Window) }

// Batch settings.
const (
	// DefaultLinger is how long a batch waits for more states (the
	// attempt records' linger).
	DefaultLinger = 50 * time.Millisecond
	// DefaultMaxRecords and DefaultMaxBytes close a batch early.
	DefaultMaxRecords = 256
	DefaultMaxBytes   = 128 << 10
)

// BatchConfig tunes NewBatchWriter; zero values take the defaults.
type BatchConfig struct {
	Linger     time.Duration
	MaxRecords int
	MaxBytes   int
	// OnError is told of a batch that was not stored (refused publish);
	// nil: nobody.
	OnError func(records int, err error)
}

// NewBatchWriter writes through js; PutStored batches the states of the
// events EVENTS stored in the same Window. Call Flush before closing js.
func NewBatchWriter(js jetstream.JetStream, c BatchConfig) *Writer {
	if c.Linger <= 0 {
		c.Linger = DefaultLinger
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	b := &batcher{js: js, c: c, id: hex.EncodeToString(id[:])}
	b.batches = linger.New(c.Linger, c.MaxRecords, c.MaxBytes, b.publish)
	return &Writer{js: js, batch: b}
}

// record is one line of a batch.
type record struct {
	EventID string `json:"event_id"`
	State
}

func check(tenant, eventID string, s State) error {
	if tenant == "" || eventID == "" || s.SubscriptionID == "" || strings.ContainsAny(tenant+s.SubscriptionID, ".*> ") {
		return fmt.Errorf("delivery state: no key for tenant %q, event %q, subscription %q", tenant, eventID, s.SubscriptionID)
	}
	return nil
}

// Put stores s for the event of tenant. It returns at once; the error is
// a refused publish (too many unacknowledged writes, not connected).
func (w *Writer) Put(tenant, eventID string, s State) error {
	if err := check(tenant, eventID, s); err != nil {
		return err
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

// PutStored stores s for the event of tenant that EVENTS stored at
// storedAt (the event's stream timestamp: what the reader is given). A
// batch writer adds it to the open batch of its window and returns; other
// writers, and a zero storedAt, Put.
func (w *Writer) PutStored(tenant, eventID string, storedAt time.Time, s State) error {
	if w.batch == nil || storedAt.IsZero() {
		return w.Put(tenant, eventID, s)
	}
	if err := check(tenant, eventID, s); err != nil {
		return err
	}
	now := time.Now().UTC()
	s.UpdatedAt = &now
	line, _ := json.Marshal(record{EventID: eventID, State: s})
	w.batch.batches.Add(batchOf{tenant: tenant, window: window(storedAt)}, "", line)
	return nil
}

// Flush stores the open batches and waits until every write of js is
// acknowledged or ctx ends.
func (w *Writer) Flush(ctx context.Context) error {
	if w.batch == nil || w.js == nil {
		return nil
	}
	w.batch.batches.Flush()
	select {
	case <-w.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush delivery states: %w", ctx.Err())
	}
}

type batchOf struct {
	tenant string
	window int64
}

type batcher struct {
	js      jetstream.JetStream
	c       BatchConfig
	id      string // of this writer, in every key it writes
	n       atomic.Uint64
	batches *linger.Batcher[batchOf]
}

func (b *batcher) publish(bt *linger.Batch[batchOf]) {
	key := stream.DeliveryStateBatchKey(bt.Key.tenant, bt.Key.window, b.id+"-"+strconv.FormatUint(b.n.Add(1), 10))
	if _, err := b.js.PublishAsync("$KV."+stream.DeliveriesBucket+"."+key, bt.Body); err != nil && b.c.OnError != nil {
		b.c.OnError(bt.N, err)
	}
}

// Read returns the stored states of one event of tenant, by subscription;
// storedAt is when EVENTS stored it (zero: only the states stored alone
// are read). It costs two filtered key listings (the event's own keys,
// its window's batches) and one read per key found.
func Read(ctx context.Context, js jetstream.JetStream, tenant, eventID string, storedAt time.Time) (map[string]State, error) {
	kv, err := js.KeyValue(ctx, stream.DeliveriesBucket)
	if err != nil {
		return nil, fmt.Errorf("open kv bucket %s: %w", stream.DeliveriesBucket, err)
	}
	var m merged
	own, err := entries(ctx, kv, stream.DeliveryStateFilter(tenant, eventID))
	if err != nil {
		return nil, err
	}
	for _, e := range own {
		var s State
		if json.Unmarshal(e.Value(), &s) != nil || s.SubscriptionID == "" {
			continue
		}
		m.add(s, e.Revision(), 0)
	}
	if !storedAt.IsZero() {
		batches, err := entries(ctx, kv, stream.DeliveryStateBatchFilter(tenant, window(storedAt)))
		if err != nil {
			return nil, err
		}
		for _, e := range batches {
			m.addBatch(e, eventID, "")
		}
	}
	return m.states(), nil
}

// Get returns the stored state of one event of tenant for one
// subscription (ok false when there is none); storedAt as for Read.
func Get(ctx context.Context, kv jetstream.KeyValue, tenant, eventID string, storedAt time.Time, subscriptionID string) (State, bool, error) {
	return NewLookup(kv).Get(ctx, tenant, eventID, storedAt, subscriptionID)
}

// Lookup reads states one event at a time, as Get does, keeping the last
// window's batches for a second: a scan of consecutive events reads each
// window once.
type Lookup struct {
	kv     jetstream.KeyValue
	of     batchOf
	at     time.Time
	cached []jetstream.KeyValueEntry
}

// NewLookup reads kv (the bucket stream.DeliveriesBucket).
func NewLookup(kv jetstream.KeyValue) *Lookup { return &Lookup{kv: kv} }

// lookupCache is how long a Lookup keeps a window's batches.
const lookupCache = time.Second

// Get is the package's Get.
func (l *Lookup) Get(ctx context.Context, tenant, eventID string, storedAt time.Time, subscriptionID string) (State, bool, error) {
	var m merged
	e, err := l.kv.Get(ctx, stream.DeliveryStateKey(tenant, eventID, subscriptionID))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return State{}, false, fmt.Errorf("read delivery state: %w", err)
	default:
		var s State
		if json.Unmarshal(e.Value(), &s) == nil {
			s.SubscriptionID = subscriptionID
			m.add(s, e.Revision(), 0)
		}
	}
	if !storedAt.IsZero() {
		of := batchOf{tenant: tenant, window: window(storedAt)}
		if l.cached == nil || l.of != of || time.Since(l.at) > lookupCache {
			batches, err := entries(ctx, l.kv, stream.DeliveryStateBatchFilter(tenant, of.window))
			if err != nil {
				return State{}, false, err
			}
			l.of, l.at, l.cached = of, time.Now(), batches
		}
		for _, e := range l.cached {
			m.addBatch(e, eventID, subscriptionID)
		}
	}
	s, ok := m[subscriptionID]
	return s.State, ok, nil
}

// entries reads every key filter matches (none: no error).
func entries(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	lister, err := kv.ListKeysFiltered(ctx, filter)
	if err != nil {
		if errors.Is(err, jetstream.ErrNoKeysFound) {
			return []jetstream.KeyValueEntry{}, nil
		}
		return nil, fmt.Errorf("list delivery states: %w", err)
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	out := make([]jetstream.KeyValueEntry, 0, len(keys))
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read delivery state: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// merged keeps the newest state per subscription: the later UpdatedAt,
// and of equal ones (or without) the one stored later.
type merged map[string]stored

// stored is a state and where it was stored: the revision of its message
// and its line in a batch (0 alone).
type stored struct {
	State
	rev, line uint64
}

func (m *merged) add(s State, rev, line uint64) {
	if *m == nil {
		*m = merged{}
	}
	n := stored{State: s, rev: rev, line: line}
	if old, ok := (*m)[s.SubscriptionID]; ok && !n.newer(old) {
		return
	}
	(*m)[s.SubscriptionID] = n
}

func (n stored) newer(old stored) bool {
	if n.UpdatedAt != nil && old.UpdatedAt != nil && !n.UpdatedAt.Equal(*old.UpdatedAt) {
		return n.UpdatedAt.After(*old.UpdatedAt)
	}
	return n.rev > old.rev || n.rev == old.rev && n.line > old.line
}

func (m merged) states() map[string]State {
	out := make(map[string]State, len(m))
	for k, s := range m {
		out[k] = s.State
	}
	return out
}

// addBatch adds the states of eventID (and of subscriptionID, unless "")
// held by the batch e.
func (m *merged) addBatch(e jetstream.KeyValueEntry, eventID, subscriptionID string) {
	id, _ := json.Marshal(eventID) // as the writer wrote it
	needle := append([]byte(`"event_id":`), id...)
	body := e.Value()
	for i := uint64(1); len(body) > 0; i++ {
		line := body
		if n := bytes.IndexByte(body, '\n'); n >= 0 {
			line, body = body[:n], body[n+1:]
		} else {
			body = nil
		}
		if !bytes.Contains(line, needle) {
			continue
		}
		var r record
		if json.Unmarshal(line, &r) != nil || r.EventID != eventID || r.SubscriptionID == "" ||
			subscriptionID != "" && r.SubscriptionID != subscriptionID {
			continue
		}
		m.add(r.State, e.Revision(), i)
	}
}
