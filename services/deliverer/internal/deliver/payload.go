package deliver

import (
	"encoding/json"
	"time"

	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/deliverer/internal/sender"
	"github.com/hookline/hookline/services/deliverer/internal/task"
)

// payload is the body an attempt sends: the event's data bytes as stored
// (payload_format "raw", or absent: records written before the field), or
// the Standard Webhooks envelope around them ("envelope"). The data bytes
// are never decoded and re-encoded: odd whitespace, key order and large
// numbers reach the receiver as they were published.
func payload(sub *hooklinev1.Subscription, t *task.Task, now time.Time) []byte {
	if sub.GetPayloadFormat() != subscription.PayloadEnvelope {
		return t.Body
	}
	return envelope(t.EventID, t.EventType, occurredAt(t, now), t.Body)
}

// envelope is {"id":…,"type":…,"timestamp":…,"data":<data>}, with data
// copied byte for byte (it is valid JSON: dispatch dead-letters a body
// that is not; an empty one is sent as null).
func envelope(id, typ, timestamp string, data []byte) []byte {
	b := make([]byte, 0, len(data)+len(id)+len(typ)+len(timestamp)+48)
	b = append(b, `{"id":`...)
	b = appendString(b, id)
	b = append(b, `,"type":`...)
	b = appendString(b, typ)
	b = append(b, `,"timestamp":`...)
	b = appendString(b, timestamp)
	b = append(b, `,"data":`...)
	if len(data) == 0 {
		data = []byte("null")
	}
	b = append(b, data...)
	return append(b, '}')
}

// appendString appends s as a JSON string.
func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

// occurredAt is the event's time (RFC 3339), or the attempt's when the
// task does not carry it.
func occurredAt(t *task.Task, now time.Time) string {
	if t.OccurredAt != "" {
		return t.OccurredAt
	}
	return task.FormatTime(now)
}

// request is the sender.Request of an attempt of t to sub with body.
func request(sub *hooklinev1.Subscription, t *task.Task, now time.Time, sig string, body []byte) sender.Request {
	return sender.Request{
		URL: sub.GetUrl(), ID: t.EventID, Timestamp: now, Signature: sig, Body: body,
		OrderingKey: t.OrderingKey, OrderingSeq: t.OrderingSeq,
		EventType: t.EventType, OccurredAt: occurredAt(t, now), Attempt: t.Attempt + 1,
		SubscriptionID: sub.GetId(), Headers: sub.GetHeaders(), Auth: senderAuth(sub),
		TaskHeader: t.Header, // trace context (sender/trace.go), acceptance time
	}
}
