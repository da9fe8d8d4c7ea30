// Package linger gathers newline-separated records into one message per
// key: a batch is published when it holds MaxRecords records or MaxBytes
// bytes, or Linger after its first record, whichever comes first. The
// attempt recorder (a message per subscription) and the delivery-state
// writer (a KV value per tenant and window) store their records this way.
package linger

import (
	"sync"
	"time"
)

// Batch is the records gathered under one key.
type Batch[K comparable] struct {
	Key K
	// Body is the records, each followed by a newline; N how many.
	Body []byte
	N    int
	// First is what the batch's first record was added with (the attempt
	// recorder: its event id).
	First string
	timer *time.Timer
}

// Batcher gathers records by key and hands each full or lingered batch to
// its publish function, on the goroutine that filled it or on a timer's.
type Batcher[K comparable] struct {
	linger     time.Duration
	maxRecords int
	maxBytes   int
	publish    func(*Batch[K])

	mu   sync.Mutex
	open map[K]*Batch[K]
}

// New returns a Batcher; linger 0 publishes every record at once, as a
// batch of one.
func New[K comparable](linger time.Duration, maxRecords, maxBytes int, publish func(*Batch[K])) *Batcher[K] {
	return &Batcher[K]{linger: max(linger, 0), maxRecords: maxRecords, maxBytes: maxBytes, publish: publish, open: map[K]*Batch[K]{}}
}

// Add appends line (which it takes over) to key's open batch, opening one
// (first names it) when there is none, and publishes the batch when it is
// full.
func (b *Batcher[K]) Add(key K, first string, line []byte) {
	b.mu.Lock()
	bt := b.open[key]
	if bt == nil {
		bt = &Batch[K]{Key: key, First: first}
		if b.linger > 0 {
			b.open[key] = bt
			bt.timer = time.AfterFunc(b.linger, func() { b.flush(bt) })
		}
	}
	if bt.N == 0 {
		bt.Body = append(line, '\n') // the first record's buffer becomes the body
	} else {
		bt.Body = append(append(bt.Body, line...), '\n')
	}
	bt.N++
	full := b.linger == 0 || bt.N >= b.maxRecords || len(bt.Body) >= b.maxBytes
	if full && bt.timer != nil {
		delete(b.open, key)
		bt.timer.Stop()
	}
	b.mu.Unlock()
	if full {
		b.publish(bt)
	}
}

// flush publishes bt unless it went out already.
func (b *Batcher[K]) flush(bt *Batch[K]) {
	b.mu.Lock()
	if b.open[bt.Key] != bt {
		b.mu.Unlock()
		return
	}
	delete(b.open, bt.Key)
	b.mu.Unlock()
	b.publish(bt)
}

// Flush publishes every open batch now.
func (b *Batcher[K]) Flush() {
	b.mu.Lock()
	open := make([]*Batch[K], 0, len(b.open))
	for _, bt := range b.open {
		open = append(open, bt)
	}
	b.mu.Unlock()
	for _, bt := range open {
		bt.timer.Stop()
		b.flush(bt)
	}
}
