package harness

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go/jetstream"
)

// Checker is the Jepsen-style accounting of a test. It records
//
//   - accepted: event ids the producer acknowledged (or a NATS publish did);
//   - attempted: ids whose publish was tried but never acknowledged — they
//     may or may not have been stored, so they may appear but need not;
//   - delivered: (event id × subscription) pairs answered 2xx by the
//     subscriptions' endpoints, with counts;
//   - dead-lettered: pairs found in the DEADLETTER stream, with counts;
//
// and checks the invariant: every accepted event × matching subscription is
// delivered or dead-lettered, nothing unexpected appears, and duplicates are
// counted (and bounded by the test).
type Checker struct {
	js jetstream.JetStream

	mu        sync.Mutex
	clock     int // orders subscriptions and events
	subs      []checkedSub
	accepted  map[string]eventKey
	attempted map[string]eventKey
	dlq       map[pair]int
	dlqReason map[pair]string
	dlqSeq    uint64 // last DEADLETTER sequence read
}

type checkedSub struct {
	id     string
	tenant string
	types  []string
	ep     *Endpoint
	at     int // clock when declared
}

type eventKey struct {
	tenant, typ string
	at          int // clock at the first publish attempt
}

type pair struct{ event, sub string }

func (p pair) String() string { return p.event + "×" + p.sub }

// NewChecker reads dead letters through js.
func NewChecker(js jetstream.JetStream) *Checker {
	return &Checker{
		js:        js,
		accepted:  map[string]eventKey{},
		attempted: map[string]eventKey{},
		dlq:       map[pair]int{},
		dlqReason: map[pair]string{},
	}
}

// AddSubscription declares a subscription the test created (declare it
// once the API answered): its tenant, its event-type filters (NATS token
// semantics) and the endpoint it points at, bound to the subscription id.
// Events published from now on must reach it; events published before may
// (a subscription may see an event still being dispatched) but need not.
func (c *Checker) AddSubscription(id, tenant string, eventTypes []string, ep *Endpoint) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clock++
	c.subs = append(c.subs, checkedSub{id: id, tenant: tenant, types: eventTypes, ep: ep, at: c.clock})
}

// Attempt records that a publish of the event is being tried.
func (c *Checker) Attempt(id, tenant, eventType string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.accepted[id]; ok {
		return
	}
	if _, ok := c.attempted[id]; !ok {
		c.clock++
		c.attempted[id] = eventKey{tenant, eventType, c.clock}
	}
}

// Accept records that the event was acknowledged: it must be delivered.
func (c *Checker) Accept(id, tenant, eventType string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.attempted[id]
	if !ok {
		c.clock++
		k = eventKey{tenant, eventType, c.clock}
	}
	delete(c.attempted, id)
	if _, dup := c.accepted[id]; !dup {
		c.accepted[id] = k
	}
}

// AcceptedCount is the number of accepted events.
func (c *Checker) AcceptedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.accepted)
}

// Matches reports whether a filter list matches an event type, with NATS
// token semantics: exact tokens, "*" for one token, ">" for one or more.
func Matches(filters []string, eventType string) bool {
	for _, f := range filters {
		if matchTokens(strings.Split(f, "."), strings.Split(eventType, ".")) {
			return true
		}
	}
	return false
}

func matchTokens(f, t []string) bool {
	for i, ft := range f {
		if ft == ">" {
			return len(t) > i
		}
		if i >= len(t) || (ft != "*" && ft != t[i]) {
			return false
		}
	}
	return len(f) == len(t)
}

// Report is the result of a check.
type Report struct {
	Accepted  int // events acknowledged
	Attempted int // events tried but never acknowledged
	Expected  int // accepted × matching subscription pairs
	// Pairs delivered at least once, dead-lettered at least once, and both.
	Delivered, DeadLettered, Both int
	// Lost pairs: expected but neither delivered nor dead-lettered.
	Lost       int
	LostSample []string
	// Duplicates: 2xx deliveries beyond the first of a pair, over
	// DuplicatePairs pairs. DeadLetterDuplicates: dead letters beyond the
	// first of a pair (a replayed-and-failed-again pair has two legitimately;
	// the test says how many it allows).
	Duplicates, DuplicatePairs, DeadLetterDuplicates int
	// Unexpected: deliveries or dead letters of events never published, or
	// of a subscription the event does not match.
	Unexpected       int
	UnexpectedSample []string
	// Requests are all HTTP attempts seen by the subscriptions' endpoints.
	Requests      int
	BadSignatures []string
	// DeadLetterReasons counts dead letters by Hookline-Reason.
	DeadLetterReasons map[string]int
}

// String is one line for logs.
func (r Report) String() string {
	return fmt.Sprintf("accepted=%d attempted=%d expected_pairs=%d delivered=%d dead_lettered=%d both=%d lost=%d duplicates=%d (pairs %d) dlq_duplicates=%d unexpected=%d requests=%d bad_signatures=%d reasons=%v",
		r.Accepted, r.Attempted, r.Expected, r.Delivered, r.DeadLettered, r.Both, r.Lost, r.Duplicates, r.DuplicatePairs, r.DeadLetterDuplicates, r.Unexpected, r.Requests, len(r.BadSignatures), r.DeadLetterReasons)
}

// Check reads DEADLETTER and the endpoints and computes a report.
func (c *Checker) Check(ctx context.Context) (Report, error) {
	if err := c.readDeadLetters(ctx); err != nil {
		return Report{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var r Report
	r.Accepted, r.Attempted = len(c.accepted), len(c.attempted)
	r.DeadLetterReasons = map[string]int{}

	delivered := map[pair]int{}
	subByID := map[string]checkedSub{}
	for _, s := range c.subs {
		subByID[s.id] = s
		st := s.ep.Stats()
		r.Requests += st.Attempts
		r.BadSignatures = append(r.BadSignatures, st.BadSignatures...)
		for id, n := range s.ep.Delivered() {
			delivered[pair{id, s.id}] = n
		}
	}
	known := func(p pair) bool {
		k, ok := c.accepted[p.event]
		if !ok {
			k, ok = c.attempted[p.event]
		}
		s, sok := subByID[p.sub]
		return ok && sok && s.tenant == k.tenant && Matches(s.types, k.typ)
	}
	unexpected := func(what string, p pair) {
		r.Unexpected++
		if len(r.UnexpectedSample) < 10 {
			r.UnexpectedSample = append(r.UnexpectedSample, what+" "+p.String())
		}
	}
	for p, n := range delivered {
		r.Delivered++
		if n > 1 {
			r.Duplicates += n - 1
			r.DuplicatePairs++
		}
		if c.dlq[p] > 0 {
			r.Both++
		}
		if !known(p) {
			unexpected("delivered", p)
		}
	}
	for p, n := range c.dlq {
		r.DeadLettered++
		r.DeadLetterDuplicates += n - 1
		if !known(p) {
			unexpected("dead-lettered", p)
		}
	}
	for _, reason := range c.dlqReason {
		r.DeadLetterReasons[reason]++
	}
	var lost []string
	for id, k := range c.accepted {
		for _, s := range c.subs {
			if s.at > k.at || s.tenant != k.tenant || !Matches(s.types, k.typ) {
				continue
			}
			r.Expected++
			p := pair{id, s.id}
			if delivered[p] == 0 && c.dlq[p] == 0 {
				r.Lost++
				lost = append(lost, p.String())
			}
		}
	}
	sort.Strings(lost)
	r.LostSample = lost[:min(len(lost), 10)]
	return r, nil
}

// readDeadLetters reads the DEADLETTER entries added since the last read.
func (c *Checker) readDeadLetters(ctx context.Context) error {
	s, err := c.js.Stream(ctx, stream.DeadLetter)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	c.mu.Lock()
	from := c.dlqSeq + 1
	c.mu.Unlock()
	if info.State.LastSeq < from {
		return nil
	}
	cons, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   from,
	})
	if err != nil {
		return fmt.Errorf("dead letters: %w", err)
	}
	for c.lastDLQSeq() < info.State.LastSeq {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return fmt.Errorf("dead letters: %w", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("dead letters: %w", err)
			}
			h := m.Headers()
			p := pair{h.Get(stream.HeaderEventID), h.Get(stream.HeaderSubscriptionID)}
			c.mu.Lock()
			c.dlq[p]++
			c.dlqReason[p] = h.Get(stream.HeaderReason)
			c.dlqSeq = meta.Sequence.Stream
			c.mu.Unlock()
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("dead letters: %w", err)
		}
		if n == 0 {
			break // the rest was deleted (e.g. purged after a replay)
		}
	}
	return nil
}

func (c *Checker) lastDLQSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dlqSeq
}

// DeadLetterCount is how many dead letters of the pair were read so far.
func (c *Checker) DeadLetterCount(eventID, subscriptionID string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dlq[pair{eventID, subscriptionID}]
}

// Await polls until no accepted pair is lost and the counts have not changed
// for quiet (so late duplicates are counted too), and returns the report.
// It fails the test with the last report when timeout passes first.
func (c *Checker) Await(tb testing.TB, timeout, quiet time.Duration) Report {
	tb.Helper()
	var (
		last        Report
		lastChange  = time.Now()
		fingerprint string
		start       = time.Now()
	)
	err := pollEvery(context.Background(), timeout, 250*time.Millisecond, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		r, err := c.Check(ctx)
		if err != nil {
			return err
		}
		last = r
		if fp := r.String(); fp != fingerprint {
			fingerprint, lastChange = fp, time.Now()
		}
		if r.Lost > 0 {
			return fmt.Errorf("%d pairs not delivered nor dead-lettered yet (e.g. %v): %s", r.Lost, r.LostSample, r)
		}
		if time.Since(lastChange) < quiet {
			return fmt.Errorf("counts still changing: %s", r)
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("checker: %v", err)
	}
	tb.Logf("checker converged in %s: %s", time.Since(start).Round(time.Millisecond), last)
	return last
}

// Verify fails the test unless the report shows nothing lost, nothing
// unexpected, every signature valid, no pair dead-lettered twice and at most
// maxDuplicates duplicate deliveries.
func (r Report) Verify(tb testing.TB, maxDuplicates int) {
	tb.Helper()
	if r.Lost != 0 {
		tb.Errorf("lost %d of %d pairs, e.g. %v", r.Lost, r.Expected, r.LostSample)
	}
	if r.Unexpected != 0 {
		tb.Errorf("%d unexpected deliveries or dead letters, e.g. %v", r.Unexpected, r.UnexpectedSample)
	}
	if len(r.BadSignatures) != 0 {
		tb.Errorf("%d webhooks failed signature verification, e.g. %v", len(r.BadSignatures), r.BadSignatures[:min(3, len(r.BadSignatures))])
	}
	if r.DeadLetterDuplicates != 0 {
		tb.Errorf("%d pairs dead-lettered more than once", r.DeadLetterDuplicates)
	}
	if r.Duplicates > maxDuplicates {
		tb.Errorf("%d duplicate deliveries over %d pairs; at most %d allowed", r.Duplicates, r.DuplicatePairs, maxDuplicates)
	}
	if r.Expected == 0 {
		tb.Errorf("nothing was expected: the test published nothing that matched")
	}
}
