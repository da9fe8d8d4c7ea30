package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/jsoncheck"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// EventSubject is where back-fill requests are sent: deliver the event
// stored in EVENTS at a sequence to one subscription (a replay job with
// source "events"). Deliverers serve it in the queue group Queue. As with
// dead letters, the asker names what is stored, never a body.
const EventSubject = "hookline.events.replay"

// EventRequest asks for the task of the EVENTS message at Seq for
// SubscriptionID. Job names the asking job: the task's dedup id is
// <event>:<subscription>:backfill:<job>, so asking again for the same job
// stores one task, and another job may send the event again.
type EventRequest struct {
	Seq            uint64 `json:"seq"`
	SubscriptionID string `json:"subscription_id"`
	Job            string `json:"job"`
}

// AskEvent sends a back-fill request and waits for the answer; a refusal
// is a *RefusedError, no deliverer ErrNoReplayer.
func AskEvent(ctx context.Context, nc *nats.Conn, req EventRequest) (Response, error) {
	b, _ := json.Marshal(req)
	m, err := nc.RequestWithContext(ctx, EventSubject, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return Response{}, ErrNoReplayer
	}
	if err != nil {
		return Response{}, fmt.Errorf("back-fill request for event seq %d: %w", req.Seq, err)
	}
	var res Response
	if err := json.Unmarshal(m.Data, &res); err != nil {
		return Response{}, fmt.Errorf("back-fill request for event seq %d: unreadable answer: %w", req.Seq, err)
	}
	if res.Error != "" {
		return res, &RefusedError{Seq: req.Seq, Reason: res.Error}
	}
	if res.Seq != req.Seq || (res.Outcome != Replayed && res.Outcome != Gone) {
		return res, fmt.Errorf("back-fill request for event seq %d: unexpected answer (seq %d, outcome %q)", req.Seq, res.Seq, res.Outcome)
	}
	return res, nil
}

// ReplayEvent publishes the task of the event stored at req.Seq for
// req.SubscriptionID: the subscription must exist in the registry, belong
// to the event's tenant, be enabled and match the event's type. An event
// no longer stored is Gone.
func (r *Replayer) ReplayEvent(ctx context.Context, req EventRequest) (Response, error) {
	res := Response{Seq: req.Seq}
	if req.Seq == 0 || subscription.ValidateID(req.SubscriptionID) != nil || req.Job == "" {
		return res, errors.New("a back-fill request needs seq, subscription_id and job")
	}
	s, err := r.JS.Stream(ctx, stream.Events)
	if err != nil {
		return res, fmt.Errorf("look up stream %s: %w", stream.Events, err)
	}
	m, err := s.GetMsg(ctx, req.Seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		res.Outcome = Gone
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read %s seq %d: %w", stream.Events, req.Seq, err)
	}
	tenant, typ, err := stream.ParseEventSubject(m.Subject)
	if err != nil {
		return res, fmt.Errorf("event seq %d: %w", req.Seq, err)
	}
	eventID, _ := stream.EventIDFromMsgID(tenant, m.Header.Get(stream.HeaderMsgID))
	if eventID == "" || stream.ValidateEventID(eventID) != nil {
		eventID = stream.SeqEventID(req.Seq, m.Time)
	}
	if !jsoncheck.Valid(m.Data) {
		return res, fmt.Errorf("event seq %d: the body is not JSON (it was dead-lettered invalid_payload when published)", req.Seq)
	}
	sub, err := r.subscription(ctx, tenant, req.SubscriptionID)
	if err != nil {
		return res, err
	}
	switch {
	case sub.GetDisabled():
		return res, fmt.Errorf("subscription %s is disabled: enable it first", req.SubscriptionID)
	case !subscription.MatchesAny(sub.GetEventTypes(), typ):
		return res, fmt.Errorf("subscription %s does not subscribe to %s", req.SubscriptionID, typ)
	}
	occurred := m.Header.Get(stream.HeaderOccurredAt)
	if _, err := time.Parse(time.RFC3339Nano, occurred); err != nil {
		occurred = m.Time.UTC().Format(time.RFC3339Nano)
	}
	h := nats.Header{}
	h.Set(stream.HeaderEventID, eventID)
	h.Set(stream.HeaderTenant, tenant)
	h.Set(stream.HeaderEventType, typ)
	h.Set(stream.HeaderOccurredAt, occurred)
	h.Set(stream.HeaderSubscriptionID, req.SubscriptionID)
	h.Set(stream.HeaderMsgID, stream.TaskMsgID(eventID, req.SubscriptionID)+":backfill:"+req.Job)
	task := &nats.Msg{Subject: stream.DeliverySubject(tenant, req.SubscriptionID), Header: h, Data: m.Data}
	ack, err := r.JS.PublishMsg(ctx, task, jetstream.WithExpectStream(stream.Deliveries))
	if err != nil {
		return res, fmt.Errorf("event seq %d: publish task to %s: %w", req.Seq, task.Subject, err)
	}
	res.Outcome, res.TaskSeq, res.Duplicate, res.Subject = Replayed, ack.Sequence, ack.Duplicate, task.Subject
	return res, nil
}

func (r *Replayer) subscription(ctx context.Context, tenant, id string) (*hooklinev1.Subscription, error) {
	kv, err := r.JS.KeyValue(ctx, stream.SubscriptionsBucket)
	if err != nil {
		return nil, fmt.Errorf("open the subscription registry: %w", err)
	}
	e, err := kv.Get(ctx, stream.SubscriptionKey(tenant, id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("subscription %s of tenant %s does not exist", id, tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("read subscription %s: %w", id, err)
	}
	sub, err := subscription.Unmarshal(e.Value())
	if err != nil {
		return nil, fmt.Errorf("subscription %s: unreadable record: %w", id, err)
	}
	if sub.GetTenant() != tenant || sub.GetId() != id {
		return nil, fmt.Errorf("subscription %s: its record names another tenant or id than its key", id)
	}
	return sub, nil
}

// ServeEvents answers back-fill requests on EventSubject (queue group
// Queue) like Serve.
func ServeEvents(nc *nats.Conn, r *Replayer, timeout time.Duration, done func(EventRequest, Response, error)) (*nats.Subscription, error) {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return nc.QueueSubscribe(EventSubject, Queue, func(m *nats.Msg) {
		var req EventRequest
		var res Response
		var err error
		if jerr := json.Unmarshal(m.Data, &req); jerr != nil {
			err = fmt.Errorf("malformed back-fill request: %w", jerr)
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			res, err = r.ReplayEvent(ctx, req)
			cancel()
		}
		if err != nil {
			res = Response{Seq: req.Seq, Error: err.Error()}
		}
		res.Seq = req.Seq
		if done != nil {
			done(req, res, err)
		}
		if m.Reply == "" {
			return
		}
		b, _ := json.Marshal(res)
		_ = m.Respond(b)
	})
}
