// Package ssrf keeps webhook deliveries away from the operator's own
// network. Subscription URLs are typed in by strangers; a URL that reaches
// loopback, a private range or a cloud metadata service would let them make
// Hookline call its neighbours (server-side request forgery).
//
// Two checks, both needed:
//
//   - Policy.ValidateURL when a subscription is created or its URL changed:
//     scheme, length, userinfo, and literal IP addresses in a blocked range
//     (every spelling: 2130706433, 0x7f.1, [::ffff:127.0.0.1]) → a clear 422.
//   - Policy.Control on the dialer of the HTTP client that delivers: it sees
//     the address actually being connected to, after DNS, on every
//     connection, so a hostname that resolves (or re-resolves, DNS
//     rebinding) to a private address is refused before a packet is sent.
//
// The client must also not follow redirects (CheckRedirect returning
// http.ErrUseLastResponse) and not use a proxy from the environment: a proxy
// would be the address dialled and the destination would go unchecked.
// NewTransport builds a transport with both settings done right.
package ssrf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ErrBlocked is returned, wrapped in a *BlockedError, for a destination in a
// blocked address range. Test with errors.Is(err, ssrf.ErrBlocked).
var ErrBlocked = errors.New("destination address is not allowed")

// BlockedError says which class of address was refused. Its message names
// the class only, never the address: a subscriber who can read attempt
// records must not learn what the operator's internal names resolve to.
type BlockedError struct {
	// Class is a short name of the range: "loopback", "private", …
	Class string
	// Addr is the refused address, for the operator's own logs.
	Addr netip.Addr
}

func (e *BlockedError) Error() string {
	return "destination blocked: " + e.Class + " address"
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

// Policy is what the deliverer may connect to. The zero value blocks every
// special-purpose range and allows http and https.
type Policy struct {
	// Allow opens ranges that would otherwise be blocked (development,
	// tests, an on-premises receiver), on every port. An address inside
	// any prefix is allowed whatever its class.
	Allow []netip.Prefix
	// AllowPorts opens ranges on one port each ("10.0.0.5:8443",
	// "10.0.0.0/24:443"): the rest of the ports of those addresses stay
	// blocked, so opening a receiver does not open its neighbours'
	// services on the same host.
	AllowPorts []Scoped
	// Deny refuses destinations whatever their class or the allow-lists
	// say: the operator's own services inside an allowed range (a metrics
	// port, a Service address that routes to the deliverers). Port 0
	// means every port.
	Deny []Scoped
	// HTTPSOnly refuses http:// URLs.
	HTTPSOnly bool
}

// Scoped is a prefix on one port (0: every port).
type Scoped struct {
	Prefix netip.Prefix
	Port   uint16
}

// Contains reports whether ap is inside the prefix and on the port.
func (s Scoped) Contains(ap netip.AddrPort) bool {
	if s.Port != 0 && s.Port != ap.Port() {
		return false
	}
	a := ap.Addr().WithZone("")
	return s.Prefix.Contains(a) || s.Prefix.Contains(a.Unmap())
}

func (s Scoped) String() string {
	if s.Port == 0 {
		return s.Prefix.String()
	}
	if s.Prefix.Addr().Is6() {
		return "[" + s.Prefix.String() + "]:" + strconv.Itoa(int(s.Port))
	}
	return s.Prefix.String() + ":" + strconv.Itoa(int(s.Port))
}

// Check returns a *BlockedError (errors.Is ErrBlocked) when addr is in a
// blocked range and not inside Allow, nil otherwise. It knows no port:
// AllowPorts entries do not open addr and port-scoped Deny entries do not
// close it (CheckAddrPort judges a connection).
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	for _, d := range p.Deny {
		if d.Port == 0 && d.Contains(netip.AddrPortFrom(addr, 0)) {
			return &BlockedError{Class: "denied", Addr: addr}
		}
	}
	if p.allowed(addr) {
		return nil
	}
	if class := Classify(addr); class != "" {
		return &BlockedError{Class: class, Addr: addr}
	}
	return nil
}

// CheckAddrPort judges a connection to ap: Deny first, then the
// allow-lists (Allow on every port, AllowPorts on their port), then the
// address's class.
func (p Policy) CheckAddrPort(ap netip.AddrPort) error {
	addr := ap.Addr().WithZone("")
	ap = netip.AddrPortFrom(addr, ap.Port())
	for _, d := range p.Deny {
		if d.Contains(ap) {
			return &BlockedError{Class: "denied", Addr: addr}
		}
	}
	if p.allowed(addr) {
		return nil
	}
	for _, a := range p.AllowPorts {
		if a.Contains(ap) {
			return nil
		}
	}
	if class := Classify(addr); class != "" {
		return &BlockedError{Class: class, Addr: addr}
	}
	return nil
}

func (p Policy) allowed(addr netip.Addr) bool {
	for _, a := range []netip.Addr{addr, addr.Unmap()} {
		for _, pfx := range p.Allow {
			if pfx.Contains(a) {
				return true
			}
		}
	}
	return false
}

// ParseAllowList parses an allow-list of every-port entries:
// comma-separated CIDRs or single addresses ("127.0.0.0/8, ::1,
// 10.1.2.3"). Empty entries are ignored; an empty string allows nothing.
// The error names the bad entry; an entry with a port is refused (see
// ParseScoped).
func ParseAllowList(s string) ([]netip.Prefix, error) {
	every, scoped, err := ParseScoped(s)
	if err != nil {
		return nil, err
	}
	if len(scoped) > 0 {
		return nil, fmt.Errorf("allow-list entry %q has a port; this list takes addresses and CIDRs only", scoped[0])
	}
	return every, nil
}

// ParseScoped parses HOOKLINE_ALLOW_PRIVATE_CIDRS and
// HOOKLINE_DENY_DESTINATIONS: comma-separated entries, each an address or
// CIDR, optionally with a port — "10.1.2.3", "10.0.0.0/8", "::1",
// "fd00::/8", "10.0.0.5:8443", "10.0.0.0/24:443", "[::1]:8443",
// "[fd00::/64]:443". Entries without a port come back in every, the others
// in scoped. The error names the bad entry.
func ParseScoped(s string) (every []netip.Prefix, scoped []Scoped, err error) {
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		e, err := parseEntry(f)
		if err != nil {
			return nil, nil, err
		}
		if e.Port == 0 {
			every = append(every, e.Prefix)
		} else {
			scoped = append(scoped, e)
		}
	}
	return every, scoped, nil
}

func parseEntry(f string) (Scoped, error) {
	bad := func(what string) (Scoped, error) {
		return Scoped{}, fmt.Errorf("entry %q is not %s", f, what)
	}
	host, port := f, ""
	switch {
	case strings.HasPrefix(f, "["):
		end := strings.Index(f, "]")
		if end < 0 {
			return bad("an address or CIDR: [ without ]")
		}
		host = f[1:end]
		rest := f[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return bad("[address or CIDR]:port")
			}
			port = rest[1:]
			if port == "" {
				return bad("[address or CIDR]:port: the port is empty")
			}
		}
	case strings.Contains(f, "/"):
		slash := strings.LastIndex(f, "/")
		if bits, p, ok := strings.Cut(f[slash+1:], ":"); ok {
			host, port = f[:slash+1]+bits, p
			if port == "" {
				return bad("CIDR:port: the port is empty")
			}
		}
	case strings.Count(f, ":") == 1: // IPv4:port; IPv6 has two colons or more
		host, port, _ = strings.Cut(f, ":")
		if port == "" {
			return bad("address:port: the port is empty")
		}
	}
	var e Scoped
	if strings.Contains(host, "/") {
		pfx, err := netip.ParsePrefix(host)
		if err != nil {
			return bad("a CIDR")
		}
		e.Prefix = pfx.Masked()
	} else {
		addr, err := netip.ParseAddr(host)
		if err != nil || addr.Zone() != "" {
			return bad("an IP address or CIDR")
		}
		e.Prefix = netip.PrefixFrom(addr, addr.BitLen())
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return bad("scoped to a port from 1 to 65535")
		}
		e.Port = uint16(n)
	}
	return e, nil
}

// Config is embedded in the configuration of a binary that judges
// destinations (the producer validates subscription URLs with it).
type Config struct {
	// AllowPrivateCIDRs opens ranges that are blocked by default:
	// comma-separated CIDRs or addresses (development, tests, an
	// on-premises receiver). Empty in production.
	// An entry may name a port ("10.0.0.5:8443", "10.0.0.0/24:443"):
	// then only that port is opened.
	AllowPrivateCIDRs string `env:"HOOKLINE_ALLOW_PRIVATE_CIDRS"`
	// DenyDestinations refuses destinations even inside allowed ranges
	// (same syntax; no port: every port), e.g. the Service address and
	// port of the deliverers' own metrics. The deliverer refuses its own
	// listen address (HOOKLINE_HTTP_ADDR) without being told.
	DenyDestinations string `env:"HOOKLINE_DENY_DESTINATIONS"`
	// HTTPSOnly refuses http:// subscription URLs.
	HTTPSOnly bool `env:"HOOKLINE_HTTPS_ONLY" envDefault:"false"`
}

// Policy is the policy the configuration describes. The error names the
// variable and the bad entry.
func (c Config) Policy() (Policy, error) {
	allow, ports, err := ParseScoped(c.AllowPrivateCIDRs)
	if err != nil {
		return Policy{}, fmt.Errorf("HOOKLINE_ALLOW_PRIVATE_CIDRS: %w", err)
	}
	denyAny, deny, err := ParseScoped(c.DenyDestinations)
	if err != nil {
		return Policy{}, fmt.Errorf("HOOKLINE_DENY_DESTINATIONS: %w", err)
	}
	for _, pfx := range denyAny {
		deny = append(deny, Scoped{Prefix: pfx})
	}
	return Policy{Allow: allow, AllowPorts: ports, Deny: deny, HTTPSOnly: c.HTTPSOnly}, nil
}

// Validate names the variable at fault.
func (c Config) Validate() error {
	_, err := c.Policy()
	return err
}
