package harness

import (
	"net"
	"sync"
	"testing"
)

// Proxy is a TCP fault proxy on loopback between a service and its upstream
// (NATS). It is small on purpose — toxiproxy's faults drop the bytes they
// hold (its timeout toxic) or reset connections, and neither is what a
// network partition does — and it can:
//
//   - Blackhole: a partition. Nothing moves in either direction, nothing is
//     lost and nobody is told: bytes wait (and back-pressure builds in the
//     kernel buffers) until Heal; new connections are accepted but reach
//     nothing. Only timeouts and keep-alives can notice.
//   - Cut: every open connection is closed and new ones are closed as soon
//     as they are accepted, as when the upstream restarts.
//   - Heal: traffic flows again; held bytes are delivered in order.
type Proxy struct {
	Addr     string
	upstream string
	ln       net.Listener

	mu    sync.Mutex
	cond  *sync.Cond
	mode  proxyMode
	links map[*link]struct{}
	// Opened counts connections accepted; Cuts counts those closed by Cut.
	opened, cuts int
	closed       bool
}

type proxyMode int

const (
	modePass proxyMode = iota
	modeBlackhole
	modeCut
)

type link struct{ client, server net.Conn }

func (l *link) close() {
	_ = l.client.Close()
	if l.server != nil {
		_ = l.server.Close()
	}
}

// NewProxy listens on a free loopback port and forwards to upstream; it is
// closed when the test ends.
func NewProxy(tb testing.TB, upstream string) *Proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("proxy: listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, links: map[*link]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// URL is the nats:// URL of the proxy.
func (p *Proxy) URL() string { return "nats://" + p.Addr }

// Blackhole starts a partition.
func (p *Proxy) Blackhole() { p.setMode(modeBlackhole) }

// Cut closes every connection and refuses new ones until Heal.
func (p *Proxy) Cut() {
	p.setMode(modeCut)
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.close()
		delete(p.links, l)
		p.cuts++
	}
}

// Heal ends Blackhole or Cut.
func (p *Proxy) Heal() { p.setMode(modePass) }

func (p *Proxy) setMode(m proxyMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mode = m
	p.cond.Broadcast()
}

// Connections is how many connections are open through the proxy.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.links)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mode = modePass
	for l := range p.links {
		l.close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	_ = p.ln.Close()
}

// gate blocks while the proxy black-holes; it reports false once the proxy
// is closed.
func (p *Proxy) gate() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.mode == modeBlackhole && !p.closed {
		p.cond.Wait()
	}
	return !p.closed
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.opened++
		cut := p.mode == modeCut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(c net.Conn) {
	l := &link{client: c}
	p.mu.Lock()
	p.links[l] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.links, l)
		p.mu.Unlock()
		l.close()
	}()
	// In a partition the connection to the upstream is not even attempted.
	if !p.gate() {
		return
	}
	s, err := net.Dial("tcp", p.upstream)
	if err != nil {
		return
	}
	p.mu.Lock()
	l.server = s
	gone := p.mode == modeCut || p.closed
	p.mu.Unlock()
	if gone {
		return
	}
	done := make(chan struct{}, 2)
	go func() { p.pipe(s, c); done <- struct{}{} }()
	go func() { p.pipe(c, s); done <- struct{}{} }()
	<-done // one side ended: end both
}

// pipe copies src to dst, holding bytes (never dropping them) while the
// proxy black-holes.
func (p *Proxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if !p.gate() {
			return
		}
		n, err := src.Read(buf)
		if n > 0 {
			if !p.gate() {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed connection: serve closes both sides
		}
	}
}
