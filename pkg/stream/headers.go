package stream

import (
	"errors"
	"fmt"
	"strings"
)

// The header contract. Message bodies are the event's JSON data, untouched;
// the envelope rides in these headers so that `nats pub` can publish and
// `nats stream view` can read.
//
// On EVENTS (set by the producer; optional for a raw `nats pub`):
//
//	Nats-Msg-Id            <tenant>:<event id> (dedup, scoped to the
//	                       tenant: JetStream deduplicates per stream, so a
//	                       bare id would let one tenant's event suppress
//	                       another's); a bare <event id> is still read as
//	                       the event id (counted as unscoped); absent →
//	                       evt_seq_<stream seq>_<stored, unix ns> (SeqEventID)
//	Hookline-Occurred-At   RFC 3339; absent → the stream timestamp
//	Hookline-Ordering-Key  optional (ValidateOrderingKey): for a
//	                       subscription with ordered on, events of one key
//	                       are attempted one at a time in EVENTS sequence
//	                       order; absent → no ordering for the event
//	traceparent, tracestate  optional W3C trace context (lower case,
//	                       exactly: NATS header keys are case-sensitive);
//	                       with tracing on, dispatch continues the trace
//
// Tenant and type come from the subject events.<tenant>.<type…>.
//
// On DELIVERIES (one task per event × subscription):
//
//	Nats-Msg-Id                <event id>:<subscription id> (dedup)
//	Hookline-Event-Id, Hookline-Tenant, Hookline-Event-Type,
//	Hookline-Occurred-At, Hookline-Subscription-Id
//	Hookline-Attempt           attempts already made (absent: 0)
//	Hookline-First-Attempt-At  RFC 3339 of the first attempt
//	Hookline-Last-Status, Hookline-Last-Error   of the previous attempt
//	Hookline-Replay            on a task replayed from DEADLETTER: the
//	                           DEADLETTER sequence it was replayed from
//	                           (task Nats-Msg-Id <event>:<sub>:replay:<seq>)
//	Hookline-Ordering-Key      the event's ordering key, set only on tasks
//	                           of a subscription with ordered on
//	Hookline-Event-Seq         with it: the event's EVENTS sequence (its
//	                           place in publish order)
//	Hookline-Ordering-Sequence once attempted: the task's number in its
//	                           key's line (1, 2, 3, …), sent to the
//	                           receiver and kept by a dead letter so that
//	                           its replay carries the same number
//	Hookline-Test              "true" on a test delivery (POST …/test),
//	                           published by the producer straight to
//	                           deliveries.<tenant>.<subscription>
//	Hookline-Accepted-At       RFC 3339: when EVENTS stored the event (its
//	                           stream timestamp), the start of
//	                           hookline_delivery_latency_seconds
//	Hookline-Registry-Revision the subscriptions bucket's revision the event
//	                           was matched at: the task's own lookup uses a
//	                           view at least that current
//	traceparent, tracestate    with tracing on: the fan-out's span, so that
//	                           every attempt, retry and replay of the task
//	                           joins the event's trace
//
// On DEADLETTER, all of the above plus:
//
//	Hookline-Reason            why it was dead-lettered
//	Hookline-Last-Attempt-At   RFC 3339
//	Hookline-Dead-Lettered-At  RFC 3339
//	Hookline-Original-Subject  the deliveries subject it came from
//	Nats-Msg-Id                <event id>:<subscription id>:dlq, or
//	                           <event id>:<subscription id>:dlq:<replay seq>
//	                           for a replayed task that failed again
const (
	HeaderMsgID           = "Nats-Msg-Id"
	HeaderEventID         = "Hookline-Event-Id"
	HeaderTenant          = "Hookline-Tenant"
	HeaderEventType       = "Hookline-Event-Type"
	HeaderOccurredAt      = "Hookline-Occurred-At"
	HeaderSubscriptionID  = "Hookline-Subscription-Id"
	HeaderAttempt         = "Hookline-Attempt"
	HeaderFirstAttemptAt  = "Hookline-First-Attempt-At"
	HeaderLastAttemptAt   = "Hookline-Last-Attempt-At"
	HeaderLastStatus      = "Hookline-Last-Status"
	HeaderLastError       = "Hookline-Last-Error"
	HeaderReason          = "Hookline-Reason"
	HeaderDeadLetteredAt  = "Hookline-Dead-Lettered-At"
	HeaderOriginalSubject = "Hookline-Original-Subject"
	HeaderReplay          = "Hookline-Replay"
	HeaderTest            = "Hookline-Test"
	HeaderOrderingKey     = "Hookline-Ordering-Key"
	HeaderEventSeq        = "Hookline-Event-Seq"
	HeaderOrderingSeq     = "Hookline-Ordering-Sequence"
	HeaderAcceptedAt      = "Hookline-Accepted-At"
	HeaderRegistryRev     = "Hookline-Registry-Revision"
	// W3C trace context, lower case as the W3C propagators write it.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// MaxOrderingKeyLen bounds an ordering key.
const MaxOrderingKeyLen = 128

// ValidateOrderingKey checks an event's ordering key: 1 to 128 printable
// ASCII characters (space included, not at either end). It is sent to the
// receiver as a header value, so nothing else may pass.
func ValidateOrderingKey(k string) error {
	if k == "" {
		return errors.New("must not be empty")
	}
	if len(k) > MaxOrderingKeyLen {
		return fmt.Errorf("must be at most %d characters", MaxOrderingKeyLen)
	}
	if k[0] == ' ' || k[len(k)-1] == ' ' {
		return errors.New("must not start or end with a space")
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c > 0x7e {
			return errors.New("may only contain printable ASCII characters")
		}
	}
	return nil
}

// MaxEventIDLen bounds an event id.
const MaxEventIDLen = 128

// ReservedTypePrefix starts the event types Hookline publishes itself
// (hookline.subscription.disabled); tenants may not publish them.
const ReservedTypePrefix = "hookline."

// ValidateEventID checks an event id, whether a client chose it (API) or a
// platform service published it (Nats-Msg-Id): ^[A-Za-z0-9_.-]{1,128}$. It
// becomes the receiver's webhook-id, a header value and part of dedup ids.
func ValidateEventID(id string) error {
	if id == "" {
		return errors.New("must not be empty")
	}
	if len(id) > MaxEventIDLen {
		return fmt.Errorf("must be at most %d characters", MaxEventIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return errors.New("may only contain A-Z a-z 0-9 _ . -")
		}
	}
	return nil
}

// EventMsgID is the Nats-Msg-Id of an event of tenant on EVENTS: the dedup
// id scoped to the tenant. Tenants are subject tokens and hold no ':'.
func EventMsgID(tenant, eventID string) string { return tenant + ":" + eventID }

// EventIDFromMsgID reads the event id from an EVENTS message's Nats-Msg-Id
// published under tenant: the id after "<tenant>:" (scoped true), or the
// whole Nats-Msg-Id of a publisher that does not scope it (scoped false;
// its deduplication is shared with every other tenant).
func EventIDFromMsgID(tenant, msgID string) (eventID string, scoped bool) {
	if id, ok := strings.CutPrefix(msgID, tenant+":"); ok && id != "" && tenant != "" {
		return id, true
	}
	return msgID, false
}

// TaskMsgID is the dedup id of the delivery task of an event for a
// subscription.
func TaskMsgID(eventID, subscriptionID string) string {
	return eventID + ":" + subscriptionID
}

// DeadLetterMsgID is the dedup id of the dead letter of a delivery task.
// replayOf is the task's Hookline-Replay header ("" for a first delivery):
// a replayed task that fails again must not be deduplicated against the
// dead letter it was replayed from.
func DeadLetterMsgID(eventID, subscriptionID, replayOf string) string {
	id := eventID + ":" + subscriptionID + ":dlq"
	if replayOf != "" {
		id += ":" + replayOf
	}
	return id
}

// ReplayMsgID is the dedup id of a task replayed from the dead letter at
// seq: replaying the same entry twice publishes one task.
func ReplayMsgID(eventID, subscriptionID string, seq uint64) string {
	return fmt.Sprintf("%s:%s:replay:%d", eventID, subscriptionID, seq)
}
