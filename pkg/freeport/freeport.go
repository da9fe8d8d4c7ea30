// Package freeport picks a loopback TCP port that a process started next
// (a redis-server, a nats-server node, a devstack service) can bind.
//
// A port from net.Listen("127.0.0.1:0") comes from the kernel's ephemeral
// range, which every outgoing connection on the machine draws from too:
// between closing the probe listener and the child binding the port, a
// client socket of another test may take it, and the child fails to bind.
// Pick draws from below the ephemeral range instead, where only ports
// chosen on purpose live, so the window is shared only with other Picks.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Loopback returns "127.0.0.1:<port>" for a port nobody listens on now.
func Loopback() (string, error) {
	p, err := Pick()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}

// picked is every port Pick returned in this process: none is returned
// twice, since a caller may pick several (a cluster's nodes) before any is
// bound.
var (
	pickedMu sync.Mutex
	picked   = map[int]bool{}
)

// Pick returns a loopback port nobody listens on now and that this process
// was not given before, below the kernel's ephemeral range when it can
// (else one the kernel hands out).
func Pick() (int, error) {
	pickedMu.Lock()
	defer pickedMu.Unlock()
	low, high := 10000, ephemeralLow()
	if high-low >= 1000 {
		for range 64 {
			p := low + rand.IntN(high-low)
			if picked[p] {
				continue
			}
			if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
				_ = l.Close()
				picked[p] = true
				return p, nil
			}
		}
	}
	for range 64 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("find a free port: %w", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		if !picked[p] {
			picked[p] = true
			return p, nil
		}
	}
	return 0, fmt.Errorf("find a free port: every one tried was picked before")
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux),
// or 32768 (its default) when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return 32768
	}
	return n
}
