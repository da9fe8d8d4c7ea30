package wire

import (
	"net/http"
	"strconv"
	"time"
)

// Request headers the deliverer sends with every attempt, beside a
// subscription's custom headers (which they override) and the W3C
// traceparent when tracing is on. The portal shows an event's request
// from these, so what it shows is what the sender sends.
const (
	RequestHeaderID               = "Webhook-Id"
	RequestHeaderTimestamp        = "Webhook-Timestamp"
	RequestHeaderSignature        = "Webhook-Signature"
	RequestHeaderEventType        = "Hookline-Event-Type"
	RequestHeaderOccurredAt       = "Hookline-Occurred-At"
	RequestHeaderAttempt          = "Hookline-Attempt"
	RequestHeaderSubscriptionID   = "Hookline-Subscription-Id"
	RequestHeaderOrderingKey      = "Hookline-Ordering-Key"
	RequestHeaderOrderingSequence = "Hookline-Ordering-Sequence"
)

// Request is what an attempt's headers say.
type Request struct {
	// ID is the event id; Timestamp the signing time (seconds).
	ID        string
	Timestamp time.Time
	// Signature is the webhook-signature value (secret-derived: "" where
	// it must not be shown).
	Signature      string
	UserAgent      string
	EventType      string
	OccurredAt     string
	Attempt        int
	SubscriptionID string
	OrderingKey    string
	OrderingSeq    uint64
}

// SetHeaders sets r's headers on h (canonical names, one value each,
// replacing what h held under those names). Empty fields are left out.
func (r Request) SetHeaders(h http.Header) {
	h["Content-Type"] = []string{"application/json"}
	setHeader(h, "User-Agent", r.UserAgent)
	h[RequestHeaderID] = []string{r.ID}
	h[RequestHeaderTimestamp] = []string{strconv.FormatInt(r.Timestamp.Unix(), 10)}
	setHeader(h, RequestHeaderSignature, r.Signature)
	setHeader(h, RequestHeaderEventType, r.EventType)
	setHeader(h, RequestHeaderOccurredAt, r.OccurredAt)
	if r.Attempt > 0 {
		h[RequestHeaderAttempt] = []string{strconv.Itoa(r.Attempt)}
	}
	setHeader(h, RequestHeaderSubscriptionID, r.SubscriptionID)
	if r.OrderingKey != "" {
		h[RequestHeaderOrderingKey] = []string{r.OrderingKey}
		// 0: a task that never was its key's head (a replay of a follower
		// dead-lettered while it waited) has no number to send.
		if r.OrderingSeq > 0 {
			h[RequestHeaderOrderingSequence] = []string{strconv.FormatUint(r.OrderingSeq, 10)}
		}
	}
}

func setHeader(h http.Header, name, value string) {
	if value != "" {
		h[name] = []string{value}
	}
}
