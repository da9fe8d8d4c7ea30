// Package attempt records HTTP attempts in the ATTEMPTS stream, on
// attempts.<tenant>.<subscription>. A message holds one or more records of
// one subscription, one per line, each the proto3 JSON of hooklinev1.Attempt
// (snake_case field names); header Hookline-Event-Id when it holds exactly
// one (stream.AttemptRecords splits a message).
//
// A subscription's records gather for up to Options.Linger and go out as one
// message: at thousands of attempts a second, one stored message per attempt
// was a third of nats-server's store work per delivery, and of its fsyncs
// under sync_interval always. Records are published asynchronously; a record
// that cannot be stored is logged and counted, never retried at the cost of
// a delivery.
package attempt

import (
	"context"
	"fmt"
	"github.com/hookline/hookline/pkg/linger"
	"time"

	"github.com/hookline/hookline/pkg/natsconn"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/protojson"
)

// Config is the recorder's: where it logs and counts failures, and how it
// batches.
type Config struct {
	// Log hears failed records (sampled: one per second, then one per
	// 1000); Failed counts them.
	Log    *zap.Logger
	Failed prometheus.Counter
	// Linger is how long a subscription's first record waits for others
	// before its message is published (0: a message per record).
	Linger time.Duration
	// MaxRecords and MaxBytes publish a message early once it holds that
	// many records or bytes (defaults 256 and 256 KiB, well under NATS's
	// 1 MiB max_payload).
	MaxRecords int
	MaxBytes   int
}

// Defaults.
const (
	DefaultLinger     = 50 * time.Millisecond
	DefaultMaxRecords = 256
	DefaultMaxBytes   = 256 << 10
)

// Recorder publishes attempt records.
type Recorder struct {
	js     jetstream.JetStream
	log    *zap.Logger
	failed prometheus.Counter
	o      Config

	// batches gathers a subscription's records in one message (keyed by
	// subject, named by the first record's event id).
	batches *linger.Batcher[string]
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// stallBudget bounds how long a batch waits for room in a full async
// window (each try waits the client's stall wait, 200 ms by default) before
// its records are counted as failed.
const stallBudget = time.Second

// NewRecorder builds a Recorder on its own JetStream context, whose async
// error handler counts the failures, so that no goroutine waits on a
// record's future.
func NewRecorder(nc *nats.Conn, o Config) (*Recorder, error) {
	log, failed := o.Log, o.Failed
	if o.Linger < 0 {
		o.Linger = 0
	}
	if o.MaxRecords <= 0 {
		o.MaxRecords = DefaultMaxRecords
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	// At most one warning per second (then one per 1000) when ATTEMPTS is
	// unavailable and every record fails.
	log = log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 1, 1000)
	}))
	r := &Recorder{log: log, failed: failed, o: o}
	r.batches = linger.New(o.Linger, o.MaxRecords, o.MaxBytes, r.publish)
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			r.fail(m, err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("attempt recorder: %w", err)
	}
	r.js = js
	return r, nil
}

// encode is the record of a. The body is what protojson with UseProtoNames
// writes (less its optional whitespace), encoded by hand because
// protojson's reflection cost the deliverer ~6% of its CPU. What the hand
// encoder refuses — a string that is not valid UTF-8, a started_at outside
// google.protobuf.Timestamp's range — goes to protojson, which refuses it
// too and says why. Neither writes a newline.
func encode(a *hooklinev1.Attempt) ([]byte, error) {
	body, ok := appendJSON(make([]byte, 0, jsonLen(a)+1), a)
	if !ok {
		var err error
		if body, err = marshal.Marshal(a); err != nil {
			return nil, fmt.Errorf("marshal attempt: %w", err)
		}
	}
	return body, nil
}

// Record adds a to its subscription's message, publishing the message when
// it is full (or at once without Linger); it never waits for an ack.
func (r *Recorder) Record(a *hooklinev1.Attempt) {
	line, err := encode(a)
	if err != nil {
		r.failed.Inc()
		r.log.Warn("attempt record not stored", zap.String("event_id", a.GetEventId()), zap.Error(err))
		return
	}
	r.batches.Add(stream.AttemptSubject(a.GetTenant(), a.GetSubscriptionId()), a.GetEventId(), line)
}

func (r *Recorder) publish(b *linger.Batch[string]) {
	m := &nats.Msg{Subject: b.Key, Data: b.Body}
	if b.N == 1 {
		m.Header = nats.Header{stream.HeaderEventID: {b.First}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), stallBudget)
	defer cancel()
	if _, err := natsconn.PublishAsync(ctx, r.js, m, nil); err != nil {
		r.fail(m, err)
	}
}

// fail counts and logs the records of a message that was not stored.
func (r *Recorder) fail(m *nats.Msg, err error) {
	n := len(stream.AttemptRecords(m.Data))
	r.failed.Add(float64(n))
	fields := []zap.Field{zap.String("subject", m.Subject), zap.Int("records", n), zap.Error(err)}
	if id := m.Header.Get(stream.HeaderEventID); id != "" {
		fields = append(fields, zap.String("event_id", id))
	}
	r.log.Warn("attempt records not stored", fields...)
}

// Flush publishes the records still gathering, then waits until every
// record published so far is acknowledged (or failed), or ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	r.batches.Flush()
	select {
	case <-r.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush attempt records: %w", ctx.Err())
	}
}
