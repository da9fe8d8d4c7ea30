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
	// tests, an on-premises receiver). An address inside any prefix is
	// allowed whatever its class.
	Allow []netip.Prefix
	// HTTPSOnly refuses http:// URLs.
	HTTPSOnly bool
}

// Check returns a *BlockedError (errors.Is ErrBlocked) when addr is in a
// blocked range and not inside Allow, nil otherwise.
func (p Policy) Check(addr netip.Addr) error {
	addr = addr.WithZone("")
	if p.allowed(addr) {
		return nil
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

// ParseAllowList parses HOOKLINE_ALLOW_PRIVATE_CIDRS: comma-separated CIDRs
// or single addresses ("127.0.0.0/8, ::1, 10.1.2.3"). Empty entries are
// ignored; an empty string allows nothing. The error names the bad entry.
func ParseAllowList(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			pfx, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("allow-list entry %q is not a CIDR", f)
			}
			out = append(out, pfx.Masked())
			continue
		}
		addr, err := netip.ParseAddr(f)
		if err != nil || addr.Zone() != "" {
			return nil, fmt.Errorf("allow-list entry %q is not an IP address or CIDR", f)
		}
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}

// Config is embedded in the configuration of a binary that judges
// destinations (the producer validates subscription URLs with it).
type Config struct {
	// AllowPrivateCIDRs opens ranges that are blocked by default:
	// comma-separated CIDRs or addresses (development, tests, an
	// on-premises receiver). Empty in production.
	AllowPrivateCIDRs string `env:"HOOKLINE_ALLOW_PRIVATE_CIDRS"`
	// HTTPSOnly refuses http:// subscription URLs.
	HTTPSOnly bool `env:"HOOKLINE_HTTPS_ONLY" envDefault:"false"`
}

// Policy is the policy the configuration describes. The error names the
// variable and the bad entry.
func (c Config) Policy() (Policy, error) {
	allow, err := ParseAllowList(c.AllowPrivateCIDRs)
	if err != nil {
		return Policy{}, fmt.Errorf("HOOKLINE_ALLOW_PRIVATE_CIDRS: %w", err)
	}
	return Policy{Allow: allow, HTTPSOnly: c.HTTPSOnly}, nil
}

// Validate names the variable at fault.
func (c Config) Validate() error {
	_, err := c.Policy()
	return err
}
