package ssrf

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
)

// Self is the set of addresses this process listens on (the deliverer's
// admin server: /metrics, /readyz, /debug/pprof). Its Guard refuses them
// whatever the policy allows: opening a private range for a receiver must
// not open the deliverer's own endpoints to anyone who can create a
// subscription. It is safe for concurrent use; Add after listening, when
// the port is known.
type Self struct {
	mu  sync.RWMutex
	eps []Scoped
}

// Add records a listener's address ("127.0.0.1:8081", "[::]:8081",
// ":8081"). A wildcard host stands for every address of the machine: the
// port is refused on loopback, on the unspecified addresses and on every
// address of the machine's interfaces. Any listener also refuses
// 0.0.0.0 and :: on its port (connecting to them reaches the local host).
func (s *Self) Add(listen string) error {
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", listen, err)
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort("0.0.0.0", portStr))
	if err != nil || ap.Port() == 0 {
		return fmt.Errorf("listen address %q: no port", listen)
	}
	port := ap.Port()
	one := func(a netip.Addr) Scoped {
		a = a.WithZone("").Unmap()
		return Scoped{netip.PrefixFrom(a, a.BitLen()), port}
	}
	eps := []Scoped{one(netip.IPv4Unspecified()), one(netip.IPv6Unspecified())}
	addr, perr := netip.ParseAddr(host)
	switch {
	case host == "" || (perr == nil && addr.IsUnspecified()):
		eps = append(eps, Scoped{netip.MustParsePrefix("127.0.0.0/8"), port}, one(netip.IPv6Loopback()))
		ifaces, err := net.InterfaceAddrs()
		if err != nil {
			return fmt.Errorf("listen address %q: list the interface addresses: %w", listen, err)
		}
		for _, ia := range ifaces {
			if pfx, err := netip.ParsePrefix(ia.String()); err == nil {
				eps = append(eps, one(pfx.Addr()))
			}
		}
	case perr == nil:
		eps = append(eps, one(addr))
		if addr.IsLoopback() && addr.Is4() {
			eps = append(eps, Scoped{netip.MustParsePrefix("127.0.0.0/8"), port})
		}
	default:
		// A name ("localhost:8081"): what it resolves to now.
		ips, err := net.LookupIP(host)
		if err != nil {
			return fmt.Errorf("listen address %q: %w", listen, err)
		}
		for _, ip := range ips {
			if a, ok := netip.AddrFromSlice(ip); ok {
				eps = append(eps, one(a))
			}
		}
	}
	s.mu.Lock()
	s.eps = append(s.eps, eps...)
	s.mu.Unlock()
	return nil
}

// Contains reports whether a connection to ap would reach a listener of
// this process.
func (s *Self) Contains(ap netip.AddrPort) bool {
	ap = netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port())
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, e := range s.eps {
		if e.Contains(ap) {
			return true
		}
	}
	return false
}

// Guard wraps a dial control (Policy.Control, or one a test injects): a
// connection to this process's own listeners is refused with a
// *BlockedError of class "the deliverer's own" before next is asked.
func (s *Self) Guard(next func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if ap, err := netip.ParseAddrPort(address); err == nil && s.Contains(ap) {
			return &BlockedError{Class: "the deliverer's own", Addr: ap.Addr()}
		}
		return next(network, address, c)
	}
}
