// Package attempt records HTTP attempts in the ATTEMPTS stream: one message
// per attempt on attempts.<tenant>.<subscription>, the body the proto3 JSON
// of hooklinev1.Attempt (snake_case field names), header Hookline-Event-Id.
// Records are published asynchronously; a record that cannot be stored is
// logged and counted, never retried at the cost of a delivery.
package attempt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/protobuf/encoding/protojson"
)

// Recorder publishes attempt records.
type Recorder struct {
	js     jetstream.JetStream
	log    *zap.Logger
	failed prometheus.Counter
}

var marshal = protojson.MarshalOptions{UseProtoNames: true}

// maxStalls bounds how often Record retries a full async window (each try
// waits the client's stall wait, 200 ms by default) before giving up.
const maxStalls = 5

// NewRecorder builds a Recorder on its own JetStream context, whose async
// error handler counts the failures, so that no goroutine waits on a
// record's future.
func NewRecorder(nc *nats.Conn, log *zap.Logger, failed prometheus.Counter) (*Recorder, error) {
	// At most one warning per second (then one per 1000) when ATTEMPTS is
	// unavailable and every record fails.
	log = log.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 1, 1000)
	}))
	r := &Recorder{log: log, failed: failed}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(10*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			r.fail(m.Header.Get(stream.HeaderEventID), err)
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("attempt recorder: %w", err)
	}
	r.js = js
	return r, nil
}

// Message is the ATTEMPTS message of a. The body is what protojson with
// UseProtoNames writes (less its optional whitespace), encoded by hand
// because protojson's reflection cost the deliverer ~6% of its CPU. What
// the hand encoder refuses — a string that is not valid UTF-8, a started_at
// outside google.protobuf.Timestamp's range — goes to protojson, which
// refuses it too and says why.
func Message(a *hooklinev1.Attempt) (*nats.Msg, error) {
	body, ok := appendJSON(make([]byte, 0, jsonLen(a)), a)
	if !ok {
		var err error
		if body, err = marshal.Marshal(a); err != nil {
			return nil, fmt.Errorf("marshal attempt: %w", err)
		}
	}
	return &nats.Msg{
		Subject: stream.AttemptSubject(a.GetTenant(), a.GetSubscriptionId()),
		Header:  nats.Header{stream.HeaderEventID: {a.GetEventId()}},
		Data:    body,
	}, nil
}

// Record publishes a without waiting for its ack.
func (r *Recorder) Record(a *hooklinev1.Attempt) {
	m, err := Message(a)
	if err != nil {
		r.fail(a.GetEventId(), err)
		return
	}
	for range maxStalls {
		_, err = r.js.PublishMsgAsync(m)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			break
		}
	}
	if err != nil {
		r.fail(a.GetEventId(), err)
	}
}

func (r *Recorder) fail(eventID string, err error) {
	r.failed.Inc()
	r.log.Warn("attempt record not stored", zap.String("event_id", eventID), zap.Error(err))
}

// Flush waits until every record published so far is acknowledged (or
// failed), or ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	select {
	case <-r.js.PublishAsyncComplete():
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush attempt records: %w", ctx.Err())
	}
}
