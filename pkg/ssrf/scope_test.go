package ssrf_test

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/hookline/hookline/pkg/ssrf"
)

func TestParseScoped(t *testing.T) {
	t.Parallel()
	every, scoped, err := ssrf.ParseScoped(" 10.0.0.0/8, 10.0.0.5:8443 ,10.1.0.0/24:443, [::1]:9000, [fd00::/64]:443, fd00::/8, ::1, 127.0.0.1 ")
	if err != nil {
		t.Fatal(err)
	}
	var gotEvery, gotScoped []string
	for _, p := range every {
		gotEvery = append(gotEvery, p.String())
	}
	for _, s := range scoped {
		gotScoped = append(gotScoped, s.String())
	}
	if strings.Join(gotEvery, " ") != "10.0.0.0/8 fd00::/8 ::1/128 127.0.0.1/32" {
		t.Errorf("every-port entries %v", gotEvery)
	}
	if strings.Join(gotScoped, " ") != "10.0.0.5/32:8443 10.1.0.0/24:443 [::1/128]:9000 [fd00::/64]:443" {
		t.Errorf("port-scoped entries %v", gotScoped)
	}
	for _, bad := range []string{"10.0.0.5:", "10.0.0.5:0", "10.0.0.5:65536", "10.0.0.5:http", "[::1]", "[::1]:", "[::1:80", "10.0.0.0/8:", "10.0.0.0/33:80", "host:80", "[::1]x"} {
		_, _, err := ssrf.ParseScoped(bad)
		if bad == "[::1]" {
			if err != nil {
				t.Errorf("ParseScoped(%q) = %v, want [::1] on every port", bad, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("ParseScoped(%q) = %v, want an error naming the entry", bad, err)
		}
	}
	if _, err := ssrf.ParseAllowList("10.0.0.5:8443"); err == nil {
		t.Error("ParseAllowList took a port-scoped entry")
	}
}

// A port-scoped entry opens its port only; Deny wins over every allow.
func TestPortScopedAllowAndDeny(t *testing.T) {
	t.Parallel()
	p, err := ssrf.Config{
		AllowPrivateCIDRs: "10.0.0.5:8443, 10.1.0.0/24:443, 192.168.0.0/16",
		DenyDestinations:  "192.168.1.10:9090, 192.168.2.0/24",
	}.Policy()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ap      string
		blocked bool
	}{
		{"10.0.0.5:8443", false},
		{"[::ffff:10.0.0.5]:8443", false},
		{"10.0.0.5:8444", true},
		{"10.0.0.5:22", true},
		{"10.0.0.6:8443", true},
		{"10.1.0.77:443", false},
		{"10.1.0.77:80", true},
		{"192.168.1.10:443", false},
		{"192.168.1.10:9090", true},
		{"192.168.2.3:443", true},
		{"8.8.8.8:9090", false},
	} {
		err := p.CheckAddrPort(netip.MustParseAddrPort(tt.ap))
		if tt.blocked != errors.Is(err, ssrf.ErrBlocked) {
			t.Errorf("CheckAddrPort(%s) = %v, want blocked %v", tt.ap, err, tt.blocked)
		}
		if err := p.Control("tcp", tt.ap, nil); tt.blocked != errors.Is(err, ssrf.ErrBlocked) {
			t.Errorf("Control(%s) = %v, want blocked %v", tt.ap, err, tt.blocked)
		}
	}
	for _, tt := range []struct {
		url     string
		blocked bool
	}{
		{"https://10.0.0.5:8443/hook", false},
		{"https://10.0.0.5/hook", true}, // 443
		{"https://10.1.0.9/hook", false},
		{"http://10.1.0.9/hook", true}, // 80
		{"https://192.168.2.3/", true},
	} {
		if err := p.ValidateURL(tt.url); tt.blocked != errors.Is(err, ssrf.ErrBlocked) {
			t.Errorf("ValidateURL(%s) = %v, want blocked %v", tt.url, err, tt.blocked)
		}
	}
	if _, err := (ssrf.Config{DenyDestinations: "nope"}).Policy(); err == nil || !strings.Contains(err.Error(), "HOOKLINE_DENY_DESTINATIONS") {
		t.Errorf("a bad deny entry: %v", err)
	}
}

// Self refuses the process's own listeners even where the policy allows
// the address, and lets the rest through to the policy.
func TestSelfGuard(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var self ssrf.Self
	if err := self.Add(ln.Addr().String()); err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(ln.Addr().String()).Port()
	guard := self.Guard(ssrf.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}.Control)
	for _, tt := range []struct {
		addr    string
		blocked bool
	}{
		{ln.Addr().String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), port).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("0.0.0.0"), port).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), port).String(), true},
		{netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port+1).String(), false},
		{netip.AddrPortFrom(netip.MustParseAddr("10.0.0.1"), port+1).String(), true}, // the policy's own refusal
	} {
		err := guard("tcp", tt.addr, (syscall.RawConn)(nil))
		if tt.blocked != errors.Is(err, ssrf.ErrBlocked) {
			t.Errorf("guard(%s) = %v, want blocked %v", tt.addr, err, tt.blocked)
		}
		if err != nil && strings.Contains(err.Error(), tt.addr) {
			t.Errorf("the error shows the address: %v", err)
		}
	}

	// A wildcard listener: its port on every address of the machine.
	var wild ssrf.Self
	if err := wild.Add(":8081"); err != nil {
		t.Fatal(err)
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ia := range addrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		if !wild.Contains(netip.AddrPortFrom(pfx.Addr(), 8081)) || wild.Contains(netip.AddrPortFrom(pfx.Addr(), 8082)) {
			t.Errorf("wildcard listener: %s:8081 not refused, or another port refused", pfx.Addr())
		}
	}
	if !wild.Contains(netip.MustParseAddrPort("127.0.0.9:8081")) || !wild.Contains(netip.MustParseAddrPort("[::1]:8081")) {
		t.Error("wildcard listener: loopback not refused")
	}
	if err := wild.Add("nope"); err == nil {
		t.Error("Add took an address without a port")
	}
}
