package stream

// The header contract. Message bodies are the event's JSON data, untouched;
// the envelope rides in these headers so that `nats pub` can publish and
// `nats stream view` can read.
//
// On EVENTS (set by the producer; optional for a raw `nats pub`):
//
//	Nats-Msg-Id            event id (dedup); absent → evt_seq_<stream seq>
//	Hookline-Occurred-At   RFC 3339; absent → the stream timestamp
//	Hookline-Test          "true" on a test event for one subscription
//	Hookline-Subscription-Id  with Hookline-Test: the one target
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
//	Hookline-Replay            "true" on a task replayed from DEADLETTER
//
// On DEADLETTER, all of the above plus:
//
//	Hookline-Reason            why it was dead-lettered
//	Hookline-Last-Attempt-At   RFC 3339
//	Hookline-Dead-Lettered-At  RFC 3339
//	Hookline-Original-Subject  the deliveries subject it came from
//	Nats-Msg-Id                <event id>:<subscription id>:dlq[:<replay n>]
const (
	HeaderMsgID            = "Nats-Msg-Id"
	HeaderEventID          = "Hookline-Event-Id"
	HeaderTenant           = "Hookline-Tenant"
	HeaderEventType        = "Hookline-Event-Type"
	HeaderOccurredAt       = "Hookline-Occurred-At"
	HeaderSubscriptionID   = "Hookline-Subscription-Id"
	HeaderAttempt          = "Hookline-Attempt"
	HeaderFirstAttemptAt   = "Hookline-First-Attempt-At"
	HeaderLastAttemptAt    = "Hookline-Last-Attempt-At"
	HeaderLastStatus       = "Hookline-Last-Status"
	HeaderLastError        = "Hookline-Last-Error"
	HeaderReason           = "Hookline-Reason"
	HeaderDeadLetteredAt   = "Hookline-Dead-Lettered-At"
	HeaderOriginalSubject  = "Hookline-Original-Subject"
	HeaderReplay           = "Hookline-Replay"
	HeaderTest             = "Hookline-Test"
)

// TaskMsgID is the dedup id of the delivery task of an event for a
// subscription.
func TaskMsgID(eventID, subscriptionID string) string {
	return eventID + ":" + subscriptionID
}

// DeadLetterMsgID is the dedup id of the dead letter of a delivery task.
func DeadLetterMsgID(eventID, subscriptionID string) string {
	return eventID + ":" + subscriptionID + ":dlq"
}
