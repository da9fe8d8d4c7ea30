package ssrf_test

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

// fakeDNS is a tiny authoritative DNS server on 127.0.0.1 (UDP) for tests:
// each name has a list of answer sets per query type; the n-th query gets
// the n-th set (the last one repeats), so a test can make a name answer
// "public" first and "private" afterwards (DNS rebinding). Unknown names
// get NXDOMAIN.
type fakeDNS struct {
	conn *net.UDPConn

	mu      sync.Mutex
	answers map[dnsKey][][]netip.Addr
	queries map[dnsKey]int
}

type dnsKey struct {
	name  string // lower case, no trailing dot
	qtype uint16
}

const (
	typeA    = 1
	typeAAAA = 28
)

func startFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDNS{conn: c, answers: map[dnsKey][][]netip.Addr{}, queries: map[dnsKey]int{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.serve()
	}()
	t.Cleanup(func() {
		_ = c.Close()
		<-done
	})
	return d
}

// set makes name answer each set in turn for its address family.
func (d *fakeDNS) set(name string, sets ...[]string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, set := range sets {
		var v4, v6 []netip.Addr
		for _, s := range set {
			a := netip.MustParseAddr(s)
			if a.Is4() {
				v4 = append(v4, a)
			} else {
				v6 = append(v6, a)
			}
		}
		d.answers[dnsKey{name, typeA}] = append(d.answers[dnsKey{name, typeA}], v4)
		d.answers[dnsKey{name, typeAAAA}] = append(d.answers[dnsKey{name, typeAAAA}], v6)
	}
}

func (d *fakeDNS) count(name string, qtype uint16) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queries[dnsKey{name, qtype}]
}

// resolver sends every query to this server.
func (d *fakeDNS) resolver() *net.Resolver {
	addr := d.conn.LocalAddr().String()
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "udp", addr)
		},
	}
}

func (d *fakeDNS) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if resp, err := d.answer(buf[:n]); err == nil {
			_, _ = d.conn.WriteToUDP(resp, from)
		}
	}
}

func (d *fakeDNS) answer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) < 1 {
		return nil, errors.New("short query")
	}
	// The first question: labels, then qtype and qclass.
	i := 12
	var labels []string
	for {
		if i >= len(q) {
			return nil, errors.New("truncated name")
		}
		l := int(q[i])
		i++
		if l == 0 {
			break
		}
		if l > 63 || i+l > len(q) {
			return nil, errors.New("bad label")
		}
		labels = append(labels, string(q[i:i+l]))
		i += l
	}
	if i+4 > len(q) {
		return nil, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	question := q[12 : i+4]
	key := dnsKey{strings.ToLower(strings.Join(labels, ".")), qtype}

	d.mu.Lock()
	d.queries[key]++
	_, known := d.answers[dnsKey{key.name, typeA}]
	var addrs []netip.Addr
	if known {
		sets := d.answers[key]
		n := d.queries[key] - 1
		if n >= len(sets) {
			n = len(sets) - 1
		}
		if n >= 0 {
			addrs = sets[n]
		}
	}
	d.mu.Unlock()

	resp := make([]byte, 12, 512)
	copy(resp[0:2], q[0:2])
	flags := uint16(0x8180) // response, recursion desired and available
	if !known {
		flags |= 3 // NXDOMAIN
	}
	binary.BigEndian.PutUint16(resp[2:4], flags)
	binary.BigEndian.PutUint16(resp[4:6], 1)
	binary.BigEndian.PutUint16(resp[6:8], uint16(len(addrs)))
	resp = append(resp, question...)
	for _, a := range addrs {
		rdata := a.AsSlice()
		resp = append(resp, 0xc0, 12) // pointer to the question's name
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1) // IN
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL 0: never cached
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp, nil
}
