package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

// NewIDPrefix returns a short random prefix that keeps a test's event ids
// apart from any other test's.
func NewIDPrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Load publishes Events events through the producer's batch API with
// Concurrency publishers, each retrying a failed batch with the same ids
// (the producer dedups them) until it is acknowledged or ctx ends. Every
// event is recorded in the Checker: attempted before the first try,
// accepted once acknowledged.
type Load struct {
	API     *API
	Checker *Checker
	Tenant  string
	// Types are cycled through, one per event.
	Types       []string
	Events      int
	BatchSize   int // default 100, at most 500
	Concurrency int // default 4
	// Prefix of the ids (default: random). Ids are evt_<prefix>_<n>.
	Prefix string
	// Pace, when set, is the least time between two batches of one
	// publisher, so the load spans the faults a test injects.
	Pace time.Duration

	accepted atomic.Int64
	retries  atomic.Int64
	mu       sync.Mutex
	errs     []string
	done     chan struct{}
	result   LoadResult
}

// LoadResult sums up a load run.
type LoadResult struct {
	Accepted int
	// Retries counts batch publishes that failed and were tried again.
	Retries int
	// Errors samples what the failed tries answered.
	Errors   []string
	Duration time.Duration
	Err      error
}

// EventID is the id of event n.
func (l *Load) EventID(n int) string { return fmt.Sprintf("evt_%s_%06d", l.Prefix, n) }

// Start publishes in the background; Wait returns the result.
func (l *Load) Start(ctx context.Context) *Load {
	if l.BatchSize <= 0 {
		l.BatchSize = 100
	}
	if l.Concurrency <= 0 {
		l.Concurrency = 4
	}
	if l.Prefix == "" {
		l.Prefix = NewIDPrefix()
	}
	l.done = make(chan struct{})
	batches := make(chan []Event)
	go func() {
		defer close(batches)
		for start := 0; start < l.Events; start += l.BatchSize {
			var b []Event
			for n := start; n < min(start+l.BatchSize, l.Events); n++ {
				typ := l.Types[n%len(l.Types)]
				data, _ := json.Marshal(map[string]any{"n": n, "tenant": l.Tenant, "note": "hookline fault test"})
				b = append(b, Event{ID: l.EventID(n), Tenant: l.Tenant, Type: typ, Data: data})
			}
			select {
			case batches <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	began := time.Now()
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range l.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range batches {
				next := time.Now().Add(l.Pace)
				if err := l.publish(ctx, b); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				if l.Pace > 0 {
					select {
					case <-time.After(time.Until(next)):
					case <-ctx.Done():
					}
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		l.mu.Lock()
		l.result = LoadResult{
			Accepted: int(l.accepted.Load()),
			Retries:  int(l.retries.Load()),
			Errors:   append([]string(nil), l.errs...),
			Duration: time.Since(began),
		}
		if err, ok := firstErr.Load().(error); ok {
			l.result.Err = err
		}
		l.mu.Unlock()
		close(l.done)
	}()
	return l
}

func (l *Load) publish(ctx context.Context, b []Event) error {
	for _, e := range b {
		l.Checker.Attempt(e.ID, e.Tenant, e.Type)
	}
	backoff := 50 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		got, err := l.API.PublishBatch(rctx, b)
		cancel()
		if err == nil {
			for i, p := range got {
				if p.ID != b[i].ID {
					return fmt.Errorf("batch entry %d acknowledged as %q, sent %q", i, p.ID, b[i].ID)
				}
				l.Checker.Accept(p.ID, b[i].Tenant, b[i].Type)
			}
			l.accepted.Add(int64(len(b)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("load stopped with a batch unacknowledged: %w", err)
		}
		var se *StatusError
		if errors.As(err, &se) && se.Status >= 400 && se.Status < 500 && se.Status != 429 {
			return fmt.Errorf("producer refused a valid batch: %w", err)
		}
		l.retries.Add(1)
		l.mu.Lock()
		if len(l.errs) < 10 {
			l.errs = append(l.errs, err.Error())
		}
		l.mu.Unlock()
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// Accepted is how many events were acknowledged so far.
func (l *Load) Accepted() int { return int(l.accepted.Load()) }

// Finished reports whether every batch was acknowledged (or the load gave
// up), without waiting.
func (l *Load) Finished() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// Wait blocks until every batch was acknowledged (or the load gave up).
func (l *Load) Wait() LoadResult {
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.result
}

// PublishNATS publishes one event straight to events.<tenant>.<type> as a
// platform service would, retrying until JetStream acknowledges it. With an
// id it is sent as Nats-Msg-Id <tenant>:<id>; without, the event's id is
// evt_seq_<stream sequence>_<stored time> (the NATS contract: SeqIDOf). It
// returns the event id.
func PublishNATS(ctx context.Context, js jetstream.JetStream, c *Checker, tenant, eventType, id string, data []byte) (string, error) {
	msg := nats.NewMsg(stream.EventSubject(tenant, eventType))
	msg.Data = data
	if id != "" {
		msg.Header.Set(stream.HeaderMsgID, stream.EventMsgID(tenant, id))
		c.Attempt(id, tenant, eventType)
	}
	backoff := 50 * time.Millisecond
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ack, err := js.PublishMsg(rctx, msg)
		cancel()
		if err == nil {
			if id == "" {
				if id, err = SeqIDOf(ctx, js, ack.Sequence); err != nil {
					return "", err
				}
			}
			c.Accept(id, tenant, eventType)
			return id, nil
		}
		if ctx.Err() != nil || id == "" {
			// Without an id a retry could store the event twice: give up.
			return "", fmt.Errorf("publish %s: %w", msg.Subject, err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, time.Second)
	}
}

// SeqIDOf is the id of the event stored at seq in EVENTS without a (valid)
// Nats-Msg-Id: stream.SeqEventID of its sequence and stored time, read
// back from the stream (a publish ack carries no time).
func SeqIDOf(ctx context.Context, js jetstream.JetStream, seq uint64) (string, error) {
	s, err := js.Stream(ctx, stream.Events)
	if err != nil {
		return "", fmt.Errorf("look up %s: %w", stream.Events, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if err != nil {
		return "", fmt.Errorf("read %s seq %d: %w", stream.Events, seq, err)
	}
	return stream.SeqEventID(seq, m.Time), nil
}
