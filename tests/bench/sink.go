package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is the receiving end of every scenario: an HTTP/1.1 keep-alive server
// on 127.0.0.1 that answers 200 (or, for the soak, slowly and sometimes
// 500) and records, per endpoint (/s/<name>), when
// each webhook arrived and how long after its publish. The publish time
// rides in the payload ("pub_ns", see Payload), so the pipeline's and the
// bare client's requests cost the sink exactly the same work.
type Sink struct {
	URL string

	srv *http.Server
	ln  net.Listener

	mu        sync.Mutex
	endpoints map[string]*SinkEndpoint

	bufs sync.Pool
}

// NewSink listens on a free loopback port and serves until Close.
func NewSink() (*Sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("sink: listen: %w", err)
	}
	s := &Sink{
		URL:       "http://" + ln.Addr().String(),
		ln:        ln,
		endpoints: map[string]*SinkEndpoint{},
		bufs:      sync.Pool{New: func() any { return new(bytes.Buffer) }},
	}
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *Sink) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		_ = s.srv.Close()
	}
}

// Endpoint returns the endpoint called name (created on first use); its URL
// is Sink.URL + "/s/" + name.
func (s *Sink) Endpoint(name string) *SinkEndpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ep, ok := s.endpoints[name]; ok {
		return ep
	}
	ep := &SinkEndpoint{Name: name, URL: s.URL + "/s/" + name, ids: map[string]uint16{}}
	s.endpoints[name] = ep
	return ep
}

// ServeHTTP records the request on its endpoint and answers 200.
func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutPrefix(r.URL.Path, "/s/")
	s.mu.Lock()
	ep := s.endpoints[name]
	s.mu.Unlock()
	if !ok || ep == nil {
		http.NotFound(w, r)
		return
	}
	ep.current.Add(1)
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, err := io.Copy(buf, io.LimitReader(r.Body, 16<<20))
	now := time.Now().UnixNano()
	if err != nil {
		ep.current.Add(-1)
		s.bufs.Put(buf)
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	status, delay := ep.record(r.Header.Get("webhook-id"), PublishedAt(buf.Bytes()), now)
	s.bufs.Put(buf)
	if delay > 0 {
		time.Sleep(delay) // a slow endpoint, on purpose
	}
	w.WriteHeader(status)
	ep.current.Add(-1)
}

// SinkEndpoint is what one endpoint saw.
type SinkEndpoint struct {
	Name string
	URL  string

	current atomic.Int64

	mu sync.Mutex
	// delay before answering; failPermille of the ids are answered 500 on
	// their first attempt (chosen by a hash of the id).
	delay         time.Duration
	failPermille  uint32
	arrivals      int
	failed        int
	ids           map[string]uint16 // attempts per id
	delivered     int               // ids answered 200 at least once
	noID, noStamp int
	latencies     []int64 // ns, publish → arrival, in arrival order
	first, last   int64   // unix ns of the first and last arrival
	maxConcurrent int64
}

// SetBehavior makes the endpoint answer after delay and answer 500 to the
// first attempt of failPermille ‰ of the events.
func (e *SinkEndpoint) SetBehavior(delay time.Duration, failPermille uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.delay, e.failPermille = delay, failPermille
}

// record counts an arrival and decides the answer.
func (e *SinkEndpoint) record(id string, pubNS, now int64) (status int, delay time.Duration) {
	cur := e.current.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.arrivals++
	if cur > e.maxConcurrent {
		e.maxConcurrent = cur
	}
	if e.first == 0 {
		e.first = now
	}
	e.last = now
	if id == "" {
		e.noID++
		return http.StatusBadRequest, 0
	}
	n := e.ids[id] + 1
	e.ids[id] = n
	if n == 1 && e.failPermille > 0 && idHash(id)%1000 < e.failPermille {
		e.failed++
		return http.StatusInternalServerError, e.delay
	}
	if n > 1 && e.failPermille > 0 && idHash(id)%1000 < e.failPermille {
		// The retry of a failed first attempt: a delivery, not a duplicate,
		// unless it is the third arrival or later.
		n--
	}
	if n == 1 {
		e.delivered++
		if pubNS > 0 {
			e.latencies = append(e.latencies, now-pubNS)
		} else {
			e.noStamp++
		}
	}
	return http.StatusOK, e.delay
}

func idHash(id string) uint32 {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return h
}

// Distinct is how many different webhook ids were answered 200.
func (e *SinkEndpoint) Distinct() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.delivered
}

// EndpointStats is a snapshot of an endpoint.
type EndpointStats struct {
	// Arrivals counts every request; Distinct the ids answered 200.
	Arrivals, Distinct int
	// Failed counts the first attempts answered 500 on purpose.
	Failed int
	// Duplicates are arrivals of an id already answered 200 (at-least-once).
	Duplicates int
	// NoStamp counts bodies without a publish time.
	NoStamp int
	// Latencies publish → arrival, ns, in arrival order.
	Latencies     []int64
	First, Last   time.Time
	MaxConcurrent int
}

// Stats returns a snapshot (the latencies are copied).
func (e *SinkEndpoint) Stats() EndpointStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := EndpointStats{
		Arrivals:      e.arrivals,
		Distinct:      e.delivered,
		Failed:        e.failed,
		NoStamp:       e.noStamp,
		Latencies:     append([]int64(nil), e.latencies...),
		MaxConcurrent: int(e.maxConcurrent),
	}
	st.Duplicates = st.Arrivals - st.Distinct - st.Failed - e.noID
	if e.first != 0 {
		st.First, st.Last = time.Unix(0, e.first), time.Unix(0, e.last)
	}
	return st
}

// AwaitDistinct waits until n distinct ids arrived, ctx ends or no new
// arrival came for idle; it returns how many arrived.
func (e *SinkEndpoint) AwaitDistinct(ctx context.Context, n int, idle time.Duration) (int, error) {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	last, lastChange := -1, time.Now()
	for {
		got := e.Distinct()
		if got >= n {
			return got, nil
		}
		if got != last {
			last, lastChange = got, time.Now()
		} else if time.Since(lastChange) > idle {
			return got, fmt.Errorf("endpoint %s: %d of %d webhooks arrived, none for %s", e.Name, got, n, idle)
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("endpoint %s: %d of %d webhooks arrived: %w", e.Name, got, n, ctx.Err())
		case <-t.C:
		}
	}
}

// Payload builds an event body of about size bytes carrying its publish
// time: {"pub_ns":<unix ns>,"seq":<n>,"pad":"xxx…"}.
func Payload(dst []byte, pubNS int64, seq, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"pub_ns":`...)
	dst = appendInt(dst, pubNS)
	dst = append(dst, `,"seq":`...)
	dst = appendInt(dst, int64(seq))
	dst = append(dst, `,"pad":"`...)
	for n := len(dst) - start + 2; n < size; n++ {
		dst = append(dst, 'x')
	}
	return append(dst, `"}`...)
}

func appendInt(dst []byte, v int64) []byte {
	var b [20]byte
	i := len(b)
	neg := v < 0
	if neg {
		v = -v
	}
	for {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	if neg {
		i--
		b[i] = '-'
	}
	return append(dst, b[i:]...)
}

var pubKey = []byte(`"pub_ns"`)

// PublishedAt reads pub_ns from a body built by Payload (0 when absent).
// It tolerates whitespace around the colon, in case a hop re-encodes the
// JSON.
func PublishedAt(body []byte) int64 {
	i := bytes.Index(body, pubKey)
	if i < 0 {
		return 0
	}
	rest := body[i+len(pubKey):]
	rest = bytes.TrimLeft(rest, " \t\r\n")
	if len(rest) == 0 || rest[0] != ':' {
		return 0
	}
	rest = bytes.TrimLeft(rest[1:], " \t\r\n")
	var v int64
	n := 0
	for ; n < len(rest) && rest[n] >= '0' && rest[n] <= '9'; n++ {
		v = v*10 + int64(rest[n]-'0')
	}
	if n == 0 {
		return 0
	}
	return v
}

// Reset forgets everything the endpoint saw (after a warm-up).
func (e *SinkEndpoint) Reset() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.arrivals, e.noID, e.noStamp, e.failed, e.delivered = 0, 0, 0, 0, 0
	e.ids = map[string]uint16{}
	e.latencies = nil
	e.first, e.last, e.maxConcurrent = 0, 0, 0
}
