package deliver

import (
	"net"
	"net/url"
	"strings"
)

// Destination is the host and port an endpoint URL reaches ("" when it
// cannot be read: the attempt then fails on its own), one spelling for
// each: lower case, without a trailing dot, an IP address in its
// canonical form, the scheme's port when none is given. Never userinfo,
// path or query: it is a Redis key and a log field. Endpoint health keys
// a destination's cap and circuit by it, and the lines that wait for a
// destination's slot are woken by it.
func Destination(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if host == "" {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	port := u.Port()
	if port == "" {
		port = "80"
		if strings.EqualFold(u.Scheme, "https") {
			port = "443"
		}
	}
	return net.JoinHostPort(host, port)
}
