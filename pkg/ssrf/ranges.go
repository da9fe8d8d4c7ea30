package ssrf

import "net/netip"

// Address classes a webhook may not reach. Each row is a range and the
// class named in the error; the first match wins, so the more specific
// rows (metadata endpoints) come first.
//
// IPv6 forms that embed an IPv4 address (mapped ::ffff:a.b.c.d, NAT64
// 64:ff9b::a.b.c.d, 6to4 2002:AABB:CCDD::) are judged by the embedded
// address. Outside 2000::/3 nothing in IPv6 is a public unicast address.
var (
	v4Ranges = []classRange{
		{"cloud metadata", "169.254.169.254/32"}, // AWS, GCP, Azure, OpenStack
		{"cloud metadata", "169.254.170.2/32"},   // AWS ECS task metadata
		{"cloud metadata", "100.100.100.200/32"}, // Alibaba Cloud
		{"cloud metadata", "192.0.0.192/32"},     // Oracle Cloud
		{"unspecified", "0.0.0.0/8"},
		{"loopback", "127.0.0.0/8"},
		{"private", "10.0.0.0/8"},
		{"private", "172.16.0.0/12"},
		{"private", "192.168.0.0/16"},
		{"carrier-grade NAT", "100.64.0.0/10"},
		{"link-local", "169.254.0.0/16"},
		{"reserved", "192.0.0.0/24"}, // IETF protocol assignments
		{"documentation", "192.0.2.0/24"},
		{"reserved", "192.88.99.0/24"}, // deprecated 6to4 relay anycast
		{"benchmarking", "198.18.0.0/15"},
		{"documentation", "198.51.100.0/24"},
		{"documentation", "203.0.113.0/24"},
		{"multicast", "224.0.0.0/4"},
		{"broadcast", "255.255.255.255/32"},
		{"reserved", "240.0.0.0/4"},
	}
	v6Ranges = []classRange{
		{"cloud metadata", "fd00:ec2::254/128"}, // AWS IMDS over IPv6
		{"unspecified", "::/128"},
		{"loopback", "::1/128"},
		{"ipv4-compatible ipv6", "::/96"}, // deprecated ::a.b.c.d
		{"ipv4-translated ipv6", "::ffff:0:0:0/96"},
		{"nat64 local-use", "64:ff9b:1::/48"},
		{"discard-only", "100::/64"},
		{"teredo", "2001::/32"},
		{"reserved", "2001::/23"}, // IETF protocol assignments
		{"documentation", "2001:db8::/32"},
		{"documentation", "3fff::/20"},
		{"unique local", "fc00::/7"},
		{"link-local", "fe80::/10"},
		{"site-local", "fec0::/10"},
		{"multicast", "ff00::/8"},
	}
	nat64  = netip.MustParsePrefix("64:ff9b::/96")
	sixTo4 = netip.MustParsePrefix("2002::/16")
	global = netip.MustParsePrefix("2000::/3")
)

type classRange struct {
	class  string
	prefix string
}

type parsedRange struct {
	class  string
	prefix netip.Prefix
}

var v4Table, v6Table = parse(v4Ranges), parse(v6Ranges)

func parse(rs []classRange) []parsedRange {
	out := make([]parsedRange, len(rs))
	for i, r := range rs {
		out[i] = parsedRange{r.class, netip.MustParsePrefix(r.prefix)}
	}
	return out
}

// Classify names the blocked class of addr ("loopback", "private",
// "cloud metadata", …) or returns "" for an address a webhook may reach.
// It ignores any allow-list: see Policy.Check.
func Classify(addr netip.Addr) string {
	addr = addr.WithZone("")
	if !addr.IsValid() {
		return "invalid"
	}
	if addr.Is4In6() {
		return Classify(addr.Unmap())
	}
	if addr.Is4() {
		return lookup(v4Table, addr)
	}
	// IPv6 carrying an IPv4 address: judge the IPv4 address.
	b := addr.As16()
	switch {
	case nat64.Contains(addr):
		return Classify(netip.AddrFrom4([4]byte(b[12:16])))
	case sixTo4.Contains(addr):
		return Classify(netip.AddrFrom4([4]byte(b[2:6])))
	}
	if class := lookup(v6Table, addr); class != "" {
		return class
	}
	if !global.Contains(addr) {
		return "reserved"
	}
	return ""
}

func lookup(table []parsedRange, addr netip.Addr) string {
	for _, r := range table {
		if r.prefix.Contains(addr) {
			return r.class
		}
	}
	return ""
}
