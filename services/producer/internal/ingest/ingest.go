// Package ingest takes events published with NATS to
// ingest.<tenant>.<type…> and stores them in EVENTS through the producer's
// group commit: the events of many publishers arriving together are
// stored as one JetStream atomic batch, so a nats-server running
// sync_interval: always fsyncs once per batch instead of once per event.
// A platform service publishing straight to events.<tenant>.<type…> has
// each event stored, and fsynced, alone.
//
// It answers each publish as JetStream does, with a PubAck once the event
// is stored ({"stream":"EVENTS","seq":…}, "duplicate":true for an id
// stored before) or an API error ({"error":{"code":…,"description":…}}),
// so js.Publish and js.PublishAsync work unchanged on an ingest subject:
// no answer, or an error, means not accepted, and publishing again with
// the same Nats-Msg-Id is safe.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/hookline/hookline/services/producer/internal/publish"
)

// Prefix starts the subjects the ingest serves: ingest.<tenant>.<type…>.
const Prefix = "ingest"

// Queue is the queue group of the producers' ingest subscriptions: each
// publish is taken by one producer.
const Queue = "hookline-ingest"

// DefaultInFlight bounds the publishes one producer handles at once.
const DefaultInFlight = 4096

// slotBytes is the data one in-flight slot stands for: a publish takes a
// slot per 16 KiB of its data, so InFlight slots hold at most
// InFlight x 16 KiB (64 MiB by default), not InFlight x max_payload.
const slotBytes = 16 << 10

// Publisher stores an event (publish.Publisher).
type Publisher interface {
	PublishGrouped(ctx context.Context, ev publish.Event) (publish.Result, error)
	MaxData() int64
}

// Server serves the ingest subjects on a NATS connection.
type Server struct {
	nc  *nats.Conn
	pub Publisher
	log *zap.Logger
	// InFlight bounds the publishes handled at once (DefaultInFlight);
	// beyond it the subscription's own buffer holds them.
	InFlight int
	// Timeout bounds one publish's wait for its acknowledgement.
	Timeout time.Duration
	// Now is the clock of occurred_at when the publish gives none.
	Now func() time.Time
	// Answers counts the answers by metrics.IngestAnswerValues (nil: not
	// counted).
	Answers *prometheus.CounterVec
}

// New returns a Server.
func New(nc *nats.Conn, pub Publisher, log *zap.Logger, timeout time.Duration) *Server {
	return &Server{nc: nc, pub: pub, log: log, InFlight: DefaultInFlight, Timeout: timeout, Now: time.Now}
}

// Run serves until ctx ends, then stops taking publishes and answers those
// in hand.
func (s *Server) Run(ctx context.Context) error {
	sem := make(chan struct{}, max(s.InFlight, 1))
	var wg sync.WaitGroup
	// stopped (under mu): Run is past the drain; the callback (one
	// goroutine: it may block on sem while taking its slots) serves no more.
	var mu sync.Mutex
	stopped := false
	sub, err := s.nc.QueueSubscribe(Prefix+".>", Queue, func(m *nats.Msg) {
		n := min(max(1, (len(m.Data)+slotBytes-1)/slotBytes), cap(sem))
		for range n {
			sem <- struct{}{}
		}
		release := func() {
			for range n {
				<-sem
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			release() // not answered: its publisher publishes again
			return
		}
		wg.Go(func() {
			defer release()
			s.serve(context.WithoutCancel(ctx), m)
		})
	})
	if err != nil {
		return fmt.Errorf("ingest: subscribe %s.>: %w", Prefix, err)
	}
	// A publisher that gets no answer publishes again: a deep buffer
	// rather than a slow consumer's dropped messages.
	if err := sub.SetPendingLimits(-1, 64<<20); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("ingest: pending limits: %w", err)
	}
	closed := sub.StatusChanged(nats.SubscriptionClosed)
	<-ctx.Done()
	if err := sub.Drain(); err != nil {
		s.log.Warn("ingest: drain", zap.Error(err))
	} else {
		select {
		case <-closed: // every publish taken has been handed to a goroutine
		case <-time.After(s.Timeout):
			s.log.Warn("ingest: drain did not finish; publishes not taken get no answer (their publishers publish again)")
		}
	}
	mu.Lock()
	stopped = true
	mu.Unlock()
	wg.Wait()
	return nil
}

// answer is JetStream's answer to a publish: its acknowledgement, or an
// API error.
type answer struct {
	*jetstream.PubAck
	Error *jetstream.APIError `json:"error,omitempty"`
}

// errBadRequest marks what the publisher must change before publishing
// again (400); anything else is the store's (503: publish again).
var errBadRequest = errors.New("bad request")

func (s *Server) serve(ctx context.Context, m *nats.Msg) {
	ev, err := s.event(m)
	var res publish.Result
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, s.Timeout)
		res, err = s.pub.PublishGrouped(ctx, ev)
		cancel()
	}
	var a answer
	counted := metrics.IngestStored
	switch {
	case err == nil:
		a.PubAck = &jetstream.PubAck{Stream: stream.Events, Sequence: res.Seq, Duplicate: res.Duplicate}
		if res.Duplicate {
			counted = metrics.IngestDuplicate
		}
	case errors.Is(err, errBadRequest):
		a.Error = &jetstream.APIError{Code: 400, Description: err.Error()}
		counted = metrics.IngestRefused
		s.log.Debug("ingest: publish refused", zap.String("subject", m.Subject), zap.Error(err))
	default:
		a.Error = &jetstream.APIError{Code: 503, Description: "event not stored, publish again: " + err.Error()}
		counted = metrics.IngestUnavailable
		s.log.Warn("ingest: event not stored", zap.String("subject", m.Subject), zap.Error(err))
	}
	if s.Answers != nil {
		s.Answers.WithLabelValues(counted).Inc()
	}
	if m.Reply == "" {
		return // published without asking for an answer: stored all the same
	}
	body, _ := json.Marshal(a)
	if err := m.Respond(body); err != nil {
		s.log.Debug("ingest: answer not sent", zap.Error(err))
	}
}

// event reads a publish to ingest.<tenant>.<type…> as the event the HTTP
// API would take, checked as the API checks it (publish.Event.Validate):
// the id from Nats-Msg-Id (its own, or already scoped as <tenant>:<id>;
// none: one is made up), the data from the body.
func (s *Server) event(m *nats.Msg) (publish.Event, error) {
	rest, ok := strings.CutPrefix(m.Subject, Prefix+".")
	tenant, typ, found := strings.Cut(rest, ".")
	if !ok || !found {
		return publish.Event{}, fmt.Errorf("%w: subject %q is not %s.<tenant>.<type>", errBadRequest, m.Subject, Prefix)
	}
	if err := unhonoured(m.Header); err != nil {
		return publish.Event{}, err
	}
	ev := publish.Event{Tenant: tenant, Type: typ, Data: m.Data, OccurredAt: s.Now(), OrderingKey: m.Header.Get(stream.HeaderOrderingKey)}
	if raw := m.Header.Get(stream.HeaderMsgID); raw == "" {
		ev.ID, ev.Generated = publish.NewEventID(), true
	} else {
		ev.ID = strings.TrimPrefix(raw, tenant+":")
	}
	if at := m.Header.Get(stream.HeaderOccurredAt); at != "" {
		t, err := publish.ParseOccurredAt(at)
		if err != nil {
			return publish.Event{}, fmt.Errorf("%w: %s %w", errBadRequest, stream.HeaderOccurredAt, err)
		}
		ev.OccurredAt = t
	}
	var first error
	ev.Validate(s.pub.MaxData(), func(field string, err error) {
		if first == nil {
			first = fmt.Errorf("%w: %s %w", errBadRequest, headerOf[field], err)
		}
	})
	return ev, first
}

// headerOf names the API's fields as a publish to the ingest carries them.
var headerOf = map[string]string{
	"tenant": "tenant", "type": "type", "data": "data",
	"id": stream.HeaderMsgID, "ordering_key": stream.HeaderOrderingKey,
}

// unhonoured refuses the JetStream publish headers the ingest does not
// check or apply (expected last sequence/subject, another stream, TTL,
// rollup, atomic batches, schedules, counters): JetStream would act on
// them, and an ack would say they held.
func unhonoured(h nats.Header) error {
	for k := range h {
		switch lk := strings.ToLower(k); {
		case lk == strings.ToLower(stream.HeaderMsgID):
		case lk == "nats-expected-stream" && h.Get(k) == stream.Events:
		case strings.HasPrefix(lk, "nats-expected-"), lk == "nats-ttl", lk == "nats-rollup", lk == "nats-incr",
			strings.HasPrefix(lk, "nats-batch-"), strings.HasPrefix(lk, "nats-schedule"):
			return fmt.Errorf("%w: header %s is not supported on %s.>: publish to %s.> for it", errBadRequest, k, Prefix, stream.EventsPrefix)
		}
	}
	return nil
}
