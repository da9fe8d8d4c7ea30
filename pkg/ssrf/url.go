package ssrf

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
)

// MaxURLLength is the longest subscription URL accepted.
const MaxURLLength = 2048

// ErrInvalidURL is returned, wrapped in a *URLError, by ValidateURL.
var ErrInvalidURL = errors.New("invalid webhook url")

// URLError says why ValidateURL refused a URL, in words fit for an API
// answer (a 422). It never repeats the URL, which may hold credentials.
// errors.Is(err, ErrInvalidURL) always holds; errors.Is(err, ErrBlocked)
// holds when the host is a literal address in a blocked range.
type URLError struct {
	Reason  string
	blocked *BlockedError
}

func (e *URLError) Error() string { return e.Reason }

// Is matches ErrInvalidURL, and ErrBlocked for a blocked address.
func (e *URLError) Is(target error) bool {
	return target == ErrInvalidURL || (e.blocked != nil && target == ErrBlocked)
}

// Unwrap returns the *BlockedError, if any.
func (e *URLError) Unwrap() error {
	if e.blocked == nil {
		return nil
	}
	return e.blocked
}

func invalid(reason string) error { return &URLError{Reason: reason} }

// ValidateURL checks a subscription URL when it is created or changed:
// http or https (https only with HTTPSOnly), at most MaxURLLength bytes, a
// host, no userinfo, a valid port, and — when the host is a literal IP
// address in any spelling a client might accept (127.0.0.1, 2130706433,
// 0x7f.0.0.1, 0177.1, [::ffff:127.0.0.1]) or "localhost" — an address the
// policy allows. Hostnames are not resolved here: DNS can change before the
// delivery, so Control checks every connection. It returns a *URLError
// (errors.Is ErrInvalidURL, and ErrBlocked for a blocked address).
func (p Policy) ValidateURL(raw string) error {
	if len(raw) > MaxURLLength {
		return invalid("url is longer than " + strconv.Itoa(MaxURLLength) + " characters")
	}
	if raw == "" {
		return invalid("url is empty")
	}
	if strings.TrimSpace(raw) != raw {
		return invalid("url has leading or trailing whitespace")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the inner error does not repeat the whole URL
		}
		return invalid("url cannot be parsed: " + err.Error())
	}
	switch u.Scheme {
	case "https":
	case "http":
		if p.HTTPSOnly {
			return invalid("url must use https")
		}
	case "":
		return invalid("url has no scheme: it must start with https://")
	default:
		return invalid("url must use http or https")
	}
	if u.Opaque != "" {
		return invalid("url must be of the form " + u.Scheme + "://host/path")
	}
	if u.User != nil {
		return invalid("url must not contain a username or password")
	}
	host := u.Hostname()
	if host == "" {
		return invalid("url has no host")
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return invalid("url port must be between 1 and 65535")
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return invalid("url has an empty port")
	}
	// Judge the host as a resolver and a WHATWG URL parser read it:
	// full-width digits and ideographic full stops are their ASCII
	// forms (http://１２７.０.０.１/ is 127.0.0.1).
	addr, isAddr, reason := literalAddr(foldWidth(host))
	if reason != "" {
		return invalid(reason)
	}
	if !isAddr {
		return nil
	}
	if err := p.CheckAddrPort(netip.AddrPortFrom(addr, urlPort(u))); err != nil {
		var be *BlockedError
		errors.As(err, &be)
		return &URLError{Reason: "url host is a " + be.Class + " address, which webhooks may not reach", blocked: be}
	}
	return nil
}

// urlPort is the port a URL connects to: its own, or its scheme's.
func urlPort(u *url.URL) uint16 {
	if n, err := strconv.Atoi(u.Port()); err == nil {
		return uint16(n)
	}
	if u.Scheme == "http" {
		return 80
	}
	return 443
}

// foldWidth maps the full-width forms of ASCII (U+FF01–U+FF5E) and the
// ideographic and half-width full stops to ASCII, as UTS #46 mapping does
// for host names.
func foldWidth(host string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 0xFF01 && r <= 0xFF5E:
			return r - 0xFEE0
		case r == 0x3002 || r == 0xFF61:
			return '.'
		}
		return r
	}, host)
}

// literalAddr returns the address a URL host denotes when it is one
// (isAddr), or a reason when it is malformed. "localhost" and *.localhost
// denote 127.0.0.1 (RFC 6761).
func literalAddr(host string) (addr netip.Addr, isAddr bool, reason string) {
	if strings.Contains(host, ":") { // url.Parse only lets ':' in through [brackets]
		a, err := netip.ParseAddr(host)
		if err != nil {
			return netip.Addr{}, false, "url host is not a valid IPv6 address"
		}
		return a.WithZone(""), true, ""
	}
	if a, ok, err := parseIPv4(host); err != "" {
		return netip.Addr{}, false, err
	} else if ok {
		return a, true, ""
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return netip.AddrFrom4([4]byte{127, 0, 0, 1}), true, ""
	}
	if reason := checkHostname(name); reason != "" {
		return netip.Addr{}, false, reason
	}
	return netip.Addr{}, false, ""
}

// checkHostname accepts DNS names, including internationalised ones:
// labels of letters, digits, '-' and '_', at most 63 bytes each, 253 in all.
func checkHostname(name string) string {
	if len(name) > 253 {
		return "url host name is longer than 253 characters"
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "url host name has an empty label"
		}
		if len(label) > 63 {
			return "url host name has a label longer than 63 characters"
		}
		for _, r := range label {
			if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_') {
				return "url host name contains a character that is not allowed"
			}
		}
	}
	return ""
}

// parseIPv4 parses a host the way URL parsers and inet_aton do (WHATWG URL
// "IPv4 parser"): one to four dot-separated parts, each decimal, octal
// (leading 0) or hex (0x); the last part fills the remaining bytes, so
// 2130706433, 127.1 and 0x7f.0.0.1 are all 127.0.0.1. ok is false for a
// host that does not end in a number (a DNS name); reason is set for one
// that does but is not a valid address.
func parseIPv4(host string) (addr netip.Addr, ok bool, reason string) {
	parts := strings.Split(host, ".")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	if !isNumber(parts[len(parts)-1]) {
		return netip.Addr{}, false, ""
	}
	const bad = "url host looks like an IPv4 address but is not a valid one"
	if len(parts) > 4 {
		return netip.Addr{}, false, bad
	}
	nums := make([]uint64, len(parts))
	for i, part := range parts {
		n, valid := parseIPv4Part(part)
		if !valid {
			return netip.Addr{}, false, bad
		}
		nums[i] = n
	}
	var v uint64
	for i, n := range nums[:len(nums)-1] {
		if n > 255 {
			return netip.Addr{}, false, bad
		}
		v |= n << (8 * (3 - i))
	}
	last := nums[len(nums)-1]
	if last >= 1<<(8*(5-len(nums))) {
		return netip.Addr{}, false, bad
	}
	v |= last
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true, ""
}

// isNumber reports whether a host label is numeric in the WHATWG sense:
// decimal digits, or 0x/0X followed by hex digits.
func isNumber(s string) bool {
	if s == "" {
		return false
	}
	if len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		return strings.Trim(s[2:], "0123456789abcdefABCDEF") == ""
	}
	return strings.Trim(s, "0123456789") == ""
}

func parseIPv4Part(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	base := 10
	switch {
	case len(s) >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'):
		base, s = 16, s[2:]
		if s == "" {
			return 0, true
		}
	case len(s) >= 2 && s[0] == '0':
		base, s = 8, s[1:]
	}
	n, err := strconv.ParseUint(s, base, 64)
	if err != nil || n > 0xffffffff {
		return 0, false
	}
	return n, true
}
