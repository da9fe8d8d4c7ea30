// Package lag measures how far behind the pipeline runs: a Sampler reads
// the deliverer's two JetStream consumers' counts into gauges, and Timed
// observes the end-to-end latency of each successful delivery.
package lag

import (
	"context"
	"errors"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/tracing"
	"github.com/hookline/hookline/services/deliverer/internal/metrics"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// consumer is one sampled consumer: its stream, durable name and label.
type consumer struct {
	stream, name, label string
	cons                jetstream.Consumer
}

// Sampler reads the dispatch and deliver consumers' info every interval:
// one JetStream API request per consumer, whatever the traffic.
type Sampler struct {
	js        jetstream.JetStream
	m         *metrics.Lag
	log       *zap.Logger
	every     time.Duration
	consumers []*consumer
	warned    time.Time
}

// Config is a Sampler's.
type Config struct {
	// Metrics are where the samples go.
	Metrics *metrics.Lag
	// Every is the interval (0: never; Run returns at once).
	Every time.Duration
	// Log is where the sampler warns (nil: nowhere).
	Log *zap.Logger
}

// NewSampler samples js's consumers.
func NewSampler(js jetstream.JetStream, c Config) *Sampler {
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return &Sampler{js: js, m: c.Metrics, log: c.Log.Named("lag"), every: c.Every, consumers: []*consumer{
		{stream: stream.Events, name: stream.DispatchConsumer, label: "dispatch"},
		{stream: stream.Deliveries, name: stream.DeliverConsumer, label: "deliver"},
	}}
}

// Run samples at once, then every interval, until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	if s.every <= 0 {
		return nil
	}
	t := time.NewTicker(s.every)
	defer t.Stop()
	for {
		s.Sample(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Sample reads every consumer once. A failure is counted and leaves the
// gauges as they were; it is logged at most once a minute.
func (s *Sampler) Sample(ctx context.Context) {
	for _, c := range s.consumers {
		err := s.sample(ctx, c)
		if err == nil || ctx.Err() != nil {
			continue
		}
		s.m.ConsumerInfoErrors.WithLabelValues(c.label).Inc()
		if time.Since(s.warned) > time.Minute {
			s.warned = time.Now()
			s.log.Warn("consumer lag not read", zap.String("consumer", c.stream+"/"+c.name), zap.Error(err))
		}
	}
}

func (s *Sampler) sample(ctx context.Context, c *consumer) error {
	ctx, cancel := context.WithTimeout(ctx, min(s.every, 5*time.Second))
	defer cancel()
	if c.cons == nil {
		cons, err := s.js.Consumer(ctx, c.stream, c.name)
		if err != nil {
			return err
		}
		c.cons = cons
	}
	info, err := c.cons.Info(ctx)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c.cons = nil // recreated: look it up again next time
	}
	if err != nil {
		return err
	}
	s.m.ConsumerPending.WithLabelValues(c.label).Set(float64(info.NumPending))
	s.m.ConsumerAckPending.WithLabelValues(c.label).Set(float64(info.NumAckPending))
	s.m.ConsumerRedelivered.WithLabelValues(c.label).Set(float64(info.NumRedelivered))
	return nil
}

// Observer takes one latency in seconds (prometheus.Histogram).
type Observer interface{ Observe(float64) }

// Sender is what Timed wraps (sender.Sender).
type Sender interface {
	Send(ctx context.Context, r sender.Request) sender.Result
}

// Timed wraps a Sender: each successful attempt of a task that carries
// Hookline-Accepted-At observes now minus that time, with the task's trace
// id as the sample's exemplar when it carries a traceparent. Replays and test
// deliveries are left out (their latency is a person's, not the
// pipeline's), and so are tasks dispatched before the header existed.
func Timed(next Sender, latency Observer) Sender {
	return timed{next: next, latency: latency, now: time.Now}
}

type timed struct {
	next    Sender
	latency Observer
	now     func() time.Time
}

func (t timed) Send(ctx context.Context, r sender.Request) sender.Result {
	res := t.next.Send(ctx, r)
	if !res.OK() {
		return res
	}
	h := r.TaskHeader
	if first(h, stream.HeaderReplay) != "" || first(h, stream.HeaderTest) != "" {
		return res
	}
	at, err := time.Parse(time.RFC3339Nano, first(h, stream.HeaderAcceptedAt))
	if err != nil {
		return res
	}
	v := max(t.now().Sub(at), 0).Seconds()
	if eo, ok := t.latency.(prometheus.ExemplarObserver); ok {
		if id := tracing.TraceIDOf(h); id != "" {
			// The sample links to its trace (OpenMetrics exemplars).
			eo.ObserveWithExemplar(v, prometheus.Labels{"trace_id": id})
			return res
		}
	}
	t.latency.Observe(v)
	return res
}

func first(h map[string][]string, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}
