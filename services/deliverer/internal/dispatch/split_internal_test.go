package dispatch

import "testing"

// A pull's byte bound holds two of the largest messages the server takes
// (a pull smaller than the next message is refused, and the event behind
// it would never be dispatched), and none is set while that size is not
// known.
func TestSplitBytes(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		buffer, maxPayload int64
		pull               int
		queue              int64
	}{
		{DefaultBufferBytes, 1 << 20, 8 << 20, 48 << 20}, // the defaults
		{1 << 20, 1 << 20, 2 << 20, 1 << 20},             // the least buffer: two messages a pull, the queue at its floor
		{DefaultBufferBytes, 64 << 20, 128 << 20, 1 << 20},
		{DefaultBufferBytes, 0, 0, DefaultBufferBytes}, // not connected: no bound
	} {
		pull, queue := splitBytes(c.buffer, c.maxPayload)
		if pull != c.pull || queue != c.queue {
			t.Errorf("splitBytes(%d, %d) = %d, %d; want %d, %d", c.buffer, c.maxPayload, pull, queue, c.pull, c.queue)
		}
	}
}
