package settle

import (
	"context"
	"sync"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// ServerClock tells the NATS server's time on this deliverer: the local
// clock plus an offset measured from the time stamp of a DELIVERIES stream
// info answer (the server's clock), refreshed every RefreshEvery. A retry
// fires at server time + delay, the time the server's scheduler compares
// with, so a deliverer whose own clock is skewed neither compresses nor
// stretches the retry schedule (issue 12, item 7). The offset is known to
// within half the round trip of the info request.
type ServerClock struct {
	js jetstream.JetStream
	// Local is the deliverer's clock (time.Now; tests inject a skewed one).
	Local func() time.Time
	// RefreshEvery is how often the offset is measured again (default 1m).
	RefreshEvery time.Duration

	mu       sync.Mutex
	offset   time.Duration
	measured time.Time // local time of the last measurement (zero: never)
}

// NewServerClock measures the offset against js's server.
func NewServerClock(js jetstream.JetStream) *ServerClock {
	return &ServerClock{js: js, Local: time.Now, RefreshEvery: time.Minute}
}

// Now is the server's time as this deliverer's best estimate. When the
// server cannot be asked, the last offset is used (zero before the first
// measurement: the local clock).
func (c *ServerClock) Now(ctx context.Context) time.Time {
	c.mu.Lock()
	stale := c.measured.IsZero() || c.Local().Sub(c.measured) >= c.RefreshEvery || c.Local().Before(c.measured)
	c.mu.Unlock()
	if stale {
		c.measure(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Local().Add(c.offset)
}

// Offset is the last measured server time minus local time.
func (c *ServerClock) Offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset
}

func (c *ServerClock) measure(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	sent := c.Local()
	s, err := c.js.Stream(ctx, stream.Deliveries)
	got := c.Local()
	if err != nil {
		return
	}
	server := s.CachedInfo().TimeStamp
	if server.IsZero() {
		return
	}
	mid := sent.Add(got.Sub(sent) / 2)
	c.mu.Lock()
	c.offset, c.measured = server.Sub(mid), got
	c.mu.Unlock()
}
