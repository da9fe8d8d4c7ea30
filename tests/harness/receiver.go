package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Behavior is how an endpoint answers a webhook.
type Behavior struct {
	kind    behaviorKind
	status  int
	delay   time.Duration
	size    int64
	failFor int
}

type behaviorKind int

const (
	kindStatus behaviorKind = iota
	kindHang
	kindHangAfterHeaders
	kindSlow
	kindReset
	kindHugeBody
	kindFailFirst
	kindFlaky
)

// Endpoint behaviours.
var (
	// OK answers 200.
	OK = Behavior{kind: kindStatus, status: http.StatusOK}
	// Fail answers 500.
	Fail = Behavior{kind: kindStatus, status: http.StatusInternalServerError}
	// Hang never answers; the request is held until the client gives up.
	Hang = Behavior{kind: kindHang}
	// HangAfterHeaders sends 200 and its headers, then never sends the body.
	// The receiver counts it as delivered: the client saw the 2xx.
	HangAfterHeaders = Behavior{kind: kindHangAfterHeaders}
	// Reset closes the connection with a TCP RST before answering.
	Reset = Behavior{kind: kindReset}
)

// Status answers code.
func Status(code int) Behavior { return Behavior{kind: kindStatus, status: code} }

// Slow answers 200 after d (or never, if the client gives up first).
func Slow(d time.Duration) Behavior { return Behavior{kind: kindSlow, delay: d, status: http.StatusOK} }

// HugeBody answers 200 with a body of n bytes, streamed without allocating
// it; it counts as delivered (the status went out first).
func HugeBody(n int64) Behavior { return Behavior{kind: kindHugeBody, size: n, status: http.StatusOK} }

// FailFirst answers 500 to the first n attempts of each event, then 200.
func FailFirst(n int) Behavior { return Behavior{kind: kindFailFirst, failFor: n} }

// Flaky answers 500 to one request in every n, at random, and 200 to the
// others.
func Flaky(n int) Behavior { return Behavior{kind: kindFlaky, failFor: n} }

// String names the behaviour in reports.
func (b Behavior) String() string {
	switch b.kind {
	case kindStatus:
		return fmt.Sprintf("status %d", b.status)
	case kindHang:
		return "hang"
	case kindHangAfterHeaders:
		return "hang after headers"
	case kindSlow:
		return fmt.Sprintf("slow %s", b.delay)
	case kindReset:
		return "reset"
	case kindHugeBody:
		return fmt.Sprintf("huge body %d bytes", b.size)
	case kindFailFirst:
		return fmt.Sprintf("fail first %d", b.failFor)
	case kindFlaky:
		return fmt.Sprintf("flaky (1 in %d fails)", b.failFor)
	}
	return "?"
}

// Receiver is an HTTP server on 127.0.0.1 with any number of endpoints, one
// per subscription, each at its own path.
type Receiver struct {
	URL string

	srv     *http.Server
	closing chan struct{}

	mu        sync.Mutex
	endpoints map[string]*Endpoint
	strays    int // requests to a path with no endpoint
}

// NewReceiver starts a receiver that stops when the test ends.
func NewReceiver(tb testing.TB) *Receiver {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("receiver: listen: %v", err)
	}
	r := &Receiver{
		URL:       "http://" + ln.Addr().String(),
		closing:   make(chan struct{}),
		endpoints: map[string]*Endpoint{},
	}
	// Idle keep-alive connections are closed after a second, as real
	// endpoints do sooner or later: the deliverer's idle pool then drains,
	// and its goroutine count can return to a baseline.
	r.srv = &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	tb.Cleanup(r.Close)
	return r
}

// Close releases every held request and stops the server.
func (r *Receiver) Close() {
	select {
	case <-r.closing:
		return
	default:
	}
	close(r.closing)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.srv.Shutdown(ctx); err != nil {
		_ = r.srv.Close()
	}
}

// Endpoint returns the endpoint called name, creating it (answering OK).
func (r *Receiver) Endpoint(name string) *Endpoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ep, ok := r.endpoints[name]; ok {
		return ep
	}
	ep := &Endpoint{
		Name:     name,
		URL:      r.URL + "/hooks/" + name,
		behavior: OK,
		hits:     map[string]*Hits{},
		inflight: map[string]int{},
		closing:  r.closing,
	}
	r.endpoints[name] = ep
	return ep
}

// Strays counts requests to paths no endpoint owns.
func (r *Receiver) Strays() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.strays
}

// ServeHTTP routes /hooks/<name> to its endpoint.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name, ok := strings.CutPrefix(req.URL.Path, "/hooks/")
	r.mu.Lock()
	ep := r.endpoints[name]
	if !ok || ep == nil {
		r.strays++
		r.mu.Unlock()
		http.NotFound(w, req)
		return
	}
	r.mu.Unlock()
	ep.serve(w, req)
}

// Hits is what one endpoint saw of one event.
type Hits struct {
	// Attempts counts every request; Delivered those answered 2xx.
	Attempts  int
	Delivered int
	// Times of arrival and the statuses answered, in order.
	Times    []time.Time
	Statuses []int
	// Header and Body of the last request.
	Header http.Header
	Body   []byte
}

// Endpoint records the webhooks sent to one URL: per event id, how many
// attempts, how many were answered 2xx and when. With a secret bound it
// verifies every signature with the Standard Webhooks reference library.
type Endpoint struct {
	Name string
	URL  string

	closing <-chan struct{}

	mu             sync.Mutex
	behavior       Behavior
	subscriptionID string
	wh             *standardwebhooks.Webhook
	hits           map[string]*Hits
	attempts       int
	delivered      int
	deliveredIDs   int // events answered 2xx at least once
	duplicates     int // 2xx answers beyond the first per event
	badSignatures  []string
	noID           int
	first, last    time.Time
	lastDelivered  time.Time
	inflight       map[string]int
	maxOverlap     int
	overlapEvents  []string
	current        int
	maxConcurrent  int
	receipts       []Receipt
}

// Receipt is one request of an ordering key, in arrival order.
type Receipt struct {
	ID, Key string
	// Number is the Hookline-Ordering-Sequence header.
	Number uint64
	// Status is what the endpoint answered (0: nothing).
	Status int
}

// Receipts returns the requests that carried an ordering key, in the order
// they arrived.
func (e *Endpoint) Receipts() []Receipt {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Receipt(nil), e.receipts...)
}

// SetBehavior changes how the endpoint answers from now on.
func (e *Endpoint) SetBehavior(b Behavior) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.behavior = b
}

// Bind records the subscription this endpoint serves and its signing secret
// (empty: signatures are not checked).
func (e *Endpoint) Bind(subscriptionID, secret string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subscriptionID = subscriptionID
	if secret == "" {
		e.wh = nil
		return nil
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("endpoint %s: secret: %w", e.Name, err)
	}
	e.wh = wh
	return nil
}

// SubscriptionID is the subscription bound to the endpoint.
func (e *Endpoint) SubscriptionID() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.subscriptionID
}

func (e *Endpoint) serve(w http.ResponseWriter, req *http.Request) {
	// Read the whole body before anything else: the delivery is on the wire.
	body, readErr := io.ReadAll(io.LimitReader(req.Body, 64<<20))
	id := req.Header.Get(standardwebhooks.HeaderWebhookID)
	now := time.Now()

	e.mu.Lock()
	b := e.behavior
	e.attempts++
	if e.first.IsZero() {
		e.first = now
	}
	e.last = now
	if id == "" {
		e.noID++
		e.mu.Unlock()
		http.Error(w, "missing webhook-id", http.StatusBadRequest)
		return
	}
	h := e.hits[id]
	if h == nil {
		h = &Hits{}
		e.hits[id] = h
	}
	h.Attempts++
	h.Times = append(h.Times, now)
	h.Header = req.Header.Clone()
	h.Body = body
	attempt := h.Attempts
	if e.wh != nil && readErr == nil {
		if err := e.wh.Verify(body, req.Header); err != nil {
			e.badSignatures = append(e.badSignatures, fmt.Sprintf("%s: %v", id, err))
		}
	}
	ri := -1
	if key := req.Header.Get("Hookline-Ordering-Key"); key != "" {
		n, _ := strconv.ParseUint(req.Header.Get("Hookline-Ordering-Sequence"), 10, 64)
		e.receipts = append(e.receipts, Receipt{ID: id, Key: key, Number: n})
		ri = len(e.receipts) - 1
	}
	e.inflight[id]++
	if n := e.inflight[id]; n > 1 {
		e.overlapEvents = append(e.overlapEvents, id)
		if n > e.maxOverlap {
			e.maxOverlap = n
		}
	}
	e.current++
	if e.current > e.maxConcurrent {
		e.maxConcurrent = e.current
	}
	e.mu.Unlock()

	status := e.answer(w, req, b, attempt)

	e.mu.Lock()
	e.inflight[id]--
	e.current--
	h.Statuses = append(h.Statuses, status)
	if ri >= 0 {
		e.receipts[ri].Status = status
	}
	if status >= 200 && status < 300 {
		h.Delivered++
		e.delivered++
		if h.Delivered == 1 {
			e.deliveredIDs++
		} else {
			e.duplicates++
		}
		e.lastDelivered = time.Now()
	}
	e.mu.Unlock()
}

// answer performs the behaviour and returns the status it sent (0: none).
func (e *Endpoint) answer(w http.ResponseWriter, req *http.Request, b Behavior, attempt int) int {
	switch b.kind {
	case kindStatus:
		w.WriteHeader(b.status)
		return b.status
	case kindFlaky:
		if rand.IntN(b.failFor) == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			return http.StatusInternalServerError
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	case kindFailFirst:
		if attempt <= b.failFor {
			w.WriteHeader(http.StatusInternalServerError)
			return http.StatusInternalServerError
		}
		w.WriteHeader(http.StatusOK)
		return http.StatusOK
	case kindHang:
		e.hold(req, 0)
		return 0
	case kindHangAfterHeaders:
		w.WriteHeader(http.StatusOK)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		e.hold(req, 0)
		// The client saw a 2xx status: whether it calls that a delivery is
		// its choice, so the receiver counts it as one.
		return http.StatusOK
	case kindSlow:
		if !e.hold(req, b.delay) {
			return 0
		}
		w.WriteHeader(b.status)
		return b.status
	case kindReset:
		hj, ok := w.(http.Hijacker)
		if !ok {
			return 0
		}
		conn, _, err := hj.Hijack()
		if err != nil {
			return 0
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // close sends RST
		}
		_ = conn.Close()
		return 0
	case kindHugeBody:
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(b.status)
		chunk := []byte(strings.Repeat("x", 64<<10))
		for sent := int64(0); sent < b.size; sent += int64(len(chunk)) {
			if _, err := w.Write(chunk); err != nil {
				break // the client stopped reading, as it should
			}
		}
		// The status went out first: the client saw a 2xx.
		return b.status
	}
	return 0
}

// hold blocks until d passes (d > 0), the client goes away or the receiver
// closes; it reports whether d passed.
func (e *Endpoint) hold(req *http.Request, d time.Duration) bool {
	var timer <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-timer:
		return true
	case <-req.Context().Done():
	case <-e.closing:
	}
	return false
}

// Stats is a snapshot of an endpoint.
type Stats struct {
	Attempts, Delivered int
	// Events seen at least once; DeliveredEvents answered 2xx at least once.
	Events, DeliveredEvents int
	// Duplicates counts 2xx answers beyond the first per event.
	Duplicates    int
	BadSignatures []string
	MissingID     int
	// MaxOverlap is the most concurrent requests for one event (1: none
	// overlapped); OverlapEvents names the events that overlapped.
	MaxOverlap    int
	OverlapEvents []string
	// MaxConcurrent is the most requests held at once.
	MaxConcurrent              int
	First, Last, LastDelivered time.Time
}

// Stats returns a snapshot.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := Stats{
		Attempts:      e.attempts,
		Delivered:     e.delivered,
		Events:        len(e.hits),
		BadSignatures: append([]string(nil), e.badSignatures...),
		MissingID:     e.noID,
		MaxOverlap:    max(e.maxOverlap, min(1, e.attempts)),
		OverlapEvents: append([]string(nil), e.overlapEvents...),
		MaxConcurrent: e.maxConcurrent,
		First:         e.first,
		Last:          e.last,
		LastDelivered: e.lastDelivered,

		DeliveredEvents: e.deliveredIDs,
		Duplicates:      e.duplicates,
	}
	return s
}

// DeliveredBetween counts the 2xx answers given in [from, to).
func (e *Endpoint) DeliveredBetween(from, to time.Time) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, h := range e.hits {
		for i, at := range h.Times {
			if i < len(h.Statuses) && h.Statuses[i] >= 200 && h.Statuses[i] < 300 && !at.Before(from) && at.Before(to) {
				n++
			}
		}
	}
	return n
}

// Hits returns a copy of what the endpoint saw of one event (nil: nothing).
func (e *Endpoint) Hits(eventID string) *Hits {
	e.mu.Lock()
	defer e.mu.Unlock()
	h, ok := e.hits[eventID]
	if !ok {
		return nil
	}
	c := *h
	c.Times = append([]time.Time(nil), h.Times...)
	c.Statuses = append([]int(nil), h.Statuses...)
	return &c
}

// Delivered returns, per event id, how many times it was answered 2xx.
func (e *Endpoint) Delivered() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	m := make(map[string]int, len(e.hits))
	for id, h := range e.hits {
		if h.Delivered > 0 {
			m[id] = h.Delivered
		}
	}
	return m
}

// EventIDs lists every event id seen, sorted.
func (e *Endpoint) EventIDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.hits))
	for id := range e.hits {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// AwaitDelivered waits until eventID was answered 2xx at least once.
func (e *Endpoint) AwaitDelivered(tb testing.TB, eventID string, timeout time.Duration) *Hits {
	tb.Helper()
	var got *Hits
	Eventually(tb, timeout, func() error {
		got = e.Hits(eventID)
		if got == nil || got.Delivered == 0 {
			return fmt.Errorf("endpoint %s has not received %s: %w", e.Name, eventID, errNotYet)
		}
		return nil
	})
	return got
}

// AwaitAttempts waits until eventID reached n attempts.
func (e *Endpoint) AwaitAttempts(tb testing.TB, eventID string, n int, timeout time.Duration) *Hits {
	tb.Helper()
	var got *Hits
	Eventually(tb, timeout, func() error {
		got = e.Hits(eventID)
		if got == nil || got.Attempts < n {
			return fmt.Errorf("endpoint %s: %s has fewer than %d attempts: %w", e.Name, eventID, n, errNotYet)
		}
		return nil
	})
	return got
}

// Envelope is the body of a subscription whose payload_format is
// "envelope", with data kept as the bytes sent.
type Envelope struct {
	ID        string          `json:"id"`
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// ParseEnvelope reads an envelope body; fields other than the four are an
// error.
func ParseEnvelope(body []byte) (Envelope, error) {
	var e Envelope
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return Envelope{}, fmt.Errorf("envelope %s: %w", body, err)
	}
	return e, nil
}
