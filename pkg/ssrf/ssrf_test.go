package ssrf_test

import (
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/ssrf"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr, class string
	}{
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"::ffff:127.0.0.1", "loopback"},
		{"::127.0.0.1", "ipv4-compatible ipv6"},
		{"0.0.0.0", "unspecified"},
		{"0.1.2.3", "unspecified"},
		{"::", "unspecified"},
		{"10.0.0.1", "private"},
		{"172.16.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.0.1", "private"},
		{"100.64.0.1", "carrier-grade NAT"},
		{"100.127.255.255", "carrier-grade NAT"},
		{"169.254.169.254", "cloud metadata"},
		{"169.254.170.2", "cloud metadata"},
		{"100.100.100.200", "cloud metadata"},
		{"192.0.0.192", "cloud metadata"},
		{"fd00:ec2::254", "cloud metadata"},
		{"169.254.1.1", "link-local"},
		{"224.0.0.1", "multicast"},
		{"239.255.255.250", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"240.0.0.1", "reserved"},
		{"192.0.2.1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"fd00::1", "unique local"},
		{"fc00::1", "unique local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"ff02::1", "multicast"},
		{"fec0::1", "site-local"},
		{"64:ff9b::7f00:1", "loopback"},         // NAT64 of 127.0.0.1
		{"64:ff9b::a00:1", "private"},           // NAT64 of 10.0.0.1
		{"2002:7f00:1::", "loopback"},           // 6to4 of 127.0.0.1
		{"2002:a9fe:a9fe::1", "cloud metadata"}, // 6to4 of 169.254.169.254
		{"2001:db8::1", "documentation"},
		{"2001::1", "teredo"},
		{"100::1", "discard-only"},
		{"::ffff:0:a00:1", "ipv4-translated ipv6"},
		{"4000::1", "reserved"},
		// Public addresses.
		{"93.184.215.14", ""},
		{"1.1.1.1", ""},
		{"172.32.0.1", ""},
		{"100.128.0.1", ""},
		{"::ffff:8.8.8.8", ""},
		{"2606:4700:4700::1111", ""},
		{"64:ff9b::808:808", ""}, // NAT64 of 8.8.8.8
		{"2002:808:808::1", ""},  // 6to4 of 8.8.8.8
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			t.Parallel()
			if got := ssrf.Classify(netip.MustParseAddr(tt.addr)); got != tt.class {
				t.Fatalf("Classify(%s) = %q, want %q", tt.addr, got, tt.class)
			}
		})
	}
	if got := ssrf.Classify(netip.Addr{}); got == "" {
		t.Fatal("the zero Addr is allowed")
	}
}

func TestCheckAllowList(t *testing.T) {
	t.Parallel()
	allow, err := ssrf.ParseAllowList(" 127.0.0.0/8, fd00::/8 ,10.1.2.3,, ::1 ")
	if err != nil {
		t.Fatal(err)
	}
	if len(allow) != 4 {
		t.Fatalf("ParseAllowList: %v, want 4 prefixes", allow)
	}
	p := ssrf.Policy{Allow: allow}
	tests := []struct {
		addr    string
		blocked bool
	}{
		{"127.0.0.1", false},
		{"::ffff:127.0.0.1", false},
		{"fd00::1", false},
		{"10.1.2.3", false},
		{"::1", false},
		{"10.1.2.4", true},
		{"169.254.169.254", true},
		{"fe80::1", true},
	}
	for _, tt := range tests {
		err := p.Check(netip.MustParseAddr(tt.addr))
		if tt.blocked != errors.Is(err, ssrf.ErrBlocked) {
			t.Errorf("Check(%s) = %v, want blocked %v", tt.addr, err, tt.blocked)
		}
	}
}

func TestParseAllowListErrors(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"127.0.0.0/33", "localhost", "10.0.0.0/8,nope", "fe80::1%eth0"} {
		if _, err := ssrf.ParseAllowList(s); err == nil {
			t.Errorf("ParseAllowList(%q) accepted", s)
		}
	}
	if got, err := ssrf.ParseAllowList(""); err != nil || len(got) != 0 {
		t.Errorf("ParseAllowList(\"\") = %v, %v; want nothing", got, err)
	}
	if got, _ := ssrf.ParseAllowList("10.1.2.3/8"); got[0].String() != "10.0.0.0/8" {
		t.Errorf("prefix not masked: %v", got)
	}
}

func TestBlockedErrorDoesNotShowTheAddress(t *testing.T) {
	t.Parallel()
	err := ssrf.Policy{}.Check(netip.MustParseAddr("10.11.12.13"))
	var be *ssrf.BlockedError
	if !errors.As(err, &be) || be.Class != "private" || be.Addr.String() != "10.11.12.13" {
		t.Fatalf("Check = %#v", err)
	}
	if strings.Contains(err.Error(), "10.11") || !strings.Contains(err.Error(), "private") {
		t.Fatalf("message %q: want the class, not the address", err)
	}
}

func TestValidateURL(t *testing.T) {
	t.Parallel()
	long := "https://example.com/" + strings.Repeat("a", ssrf.MaxURLLength)
	tests := []struct {
		name    string
		policy  ssrf.Policy
		url     string
		reason  string // a part of the error; "" means valid
		blocked bool
	}{
		{name: "https", url: "https://hooks.example.com/in?x=1"},
		{name: "http", url: "http://hooks.example.com:8080/in"},
		{name: "idn", url: "https://bücher.example/in"},
		{name: "full-width loopback", url: "http://１２７.０.０.１/", reason: "loopback", blocked: true},
		{name: "ideographic full stops", url: "http://127。0。0。1/", reason: "loopback", blocked: true},
		{name: "full-width metadata", url: "http://１６９.２５４.１６９.２５４/latest", reason: "address", blocked: true},
		{name: "public ip", url: "https://93.184.215.14/"},
		{name: "public ipv6", url: "https://[2606:4700:4700::1111]/"},
		{name: "trailing dot", url: "https://example.com./"},
		{name: "http under https-only", policy: ssrf.Policy{HTTPSOnly: true}, url: "http://example.com/", reason: "must use https"},
		{name: "ftp", url: "ftp://example.com/", reason: "http or https"},
		{name: "javascript", url: "javascript:alert(1)", reason: "http or https"},
		{name: "no scheme", url: "example.com/hook", reason: "no scheme"},
		{name: "opaque", url: "http:example.com", reason: "of the form"},
		{name: "no host", url: "https:///path", reason: "no host"},
		{name: "userinfo", url: "https://user:pw@example.com/", reason: "username or password"},
		{name: "user only", url: "https://user@example.com/", reason: "username or password"},
		{name: "too long", url: long, reason: "longer than 2048"},
		{name: "empty", url: "", reason: "empty"},
		{name: "whitespace", url: " https://example.com/", reason: "whitespace"},
		{name: "port 0", url: "https://example.com:0/", reason: "port"},
		{name: "port too big", url: "https://example.com:70000/", reason: "port"},
		{name: "empty port", url: "https://example.com:/", reason: "empty port"},
		{name: "control char", url: "https://example.com/\x00", reason: "cannot be parsed"},
		{name: "bad host char", url: "https://exa$mple.com/", reason: "not allowed"},
		{name: "empty label", url: "https://a..b/", reason: "empty label"},
		{name: "bad ipv6", url: "https://[::zz]/", reason: "cannot be parsed"},
		{name: "bad number host", url: "https://1.2.3.4.5/", reason: "not a valid one"},
		{name: "octet too big", url: "https://256.1.1.1/", reason: "not a valid one"},
		{name: "bad octal", url: "https://09.1.1.1/", reason: "not a valid one"},
		{name: "hex overflow", url: "https://0x100000000/", reason: "not a valid one"},
		{name: "loopback", url: "http://127.0.0.1/", reason: "loopback address", blocked: true},
		{name: "decimal loopback", url: "http://2130706433/", reason: "loopback", blocked: true},
		{name: "hex loopback", url: "http://0x7F000001/", reason: "loopback", blocked: true},
		{name: "short loopback", url: "http://127.1/", reason: "loopback", blocked: true},
		{name: "mixed loopback", url: "http://0x7f.0.0.0x1/", reason: "loopback", blocked: true},
		{name: "dotted trailing", url: "http://127.0.0.1./", reason: "loopback", blocked: true},
		{name: "mapped loopback", url: "http://[::ffff:7f00:1]/", reason: "loopback", blocked: true},
		{name: "zoned link-local", url: "http://[fe80::1%25eth0]/", reason: "link-local", blocked: true},
		{name: "metadata", url: "http://169.254.169.254/latest/", reason: "cloud metadata", blocked: true},
		{name: "LOCALHOST", url: "http://LOCALHOST:8080/", reason: "loopback", blocked: true},
		{name: "sub.localhost", url: "http://app.localhost/", reason: "loopback", blocked: true},
		{name: "private allowed", policy: ssrf.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, url: "http://10.0.0.5/"},
		{name: "localhost allowed", policy: ssrf.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, url: "http://localhost:9000/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.policy.ValidateURL(tt.url)
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("ValidateURL(%q) = %v, want nil", tt.url, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.reason) {
				t.Fatalf("ValidateURL(%q) = %v, want a reason with %q", tt.url, err, tt.reason)
			}
			if !errors.Is(err, ssrf.ErrInvalidURL) || errors.Is(err, ssrf.ErrBlocked) != tt.blocked {
				t.Fatalf("ValidateURL(%q) = %v: Is(ErrInvalidURL)=%v Is(ErrBlocked)=%v, want blocked %v",
					tt.url, err, errors.Is(err, ssrf.ErrInvalidURL), errors.Is(err, ssrf.ErrBlocked), tt.blocked)
			}
		})
	}
	// An error never repeats the URL (it may carry credentials).
	err := ssrf.Policy{}.ValidateURL("https://user:hunter2@exa mple.com:99999/")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %v repeats the credentials", err)
	}
}

// FuzzValidateURL: never panics; whatever it accepts is an http(s) URL with
// a host, no userinfo, within the length, whose literal address (if any)
// is not blocked. The seed corpus is in testdata/fuzz/FuzzValidateURL.
func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hook", "http://127.0.0.1/", "http://2130706433/", "http://[::ffff:127.0.0.1]/",
		"http://0x7f.1/", "https://user@host/", "http://[fe80::1%25lo]/", "http:///", "https://example.com:0/",
	} {
		f.Add(s)
	}
	p := ssrf.Policy{}
	f.Fuzz(func(t *testing.T, raw string) {
		err := p.ValidateURL(raw)
		if err != nil {
			if !errors.Is(err, ssrf.ErrInvalidURL) {
				t.Fatalf("error %v is not ErrInvalidURL", err)
			}
			return
		}
		if len(raw) > ssrf.MaxURLLength {
			t.Fatalf("accepted a %d-byte URL", len(raw))
		}
		if !strings.HasPrefix(raw, "http://") && !strings.HasPrefix(raw, "https://") &&
			!strings.HasPrefix(strings.ToLower(raw), "http") {
			t.Fatalf("accepted a non-http URL %q", raw)
		}
		u, perr := urlParse(raw)
		if perr != nil || u.Hostname() == "" || u.User != nil {
			t.Fatalf("accepted %q: parse %v host %q user %v", raw, perr, u.Hostname(), u.User)
		}
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && ssrf.Classify(a) != "" {
			t.Fatalf("accepted a literal %s address: %q", ssrf.Classify(a), raw)
		}
	})
}

var urlParse = url.Parse

func TestConfig(t *testing.T) {
	t.Parallel()
	p, err := ssrf.Config{AllowPrivateCIDRs: "127.0.0.0/8,::1/128", HTTPSOnly: true}.Policy()
	if err != nil || len(p.Allow) != 2 || !p.HTTPSOnly {
		t.Fatalf("Policy() = %+v, %v", p, err)
	}
	err = ssrf.Config{AllowPrivateCIDRs: "127.0.0.0/8,nope"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "HOOKLINE_ALLOW_PRIVATE_CIDRS") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("Validate = %v, want the variable and the entry named", err)
	}
	if p, err := (ssrf.Config{}).Policy(); err != nil || len(p.Allow) != 0 || p.HTTPSOnly {
		t.Fatalf("zero Config: %+v, %v; want the strict default", p, err)
	}
}
