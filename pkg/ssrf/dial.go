package ssrf

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Control is for net.Dialer.Control: it runs after DNS, once per address the
// dialer tries, before the connect system call, so it judges the address
// actually being connected to. A hostname that resolves (or re-resolves,
// DNS rebinding) to a blocked address fails here with a *BlockedError
// (errors.Is ErrBlocked) and no packet leaves.
//
// Only TCP is allowed. The resolver's own connections (to the DNS server,
// often on loopback) do not pass through it: a net.Resolver dials with its
// own Dial, never with this dialer's Control.
func (p Policy) Control(network, address string, _ syscall.RawConn) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("network %q: %w", network, ErrBlocked)
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		// The dialer always passes a literal ip:port; anything else is
		// refused rather than guessed at.
		return &BlockedError{Class: "unparseable"}
	}
	return p.CheckAddrPort(ap)
}

// Dialer returns a copy of base (nil: a dialer with a 10 s connect timeout
// and 30 s keep-alive) whose Control enforces the policy. A Control already
// set on base runs first.
func (p Policy) Dialer(base *net.Dialer) *net.Dialer {
	var d net.Dialer
	if base != nil {
		d = *base
	} else {
		d = net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	}
	prev := d.Control
	d.Control = func(network, address string, c syscall.RawConn) error {
		if prev != nil {
			if err := prev(network, address, c); err != nil {
				return err
			}
		}
		return p.Control(network, address, c)
	}
	d.ControlContext = nil // Control is ignored when ControlContext is set
	return &d
}

// NewTransport returns an *http.Transport for deliveries: every connection
// checked by the policy (see Control), no proxy from the environment, and
// the usual timeouts. base may be nil. It does not stop redirects: that is
// the client's job —
//
//	client := &http.Client{
//		Transport:     ssrf.NewTransport(policy, nil),
//		Timeout:       15 * time.Second,
//		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
//	}
//
// (a followed redirect would still be checked at connect time, but a 3xx is
// the endpoint's answer and is recorded as such).
func NewTransport(p Policy, base *net.Dialer) *http.Transport {
	return &http.Transport{
		Proxy:                  nil, // a proxy would be the dialled address: the destination would go unchecked
		DialContext:            p.Dialer(base).DialContext,
		ForceAttemptHTTP2:      true,
		MaxIdleConns:           1000,
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    10 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}
