package ordering

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// AckFloor reads the EVENTS sequence up to which every event was fanned
// out: the dispatch consumer's ack floor.
type AckFloor func(ctx context.Context) (uint64, error)

// ConsumerAckFloor reads the ack floor of the durable consumer name of
// stream.
func ConsumerAckFloor(js jetstream.JetStream, stream, name string) AckFloor {
	var (
		mu   sync.Mutex
		cons jetstream.Consumer
	)
	return func(ctx context.Context) (uint64, error) {
		mu.Lock()
		c := cons
		mu.Unlock()
		if c == nil {
			var err error
			if c, err = js.Consumer(ctx, stream, name); err != nil {
				return 0, fmt.Errorf("dispatch consumer: %w", err)
			}
			mu.Lock()
			cons = c
			mu.Unlock()
		}
		info, err := c.Info(ctx)
		if err != nil {
			return 0, fmt.Errorf("dispatch consumer info: %w", err)
		}
		return info.AckFloor.Stream, nil
	}
}

// Floor caches the ack floor and refreshes it on demand, at most once per
// MinGap however many tasks ask (one JetStream request answers them all).
type Floor struct {
	read   AckFloor
	minGap time.Duration

	mu      sync.Mutex
	floor   uint64
	readAt  time.Time
	reading chan struct{} // closed when the read in progress ends
}

// NewFloor returns a Floor over read; minGap 0 means 10ms.
func NewFloor(read AckFloor, minGap time.Duration) *Floor {
	if minGap <= 0 {
		minGap = 10 * time.Millisecond
	}
	return &Floor{read: read, minGap: minGap}
}

// Known reports whether every event before seq is known to be fanned out,
// without asking JetStream.
func (f *Floor) Known(seq uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return seq <= f.floor+1
}

// Covers reports whether every event before seq was fanned out, reading
// the floor again when the cached one is short of it.
func (f *Floor) Covers(ctx context.Context, seq uint64) (bool, error) {
	f.mu.Lock()
	if seq <= f.floor+1 {
		f.mu.Unlock()
		return true, nil
	}
	if w := f.reading; w != nil {
		// Someone reads it now: share the answer.
		f.mu.Unlock()
		select {
		case <-w:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		f.mu.Lock()
		ok := seq <= f.floor+1
		f.mu.Unlock()
		return ok, nil
	}
	if time.Since(f.readAt) < f.minGap {
		// Read very recently: the caller waits and asks again later.
		f.mu.Unlock()
		return false, nil
	}
	w := make(chan struct{})
	f.reading = w
	f.mu.Unlock()

	v, err := f.read(ctx)
	f.mu.Lock()
	f.reading = nil
	f.readAt = time.Now()
	if err == nil && v > f.floor {
		f.floor = v
	}
	ok := seq <= f.floor+1
	f.mu.Unlock()
	close(w)
	return ok, err
}
