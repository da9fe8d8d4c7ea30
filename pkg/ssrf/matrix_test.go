package ssrf_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/ssrf"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// canary is an HTTP server on a loopback address that counts the
// connections it accepts: a blocked request must leave it at zero.
type canary struct {
	accepts atomic.Int64
	port    string
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func startCanary(t *testing.T, host string) *canary {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	c := &canary{}
	_, c.port, _ = net.SplitHostPort(l.Addr().String())
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("canary")) }),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(countingListener{l, &c.accepts})
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return c
}

// deliveryClient is what the deliverer builds: the policy on the dialer, no
// proxy, no redirects followed, and here a fake DNS.
func deliveryClient(p ssrf.Policy, r *net.Resolver, follow bool) *http.Client {
	tr := ssrf.NewTransport(p, &net.Dialer{Timeout: 2 * time.Second, Resolver: r})
	c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	if !follow {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		_ = resp.Body.Close()
	}
	c.CloseIdleConnections()
	return resp, err
}

// The SSRF matrix of the security issue: every destination is refused —
// by ValidateURL when the URL spells an address, and at connect time
// whatever DNS says — while loopback canaries see no connection at all.
func TestSSRFMatrix(t *testing.T) {
	c4 := startCanary(t, "127.0.0.1")
	c6 := startCanary(t, "::1")
	dns := startFakeDNS(t)
	dns.set("loopback.test", []string{"127.0.0.1"})
	dns.set("loopback6.test", []string{"::1"})
	dns.set("mapped.test", []string{"::ffff:127.0.0.1"})
	dns.set("private.test", []string{"10.20.30.40"})
	dns.set("metadata.test", []string{"169.254.169.254"})
	dns.set("ula.test", []string{"fd00::1"})
	dns.set("mixed.test", []string{"127.0.0.1", "::1"})
	policy := ssrf.Policy{}
	client := deliveryClient(policy, dns.resolver(), false)

	p4, p6 := c4.port, c6.port
	tests := []struct {
		name string
		url  string
		// literal: ValidateURL refuses it as a blocked address. A hostname
		// passes ValidateURL (DNS is checked at connect time).
		literal bool
		// dialBlocked: the HTTP client reaches the dialer, which refuses
		// with ErrBlocked. False only for spellings Go's client does not
		// read as an address (it looks them up in DNS, which fails).
		dialBlocked bool
	}{
		{name: "127.0.0.1", url: "http://127.0.0.1:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "[::1]", url: "http://[::1]:" + p6 + "/", literal: true, dialBlocked: true},
		{name: "[::ffff:127.0.0.1]", url: "http://[::ffff:127.0.0.1]:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "2130706433", url: "http://2130706433:" + p4 + "/", literal: true},
		{name: "0x7f.0.0.1", url: "http://0x7f.0.0.1:" + p4 + "/", literal: true},
		{name: "0177.0.0.1", url: "http://0177.0.0.1:" + p4 + "/", literal: true},
		{name: "127.1", url: "http://127.1:" + p4 + "/", literal: true},
		{name: "0.0.0.0", url: "http://0.0.0.0:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "10/8", url: "http://10.1.2.3:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "172.16/12", url: "http://172.31.255.254:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "192.168/16", url: "http://192.168.1.1:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "100.64/10", url: "http://100.64.0.1:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "169.254.169.254", url: "http://169.254.169.254:" + p4 + "/latest/meta-data/", literal: true, dialBlocked: true},
		{name: "fd00::/8", url: "http://[fd00::1]:" + p6 + "/", literal: true, dialBlocked: true},
		{name: "fe80::/10", url: "http://[fe80::1]:" + p6 + "/", literal: true, dialBlocked: true},
		{name: "localhost", url: "http://localhost:" + p4 + "/", literal: true, dialBlocked: true},
		{name: "hostname → 127.0.0.1", url: "http://loopback.test:" + p4 + "/", dialBlocked: true},
		{name: "hostname → ::1", url: "http://loopback6.test:" + p6 + "/", dialBlocked: true},
		{name: "hostname → ::ffff:127.0.0.1", url: "http://mapped.test:" + p4 + "/", dialBlocked: true},
		{name: "hostname → 10.20.30.40", url: "http://private.test:" + p4 + "/", dialBlocked: true},
		{name: "hostname → metadata", url: "http://metadata.test:" + p4 + "/", dialBlocked: true},
		{name: "hostname → fd00::1", url: "http://ula.test:" + p6 + "/", dialBlocked: true},
		{name: "hostname → 127.0.0.1 and ::1", url: "http://mixed.test:" + p4 + "/", dialBlocked: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := policy.ValidateURL(tt.url)
			if tt.literal && !errors.Is(err, ssrf.ErrBlocked) {
				t.Errorf("ValidateURL(%s) = %v, want ErrBlocked", tt.url, err)
			}
			if !tt.literal && err != nil {
				t.Errorf("ValidateURL(%s) = %v, want nil (a hostname is checked at connect time)", tt.url, err)
			}
			_, err = get(t, client, tt.url)
			if err == nil {
				t.Fatalf("request to %s succeeded", tt.url)
			}
			if tt.dialBlocked && !errors.Is(err, ssrf.ErrBlocked) {
				t.Fatalf("request to %s: %v, want ErrBlocked", tt.url, err)
			}
		})
	}

	t.Run("rebinding: public at validation, private at connect", func(t *testing.T) {
		dns.set("rebind.test", []string{"93.184.215.14"}, []string{"127.0.0.1"})
		url := "http://rebind.test:" + p4 + "/"
		// What a naive validator does: resolve and check. It sees a public address.
		addrs, err := dns.resolver().LookupNetIP(context.Background(), "ip4", "rebind.test")
		if err != nil || len(addrs) != 1 || policy.Check(addrs[0]) != nil {
			t.Fatalf("first resolution = %v, %v; want one public address", addrs, err)
		}
		if err := policy.ValidateURL(url); err != nil {
			t.Fatalf("ValidateURL = %v", err)
		}
		// The delivery resolves again and gets loopback: refused at connect.
		if _, err := get(t, client, url); !errors.Is(err, ssrf.ErrBlocked) {
			t.Fatalf("request after rebinding: %v, want ErrBlocked", err)
		}
		if n := dns.count("rebind.test", 1); n < 2 {
			t.Fatalf("rebind.test A was asked %d times, want ≥ 2 (the test did not rebind)", n)
		}
	})

	t.Run("redirect to a private address", func(t *testing.T) {
		// The endpoint itself is allowed (127.0.0.2, opened for this test);
		// it redirects to the canary on 127.0.0.1, which is not.
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Fatal(err)
		}
		target := "http://127.0.0.1:" + p4 + "/"
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, target, http.StatusFound)
			}),
			ReadHeaderTimeout: 5 * time.Second,
		}
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(l) }()
		defer func() { _ = srv.Close(); <-done }()
		open := ssrf.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
		url := "http://" + l.Addr().String() + "/hook"
		if err := open.ValidateURL(url); err != nil {
			t.Fatalf("ValidateURL of the allowed endpoint: %v", err)
		}

		resp, err := get(t, deliveryClient(open, nil, false), url)
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("delivery client: %v, %v; want the 302 itself, not followed", resp, err)
		}
		// Even a client that follows redirects is stopped at connect time.
		if _, err := get(t, deliveryClient(open, nil, true), url); !errors.Is(err, ssrf.ErrBlocked) {
			t.Fatalf("following client: %v, want ErrBlocked", err)
		}
	})

	if n4, n6 := c4.accepts.Load(), c6.accepts.Load(); n4 != 0 || n6 != 0 {
		t.Fatalf("canaries accepted %d (127.0.0.1) and %d (::1) connections, want 0", n4, n6)
	}
}

// The allow-list opens a range: with 127.0.0.0/8 allowed, the same
// requests reach the canary.
func TestAllowListLetsLoopbackThrough(t *testing.T) {
	c := startCanary(t, "127.0.0.1")
	dns := startFakeDNS(t)
	dns.set("loopback.test", []string{"127.0.0.1"})
	allow, err := ssrf.ParseAllowList("127.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	p := ssrf.Policy{Allow: allow}
	client := deliveryClient(p, dns.resolver(), false)
	for i, url := range []string{
		"http://127.0.0.1:" + c.port + "/",
		"http://loopback.test:" + c.port + "/",
		"http://[::ffff:127.0.0.1]:" + c.port + "/",
	} {
		if err := p.ValidateURL(url); err != nil {
			t.Fatalf("ValidateURL(%s) = %v", url, err)
		}
		resp, err := get(t, client, url)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("request to %s: %v, %v; want 200", url, resp, err)
		}
		if n := c.accepts.Load(); n != int64(i+1) {
			t.Fatalf("canary accepted %d connections after %d requests", n, i+1)
		}
	}
	// ::1 is not in 127.0.0.0/8: still refused.
	if err := p.ValidateURL("http://[::1]:" + c.port + "/"); !errors.Is(err, ssrf.ErrBlocked) {
		t.Fatalf("ValidateURL([::1]) with 127/8 allowed = %v, want ErrBlocked", err)
	}
}

// Control refuses what is not TCP and addresses it cannot read.
func TestControl(t *testing.T) {
	t.Parallel()
	p := ssrf.Policy{}
	tests := []struct {
		network, address string
		wantErr          bool
	}{
		{"tcp4", "93.184.215.14:443", false},
		{"tcp6", "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443", false},
		{"tcp4", "127.0.0.1:80", true},
		{"tcp6", "[::1]:80", true},
		{"tcp6", "[fe80::1%lo]:80", true},
		{"udp4", "93.184.215.14:53", true},
		{"tcp", "example.com:80", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s", tt.network, tt.address), func(t *testing.T) {
			t.Parallel()
			err := p.Control(tt.network, tt.address, nil)
			if tt.wantErr != errors.Is(err, ssrf.ErrBlocked) {
				t.Fatalf("Control = %v, wantErr %v", err, tt.wantErr)
			}
		})
	}
}

// A Control already on the base dialer still runs, and the policy's runs too.
func TestDialerKeepsBaseControl(t *testing.T) {
	t.Parallel()
	var called atomic.Bool
	base := &net.Dialer{Timeout: time.Second}
	base.Control = func(string, string, syscall.RawConn) error { called.Store(true); return nil }
	d := ssrf.Policy{}.Dialer(base)
	_, err := d.Dial("tcp", "127.0.0.1:"+strconv.Itoa(9))
	if !errors.Is(err, ssrf.ErrBlocked) || !called.Load() {
		t.Fatalf("dial = %v, base control called %v; want ErrBlocked after the base control", err, called.Load())
	}
}
