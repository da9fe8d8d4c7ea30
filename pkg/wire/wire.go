// Package wire is Hookline's vocabulary on the wire and in its records: why
// a delivery was dead-lettered, why a subscription was disabled, and the
// headers of a DEADLETTER entry. The producer, the deliverer, hookctl and
// the tests import these words from here; nothing else defines them.
// docs/wire-format.md and the proto comments list the same values (checked
// by this package's tests).
package wire

import (
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookline/hookline/pkg/stream"
)

// Dead-letter reasons: the Hookline-Reason header of a DEADLETTER entry, the
// reason of hookline.v1.DeadLetter and the reason label of
// hookline_dead_letters_total.
const (
	// DeadLetterAttemptsExhausted: every attempt of the retry schedule failed.
	DeadLetterAttemptsExhausted = "attempts_exhausted"
	// DeadLetterPermanentFailure: the URL is unusable (http with
	// HOOKLINE_HTTPS_ONLY, a sealed URL or header no key opens).
	DeadLetterPermanentFailure = "permanent_failure"
	// DeadLetterGone: the endpoint answered 410 (the subscription is
	// disabled with DisabledGone too).
	DeadLetterGone = "gone"
	// DeadLetterBlockedDestination: the SSRF policy refused the address.
	DeadLetterBlockedDestination = "blocked_destination"
	// DeadLetterSubscriptionDisabled: the subscription was disabled while
	// the task waited.
	DeadLetterSubscriptionDisabled = "subscription_disabled"
	// DeadLetterSubscriptionDeleted: the subscription was deleted while the
	// task waited.
	DeadLetterSubscriptionDeleted = "subscription_deleted"
	// DeadLetterRedeliveryExhausted: JetStream delivered the task more than
	// HOOKLINE_MAX_REDELIVERIES times (crashes, lost acks).
	DeadLetterRedeliveryExhausted = "redelivery_exhausted"
	// DeadLetterMalformedTask: the task's headers are not a task's.
	DeadLetterMalformedTask = "malformed_task"
	// DeadLetterInvalidPayload: the event is not valid JSON, has no type, or
	// carries an invalid id or ordering key.
	DeadLetterInvalidPayload = "invalid_payload"
)

var deadLetterReasons = []string{
	DeadLetterAttemptsExhausted, DeadLetterPermanentFailure, DeadLetterGone,
	DeadLetterBlockedDestination, DeadLetterSubscriptionDisabled, DeadLetterSubscriptionDeleted,
	DeadLetterRedeliveryExhausted, DeadLetterMalformedTask, DeadLetterInvalidPayload,
}

// DeadLetterReasons lists every dead-letter reason (a new slice each call).
func DeadLetterReasons() []string { return slices.Clone(deadLetterReasons) }

// IsDeadLetterReason reports whether r is a dead-letter reason.
func IsDeadLetterReason(r string) bool { return slices.Contains(deadLetterReasons, r) }

// Disabled reasons: hookline.v1.Subscription's disabled_reason, the reason
// of the hookline.subscription.disabled event and of
// hookline_subscriptions_disabled_total.
const (
	// DisabledManual: disabled through the API (PATCH {"disabled": true}).
	DisabledManual = "manual"
	// DisabledGone: the endpoint answered 410 Gone.
	DisabledGone = "gone"
	// DisabledFailing: every attempt failed for HOOKLINE_AUTO_DISABLE_AFTER.
	DisabledFailing = "failing"
)

var disabledReasons = []string{DisabledManual, DisabledGone, DisabledFailing}

// DisabledReasons lists every disabled reason (a new slice each call).
func DisabledReasons() []string { return slices.Clone(disabledReasons) }

// AutomaticDisabledReasons are the reasons the deliverer disables a
// subscription for by itself (and publishes hookline.subscription.disabled).
func AutomaticDisabledReasons() []string { return []string{DisabledGone, DisabledFailing} }

// DeadLetter is what a DEADLETTER entry says about a delivery, in its
// Hookline-* headers; the entry's body is the event's data.
type DeadLetter struct {
	EventID   string
	Tenant    string
	EventType string
	// OccurredAt is the event's time as its task carried it (RFC 3339).
	OccurredAt     string
	SubscriptionID string
	// Replay is the DEADLETTER sequence a replayed task came from ("" for a
	// first delivery).
	Replay string
	// Reason is one of the DeadLetter* reasons.
	Reason string
	// Attempts is the number of HTTP attempts made.
	Attempts int
	// LastStatus is the last HTTP status (0: no answer).
	LastStatus int
	LastError  string
	// FirstAttemptAt and LastAttemptAt are omitted when zero (no attempt).
	FirstAttemptAt time.Time
	LastAttemptAt  time.Time
	// DeadLetteredAt is omitted when zero (the stream's time then says it).
	DeadLetteredAt time.Time
	// OriginalSubject is where the task was consumed from (deliveries.… or,
	// for an event that could not become a task, events.…).
	OriginalSubject string
}

// FormatTime is the form of every time header: RFC 3339 in UTC, with the
// nanoseconds it has.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Msg is the DEADLETTER message of d with body as its data. header holds
// headers to carry over (the task's Hookline-* headers; it may be nil) and
// becomes the message's header: d's identity fields replace their header
// when set, and its outcome fields (reason, attempts, status, error, attempt
// times) always replace theirs, so a task's last error or attempt times
// never outlive a dead letter that has none.
func (d DeadLetter) Msg(header nats.Header, body []byte) *nats.Msg {
	h := header
	if h == nil {
		h = nats.Header{}
	}
	one := func(k, v string) { h[k] = []string{v} }
	setIf := func(k, v string) {
		if v != "" {
			one(k, v)
		}
	}
	setIf(stream.HeaderEventID, d.EventID)
	setIf(stream.HeaderTenant, d.Tenant)
	setIf(stream.HeaderEventType, d.EventType)
	setIf(stream.HeaderOccurredAt, d.OccurredAt)
	setIf(stream.HeaderSubscriptionID, d.SubscriptionID)
	setIf(stream.HeaderReplay, d.Replay)
	one(stream.HeaderReason, d.Reason)
	one(stream.HeaderAttempt, strconv.Itoa(d.Attempts))
	one(stream.HeaderLastStatus, strconv.Itoa(d.LastStatus))
	delete(h, stream.HeaderLastError)
	setIf(stream.HeaderLastError, d.LastError)
	for k, t := range map[string]time.Time{
		stream.HeaderFirstAttemptAt: d.FirstAttemptAt,
		stream.HeaderLastAttemptAt:  d.LastAttemptAt,
		stream.HeaderDeadLetteredAt: d.DeadLetteredAt,
	} {
		delete(h, k)
		if !t.IsZero() {
			one(k, FormatTime(t))
		}
	}
	one(stream.HeaderOriginalSubject, d.OriginalSubject)
	one(stream.HeaderMsgID, stream.DeadLetterMsgID(d.EventID, d.SubscriptionID, d.Replay))
	return &nats.Msg{
		Subject: stream.DeadLetterSubject(d.Tenant, d.SubscriptionID),
		Header:  h,
		Data:    body,
	}
}
