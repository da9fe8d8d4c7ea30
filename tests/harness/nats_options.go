package harness

import "testing"

// StartNATSWith starts one nats-server like StartNATS, with the given
// options: the benchmarks run it both with sync_interval: always and with
// the server's default, to report both.
func StartNATSWith(tb testing.TB, o NATSOptions) *NATS {
	tb.Helper()
	s := newNATS(tb, Build(tb), "nats", o, 0, nil)
	s.Start()
	return s
}
