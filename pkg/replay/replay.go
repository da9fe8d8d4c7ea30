// Package replay turns a dead letter back into a delivery task on request.
//
// The replayer (hookctl) does not publish tasks itself: it sends a Request
// naming a DEADLETTER sequence on Subject, and a deliverer (Serve) reads
// that entry from DEADLETTER, builds its task and publishes it to
// deliveries.<tenant>.<subscription>. So whoever may ask for a replay can
// only re-send what DEADLETTER holds, to the subscription it was
// dead-lettered for: never an arbitrary body (docs/security.md, "Least privilege").
package replay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/stream"
)

// Subject is where replay requests are sent; deliverers serve it in the
// queue group Queue (one of them answers each request). No stream
// captures it.
const (
	Subject = "hookline.dlq.replay"
	Queue   = "hookline-deliverer"
)

// Request asks for the replay of the dead letter stored at Seq in
// DEADLETTER.
type Request struct {
	Seq uint64 `json:"seq"`
}

// Outcomes of a request.
const (
	// Replayed: the task was published (or found published by an earlier
	// request: Duplicate) and acknowledged by DELIVERIES.
	Replayed = "replayed"
	// Gone: nothing is stored at Seq any more; nothing was published.
	Gone = "gone"
)

// Response answers a Request. Error is set, and Outcome empty, when the
// entry cannot be replayed or a NATS call failed: nothing was published.
type Response struct {
	Seq     uint64 `json:"seq"`
	Outcome string `json:"outcome,omitempty"`
	// TaskSeq is the DELIVERIES sequence of the task.
	TaskSeq   uint64 `json:"task_seq,omitempty"`
	Duplicate bool   `json:"duplicate,omitempty"`
	// Subject is where the task was published.
	Subject string `json:"subject,omitempty"`
	Error   string `json:"error,omitempty"`
	// Warning: the task was published, but the mark that makes a later
	// replay of the entry a no-op was not stored (a replay after the
	// duplicate window would deliver it again).
	Warning string `json:"warning,omitempty"`
}

// ErrNoReplayer is returned by Ask when no deliverer serves Subject.
var ErrNoReplayer = errors.New("no deliverer answers replay requests on " + Subject +
	" (a deliverer serves them: start one, then replay again)")

// RefusedError is a deliverer's refusal to replay an entry: nothing was
// published, and asking again gets the same answer.
type RefusedError struct {
	Seq    uint64
	Reason string
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("replay of seq %d refused by the deliverer: %s", e.Seq, e.Reason)
}

// Ask sends the request for seq and waits for the answer. A Response with
// Error set comes back as an error, the entry untouched.
func Ask(ctx context.Context, nc *nats.Conn, seq uint64) (Response, error) {
	req, _ := json.Marshal(Request{Seq: seq})
	m, err := nc.RequestWithContext(ctx, Subject, req)
	if errors.Is(err, nats.ErrNoResponders) {
		return Response{}, ErrNoReplayer
	}
	if err != nil {
		return Response{}, fmt.Errorf("replay request for seq %d: %w", seq, err)
	}
	var res Response
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return Response{}, fmt.Errorf("replay request for seq %d: unreadable answer: %w", seq, err)
	}
	if res.Error != "" {
		return res, &RefusedError{Seq: seq, Reason: res.Error}
	}
	if res.Seq != seq || (res.Outcome != Replayed && res.Outcome != Gone) {
		return res, fmt.Errorf("replay request for seq %d: unexpected answer (seq %d, outcome %q)", seq, res.Seq, res.Outcome)
	}
	return res, nil
}

// Replayer reads dead letters and publishes their tasks: the deliverer's
// side.
type Replayer struct {
	JS jetstream.JetStream
	// Trace (nil: none) hears each replay about to be published: it may
	// add headers to the task (a span's traceparent) and returns the
	// context to publish with and what to call with the outcome. It keeps
	// this package, which hookctl imports, free of a tracing SDK.
	Trace func(ctx context.Context, seq uint64, task *nats.Msg) (context.Context, func(Response, error))
}

// mark is a ReplaysBucket entry: Pending from just before the task is
// published until its acknowledgement is recorded with it.
type mark struct {
	Pending bool   `json:"pending,omitempty"`
	TaskSeq uint64 `json:"task_seq,omitempty"`
	Subject string `json:"subject,omitempty"`
}

// MarkKey is the ReplaysBucket key of the dead letter at seq whose task has
// Nats-Msg-Id msgID: the hash keeps an entry of a recreated DEADLETTER
// (the same seq, another letter) from reading as replayed.
func MarkKey(seq uint64, msgID string) string {
	sum := sha256.Sum256([]byte(msgID))
	return strconv.FormatUint(seq, 10) + "." + hex.EncodeToString(sum[:8])
}

// Replay publishes the task of the dead letter stored at seq and waits for
// its acknowledgement. A seq with nothing stored is Gone.
//
// Exactly once, however late: within the duplicate window DELIVERIES
// deduplicates the task by its Nats-Msg-Id; beyond it, the entry's mark in
// ReplaysBucket says it was replayed, and nothing is published again. The
// mark is created (pending) before the publish and completed after its
// ack, so a request that finds a pending mark — a concurrent one, or one
// after a replayer died between the two — publishes again: deduplicated
// within the window; after it, a second task only when the replayer died
// after the publish and before completing the mark.
func (r *Replayer) Replay(ctx context.Context, seq uint64) (res Response, err error) {
	res = Response{Seq: seq}
	if seq == 0 {
		return res, errors.New("seq 0: DEADLETTER sequences start at 1")
	}
	s, err := r.JS.Stream(ctx, stream.DeadLetter)
	if err != nil {
		return res, fmt.Errorf("look up stream %s: %w", stream.DeadLetter, err)
	}
	m, err := s.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		res.Outcome = Gone
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read %s seq %d: %w", stream.DeadLetter, seq, err)
	}
	task, err := Task(m.Subject, m.Sequence, m.Header, m.Data)
	if err != nil {
		return res, err
	}
	if r.Trace != nil {
		var done func(Response, error)
		ctx, done = r.Trace(ctx, seq, task)
		defer func() { done(res, err) }()
	}
	kv, err := r.JS.KeyValue(ctx, stream.ReplaysBucket)
	if err != nil {
		return res, fmt.Errorf("seq %d: open the replay marks (kv bucket %s): %w; nothing published", seq, stream.ReplaysBucket, err)
	}
	key := MarkKey(seq, task.Header.Get(stream.HeaderMsgID))
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		b, _ := json.Marshal(mark{Pending: true})
		if _, err := kv.Create(ctx, key, b); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return res, fmt.Errorf("seq %d: mark the replay: %w; nothing published", seq, err)
		}
	case err != nil:
		return res, fmt.Errorf("seq %d: read the replay mark: %w; nothing published", seq, err)
	default:
		var m mark
		if err := json.Unmarshal(e.Value(), &m); err != nil {
			return res, fmt.Errorf("seq %d: unreadable replay mark %s: %w; nothing published", seq, key, err)
		}
		if !m.Pending {
			res.Outcome, res.TaskSeq, res.Duplicate, res.Subject = Replayed, m.TaskSeq, true, m.Subject
			return res, nil
		}
	}
	ack, err := r.JS.PublishMsg(ctx, task, jetstream.WithExpectStream(stream.Deliveries))
	if err != nil {
		return res, fmt.Errorf("seq %d: publish task to %s: %w (the entry stays in %s)", seq, task.Subject, err, stream.DeadLetter)
	}
	res.Outcome, res.TaskSeq, res.Duplicate, res.Subject = Replayed, ack.Sequence, ack.Duplicate, task.Subject
	b, _ := json.Marshal(mark{TaskSeq: ack.Sequence, Subject: task.Subject})
	if _, err := kv.Put(ctx, key, b); err != nil {
		res.Warning = fmt.Sprintf("task published, but its replay mark %s not completed (%v): replaying seq %d again after the %s duplicate window would deliver it again",
			key, err, seq, stream.Deliveries)
	}
	return res, nil
}

// taskHeaders are copied from a dead letter onto its replayed task. The
// attempt count, first-attempt time and last status/error are not: a replay
// starts a fresh delivery (attempt 0) that keeps the event id (the receiver's
// webhook-id). An ordered event keeps its key and number: the replay is
// sent at once (not held in its key's line) under the number it had. The
// trace context is kept: the replay's attempt joins the event's trace.
var taskHeaders = []string{
	stream.HeaderEventID,
	stream.HeaderTenant,
	stream.HeaderEventType,
	stream.HeaderOccurredAt,
	stream.HeaderSubscriptionID,
	stream.HeaderTest,
	stream.HeaderOrderingKey,
	stream.HeaderEventSeq,
	stream.HeaderOrderingSeq,
	stream.HeaderTraceParent,
	stream.HeaderTraceState,
}

// Task is the delivery task that replays the dead letter stored at seq
// under subject (deadletter.<tenant>.<subscription>) with header h and body.
// Tenant and subscription come from the subject, which only the deliverer
// can publish to; headers that name others refuse the replay.
func Task(subject string, seq uint64, h nats.Header, body []byte) (*nats.Msg, error) {
	parts := strings.Split(subject, ".")
	if len(parts) != 3 || parts[0] != stream.DeadLetterPrefix || parts[1] == "" || parts[2] == "" {
		return nil, fmt.Errorf("seq %d: subject %q is not %s.<tenant>.<subscription>", seq, subject, stream.DeadLetterPrefix)
	}
	tenant, sub := parts[1], parts[2]
	eventID := h.Get(stream.HeaderEventID)
	if eventID == "" {
		return nil, fmt.Errorf("seq %d: no %s header: a task needs the event id", seq, stream.HeaderEventID)
	}
	if v := h.Get(stream.HeaderTenant); v != "" && v != tenant {
		return nil, fmt.Errorf("seq %d: header %s names another tenant than its subject %s", seq, stream.HeaderTenant, subject)
	}
	if v := h.Get(stream.HeaderSubscriptionID); v != "" && v != sub {
		return nil, fmt.Errorf("seq %d: header %s names another subscription than its subject %s", seq, stream.HeaderSubscriptionID, subject)
	}
	th := nats.Header{}
	for _, k := range taskHeaders {
		if v := h.Get(k); v != "" {
			th.Set(k, v)
		}
	}
	th.Set(stream.HeaderTenant, tenant)
	th.Set(stream.HeaderSubscriptionID, sub)
	th.Set(stream.HeaderReplay, strconv.FormatUint(seq, 10))
	th.Set(stream.HeaderMsgID, stream.ReplayMsgID(eventID, sub, seq))
	return &nats.Msg{Subject: stream.DeliverySubject(tenant, sub), Header: th, Data: body}, nil
}

// Serve answers replay requests on Subject (queue group Queue) with r until
// the subscription is closed. Each request is served within timeout; done,
// if set, sees every answer (for the caller's log).
func Serve(nc *nats.Conn, r *Replayer, timeout time.Duration, done func(Response, error)) (*nats.Subscription, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return nc.QueueSubscribe(Subject, Queue, func(m *nats.Msg) {
		var req Request
		var res Response
		var err error
		if jerr := json.Unmarshal(m.Data, &req); jerr != nil {
			err = fmt.Errorf("malformed replay request: %w", jerr)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			res, err = r.Replay(ctx, req.Seq)
			cancel()
		}
		res.Seq = req.Seq
		if err != nil {
			res = Response{Seq: req.Seq, Error: err.Error()}
		}
		if done != nil {
			done(res, err)
		}
		if m.Reply == "" {
			return
		}
		b, _ := json.Marshal(res)
		_ = m.Respond(b)
	})
}
