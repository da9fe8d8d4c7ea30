package freeport

import (
	"net"
	"strconv"
	"testing"
)

// A picked port is below the ephemeral range and can be bound.
func TestPickIsBindableAndBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if p < 10000 || p >= ephemeralLow() {
			t.Fatalf("port %d outside [10000, %d)", p, ephemeralLow())
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("bind picked port %d: %v", p, err)
		}
		_ = l.Close()
	}
}
