package pool_test

import (
	"testing"

	"github.com/hookline/hookline/services/deliverer/internal/pool"
)

// A pull's byte bound holds two of the largest messages the server takes
// (a pull smaller than the next message is refused, and the message behind
// it would never be handled), and none is set while that size is not
// known.
func TestSplitBytes(t *testing.T) {
	t.Parallel()
	const dispatchDefault = 64 << 20
	for _, c := range []struct {
		buffer, maxPayload int64
		pull               int
		queue              int64
	}{
		{dispatchDefault, 1 << 20, 8 << 20, 48 << 20}, // dispatch's defaults
		{1 << 20, 1 << 20, 2 << 20, 1 << 20},          // the least buffer: two messages a pull, the queue at its floor
		{dispatchDefault, 64 << 20, 128 << 20, 1 << 20},
		{dispatchDefault, 0, 0, dispatchDefault}, // not connected: no bound
	} {
		pull, queue := pool.SplitBytes(c.buffer, c.maxPayload)
		if pull != c.pull || queue != c.queue {
			t.Errorf("SplitBytes(%d, %d) = %d, %d; want %d, %d", c.buffer, c.maxPayload, pull, queue, c.pull, c.queue)
		}
	}
}
