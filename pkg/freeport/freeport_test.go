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

// A process never gets the same port twice: a harness picks every port of
// a cluster before any node binds one, and two nodes given one port fail
// (a three-node cluster's route port was picked twice once, and the node
// that bound it second exited). 2,000 random picks of some 22,000 ports
// would repeat one almost surely.
func TestPickNeverRepeatsAPort(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p, err := Pick()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d picked twice in %d picks", p, len(seen)+1)
		}
		seen[p] = true
	}
}
