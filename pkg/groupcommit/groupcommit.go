// Package groupcommit publishes JetStream messages of one stream in atomic
// batches: publishes that arrive while a batch is being stored wait for the
// next one, so a single nats-server running sync_interval: always fsyncs once
// per batch instead of once per message (it coalesces an atomic batch's sync
// since v2.12). The stream must allow atomic publish (AllowAtomicPublish).
//
// Each message keeps its own outcome: a batch the server refuses as a whole
// (one message a duplicate of a stored one, the stream not allowing atomic
// publish, a timeout) is published again message by message, so a caller
// sees exactly what a plain publish would have told it. A message of a
// batch that timed out may have been stored: the message-by-message retry
// then needs its message id (deduplication) or an idempotent write, which
// is why Publish takes the id.
package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/hookline/hookline/pkg/natsconn"
)

// Config tunes a Publisher; the zero value is the default.
type Config struct {
	// MaxBatch is the most messages in one batch (default 256; the
	// server refuses more than its max_batch_size, 1000 by default).
	MaxBatch int
	// MaxBatchBytes bounds a batch's payload bytes (default 4 MiB).
	MaxBatchBytes int
	// Concurrency is how many batches may be in flight at once (default
	// 4; the server allows 50 open atomic batches per stream).
	Concurrency int
	// Timeout bounds one batch's commit (default 5 s).
	Timeout time.Duration
	// MinBatch is the fewest messages stored as one atomic batch (default
	// 8); fewer are published one by one, pipelined. A single nats-server
	// stages each atomic batch of a file-storage stream in a file store of
	// its own, which costs more than it saves unless the batch is big:
	// batches grow past it only when the server is slow to store (an fsync
	// per message), which is when one sync per batch pays.
	MinBatch int
}

func (c Config) withDefaults() Config {
	if c.MaxBatch <= 0 {
		c.MaxBatch = 256
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 4 << 20
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.MinBatch <= 0 {
		c.MinBatch = 8
	}
	return c
}

// Future is one message's outcome.
type Future struct {
	m     *nats.Msg
	msgID string
	done  chan struct{}
	seq   uint64
	dup   bool
	err   error
}

// Done is closed when the outcome is known.
func (f *Future) Done() <-chan struct{} { return f.done }

// Err is nil when the message is stored (or was already: Duplicate).
// Call it after Done is closed.
func (f *Future) Err() error { return f.err }

// Sequence is the stream sequence the message was stored at (0 when the
// server did not say: a duplicate, or an error).
func (f *Future) Sequence() uint64 { return f.seq }

// Duplicate says the stream already held a message with the same id.
func (f *Future) Duplicate() bool { return f.dup }

// Wait blocks until the outcome is known or ctx ends.
func (f *Future) Wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Future) resolve(seq uint64, dup bool, err error) {
	f.seq, f.dup, f.err = seq, dup, err
	close(f.done)
}

// Publisher batches the publishes of one stream. Publish queues, Run
// commits; after Run returns every queued message has its outcome and
// Publish fails with ErrStopped.
type Publisher struct {
	js    jetstream.JetStream
	cfg   Config
	slots chan struct{} // one per queued message: bounds the queue
	wake  chan struct{} // a message was queued (capacity 1)
	sem   chan struct{} // one per batch in flight

	mu      sync.Mutex
	queue   []*Future
	stopped bool

	batches, batched, fallbacks, messages atomic.Int64
}

// Stats counts what a Publisher did.
type Stats struct {
	// Batches is the atomic batches stored, Batched the messages in them.
	Batches, Batched int64
	// Fallbacks is the batches published message by message instead
	// (refused or timed out).
	Fallbacks int64
	// Messages is every message given an outcome, however stored.
	Messages int64
}

// Stats returns the counts so far.
func (p *Publisher) Stats() Stats {
	return Stats{Batches: p.batches.Load(), Batched: p.batched.Load(), Fallbacks: p.fallbacks.Load(), Messages: p.messages.Load()}
}

// New returns a Publisher over js.
func New(js jetstream.JetStream, cfg Config) *Publisher {
	cfg = cfg.withDefaults()
	return &Publisher{
		js:    js,
		cfg:   cfg,
		slots: make(chan struct{}, cfg.MaxBatch*cfg.Concurrency*2),
		wake:  make(chan struct{}, 1),
		sem:   make(chan struct{}, cfg.Concurrency),
	}
}

// ErrStopped is the outcome of a publish after the Publisher stopped.
var ErrStopped = errors.New("groupcommit: publisher stopped")

// Publish queues m (with message id msgID, "" for none) for the next
// batch. It blocks only while the queue is full and ctx lasts. m must not
// be changed afterwards.
func (p *Publisher) Publish(ctx context.Context, m *nats.Msg, msgID string) *Future {
	f := &Future{m: m, msgID: msgID, done: make(chan struct{})}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		f.resolve(0, false, fmt.Errorf("groupcommit: queue full: %w", ctx.Err()))
		return f
	}
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		<-p.slots
		f.resolve(0, false, ErrStopped)
		return f
	}
	p.queue = append(p.queue, f)
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return f
}

// Run commits batches until ctx ends, then commits what is queued and
// returns once every batch is done.
func (p *Publisher) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.stopped = true
			p.mu.Unlock()
			for {
				batch := p.take()
				if len(batch) == 0 {
					break
				}
				p.sem <- struct{}{}
				go p.commit(batch)
			}
			for range cap(p.sem) {
				p.sem <- struct{}{}
			}
			return
		case <-p.wake:
		}
		for {
			// Wait for a free batch slot before taking: publishes that
			// arrive meanwhile join this batch (the group commit).
			p.sem <- struct{}{}
			batch := p.take()
			if len(batch) == 0 {
				<-p.sem
				break
			}
			go p.commit(batch)
		}
	}
}

// take removes the next batch from the queue, within the batch limits.
func (p *Publisher) take() []*Future {
	p.mu.Lock()
	defer p.mu.Unlock()
	n, size := 0, 0
	for n < len(p.queue) && n < p.cfg.MaxBatch && size < p.cfg.MaxBatchBytes {
		size += len(p.queue[n].m.Data)
		n++
	}
	batch := append([]*Future(nil), p.queue[:n]...)
	p.queue = p.queue[n:]
	if len(p.queue) == 0 {
		p.queue = nil
	}
	for range n {
		<-p.slots
	}
	return batch
}

// commit stores batch as one atomic batch, or message by message when it
// holds fewer than MinBatch messages or the batch fails.
func (p *Publisher) commit(batch []*Future) {
	defer func() { <-p.sem }()
	defer p.messages.Add(int64(len(batch)))
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	if len(batch) >= max(p.cfg.MinBatch, 2) {
		msgs := make([]*nats.Msg, len(batch))
		for i, f := range batch {
			msgs[i] = copyMsg(f.m, f.msgID)
		}
		ack, err := jetstreamext.PublishMsgBatch(ctx, p.js, msgs,
			jetstreamext.BatchFlowControl{AckTimeout: p.cfg.Timeout})
		if err == nil && ack != nil && ack.Sequence >= uint64(len(batch)) {
			p.batches.Add(1)
			p.batched.Add(int64(len(batch)))
			first := ack.Sequence - uint64(len(batch)) + 1
			for i, f := range batch {
				f.resolve(first+uint64(i), false, nil)
			}
			return
		}
		// Nothing of a refused batch is stored; after a timeout some may
		// be, and the ids deduplicate the retry below.
		p.fallbacks.Add(1)
	}
	p.one(ctx, batch)
}

// one publishes each message on its own, asynchronously, and resolves each
// future with its own outcome.
func (p *Publisher) one(ctx context.Context, batch []*Future) {
	type pending struct {
		f   *Future
		ack jetstream.PubAckFuture
	}
	var waits []pending
	for _, f := range batch {
		var opts []jetstream.PublishOpt
		if f.msgID != "" {
			opts = append(opts, jetstream.WithMsgID(f.msgID))
		}
		a, err := natsconn.PublishAsync(ctx, p.js, copyMsg(f.m, ""), nil, opts...)
		if err != nil {
			f.resolve(0, false, fmt.Errorf("publish: %w", err))
			continue
		}
		waits = append(waits, pending{f, a})
	}
	for _, w := range waits {
		select {
		case ack := <-w.ack.Ok():
			w.f.resolve(ack.Sequence, ack.Duplicate, nil)
		case err := <-w.ack.Err():
			w.f.resolve(0, false, fmt.Errorf("publish: %w", err))
		case <-ctx.Done():
			w.f.resolve(0, false, fmt.Errorf("publish: %w", ctx.Err()))
		}
	}
}

// copyMsg is m with its own header (the batch headers are set on it), and
// msgID as Nats-Msg-Id when given.
func copyMsg(m *nats.Msg, msgID string) *nats.Msg {
	h := nats.Header{}
	for k, v := range m.Header {
		h[k] = append([]string(nil), v...)
	}
	if msgID != "" {
		h.Set(jetstream.MsgIDHeader, msgID)
	}
	return &nats.Msg{Subject: m.Subject, Header: h, Data: m.Data}
}
