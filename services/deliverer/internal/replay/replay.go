// Package replay is the deliverer's side of `hookctl dlq replay` (and of
// the API's replay jobs, whose back-fills it serves on
// hookline.events.replay the same way): it serves
// replay requests (pkg/replay) on hookline.dlq.replay, in a queue group
// shared by every deliverer, reading each requested dead letter from
// DEADLETTER and publishing its task. hookctl's NATS user may ask for a
// replay but not publish tasks, so it can re-send only what DEADLETTER
// holds.
package replay

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/replay"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Server answers replay requests until its context ends.
type Server struct {
	nc      *nats.Conn
	r       *replay.Replayer
	log     *zap.Logger
	timeout time.Duration
}

// Config is a Server's.
type Config struct {
	// JS is where replayed tasks are published.
	JS jetstream.JetStream
	// Timeout bounds one request's NATS calls.
	Timeout time.Duration
	// Tracing makes each replay a span of its event's trace (nil: off).
	Tracing *tracing.Tracing
	// Log is where the server logs (nil: nowhere).
	Log *zap.Logger
}

// New builds a server answering the requests nc receives.
func New(nc *nats.Conn, c Config) *Server {
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	s := &Server{nc: nc, r: &replay.Replayer{JS: c.JS}, log: c.Log.Named("replay"), timeout: c.Timeout}
	if c.Tracing.Enabled() {
		s.r.Trace = traced(c.Tracing)
	}
	return s
}

// traced makes a replay a span (kind producer) in the trace the dead
// letter kept, under the event's fan-out, with the entry's sequence and,
// at its end, the outcome; the replayed task carries the span, so its
// attempt is the replay's child.
func traced(t *tracing.Tracing) func(context.Context, uint64, *nats.Msg) (context.Context, func(replay.Response, error)) {
	return func(ctx context.Context, seq uint64, task *nats.Msg) (context.Context, func(replay.Response, error)) {
		ctx, span := t.Start(t.Extract(ctx, task.Header), "replay", trace.WithSpanKind(trace.SpanKindProducer))
		if span.IsRecording() {
			span.SetAttributes(tracing.MessagingSystem, tracing.AttrReplay.Int64(int64(seq)),
				tracing.AttrEventID.String(task.Header.Get(stream.HeaderEventID)),
				tracing.AttrTenant.String(task.Header.Get(stream.HeaderTenant)),
				tracing.AttrSubscriptionID.String(task.Header.Get(stream.HeaderSubscriptionID)))
		}
		t.Inject(ctx, task.Header)
		return ctx, func(res replay.Response, err error) {
			if err != nil {
				span.SetStatus(codes.Error, "replay failed")
			} else {
				span.SetAttributes(tracing.AttrOutcome.String(res.Outcome), attribute.Bool("hookline.replay.duplicate", res.Duplicate))
			}
			span.End()
		}
	}
}

// Run subscribes and serves until ctx ends, then unsubscribes (a request
// being served is finished first).
func (s *Server) Run(ctx context.Context) error {
	sub, err := replay.Serve(s.nc, s.r, s.timeout, s.logged)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", replay.Subject, err)
	}
	// Back-fill requests of the API's replay jobs (source "events").
	events, err := replay.ServeEvents(s.nc, s.r, s.timeout, s.loggedEvent)
	if err != nil {
		_ = sub.Drain()
		return fmt.Errorf("subscribe to %s: %w", replay.EventSubject, err)
	}
	<-ctx.Done()
	for _, sb := range []*nats.Subscription{sub, events} {
		if err := sb.Drain(); err != nil && s.nc.IsConnected() {
			s.log.Warn("stop serving replay requests", zap.Error(err))
		}
	}
	return nil
}

// loggedEvent records every back-fill answer, never a body.
func (s *Server) loggedEvent(req replay.EventRequest, res replay.Response, err error) {
	if err != nil {
		s.log.Warn("event not back-filled", zap.Uint64("event_seq", req.Seq), zap.String("subscription_id", req.SubscriptionID), zap.Error(err))
		return
	}
	s.log.Info("event back-filled", zap.Uint64("event_seq", req.Seq), zap.String("subscription_id", req.SubscriptionID),
		zap.String("outcome", res.Outcome), zap.Uint64("task_seq", res.TaskSeq), zap.Bool("duplicate", res.Duplicate))
}

// logged records every answer: who was replayed where, never a body.
func (s *Server) logged(res replay.Response, err error) {
	if err != nil {
		s.log.Warn("dead letter not replayed", zap.Uint64("dead_letter_seq", res.Seq), zap.Error(err))
		return
	}
	if res.Warning != "" {
		s.log.Warn("dead letter replayed, not marked", zap.Uint64("dead_letter_seq", res.Seq), zap.String("warning", res.Warning))
	}
	s.log.Info("dead letter replayed", zap.Uint64("dead_letter_seq", res.Seq), zap.String("outcome", res.Outcome),
		zap.String("subject", res.Subject), zap.Uint64("task_seq", res.TaskSeq), zap.Bool("duplicate", res.Duplicate))
}
