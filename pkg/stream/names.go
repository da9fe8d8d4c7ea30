// Package stream holds every JetStream name Hookline uses — streams,
// subjects, consumers, the KV bucket, and the header contract — and Ensure,
// which creates or updates them idempotently. Every binary and test imports
// these names so they cannot drift apart.
package stream

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Streams.
const (
	// Events is the event log: limits retention with a max age.
	Events = "EVENTS"
	// Deliveries holds one task per event × subscription: work-queue
	// retention, message schedules allowed (scheduled retries).
	Deliveries = "DELIVERIES"
	// Attempts records every HTTP attempt: limits retention.
	Attempts = "ATTEMPTS"
	// DeadLetter parks deliveries that never succeeded: long max age.
	DeadLetter = "DEADLETTER"
)

// Subjects. Tokens are a tenant, a subscription id, or an event type (which
// may span several tokens).
const (
	// EventsPrefix: events.<tenant>.<type…>
	EventsPrefix = "events"
	// DeliveriesPrefix: deliveries.<tenant>.<subscription>
	DeliveriesPrefix = "deliveries"
	// RetryPrefix: retry.<subscription>.<deliveries stream seq> (or
	// d<hash> for a first attempt made from dispatch); a schedule
	// that fires into deliveries.<tenant>.<subscription>.
	RetryPrefix = "retry"
	// AttemptsPrefix: attempts.<tenant>.<subscription>
	AttemptsPrefix = "attempts"
	// DeadLetterPrefix: deadletter.<tenant>.<subscription>
	DeadLetterPrefix = "deadletter"
)

// Consumers (durable, pull).
const (
	// DispatchConsumer reads EVENTS and fans out tasks.
	DispatchConsumer = "dispatch"
	// DeliverConsumer reads deliveries.> and performs HTTP attempts.
	DeliverConsumer = "deliver"
)

// SubscriptionsBucket is the KV bucket holding the subscription registry
// (the truth). Keys are <tenant>.<subscription id>.
const SubscriptionsBucket = "hookline_subscriptions"

// TenantsBucket holds the tenant records (delivery policy defaults and
// metadata) under TenantKey, and the claims of subscription uids (unique
// per tenant) under UIDKey.
const TenantsBucket = "hookline_tenants"

// TenantKey is the key of a tenant's record: t.<tenant>.
func TenantKey(tenant string) string { return "t." + tenant }

// TenantKeys matches every tenant record.
const TenantKeys = "t.>"

// UIDKey is the key of the claim of a subscription uid of tenant, whose
// SHA-256 is uidHash (hex): u.<tenant>.<hash>. Its value is the id of the
// subscription holding the uid.
func UIDKey(tenant, uidHash string) string { return "u." + tenant + "." + uidHash }

// ReplaysBucket marks the dead letters already replayed, so that a replay
// of the same DEADLETTER entry is exactly-once beyond the duplicate window
// too. Keys are <DEADLETTER seq>.<hash of the task's Nats-Msg-Id> (a
// DEADLETTER recreated from seq 1 does not inherit the marks); entries
// live as long as a dead letter does.
const ReplaysBucket = "hookline_replays"

// ReplayJobsBucket is the KV bucket holding the delivery API's replay jobs
// (POST /v1/replays): any producer replica serves a job's state and
// resumes a job whose runner stopped. Keys are job ids.
const ReplayJobsBucket = "hookline_replay_jobs"

// ReplayJobsTTL is how long a job's record outlives its last change.
const ReplayJobsTTL = 7 * 24 * time.Hour

// IdempotencyBucket remembers the API's Idempotency-Key requests (POST
// /v1/events, /v1/events/batch, /v1/subscriptions, /v1/replays): the
// request's fingerprint and, once it succeeded, its answer, so that a
// retry with the same key gets that answer again from any producer
// replica. Keys: IdempotencyKey; entries live for the idempotency window
// (HOOKLINE_IDEMPOTENCY_WINDOW) after their last change.
const IdempotencyBucket = "hookline_idempotency"

// IdempotencyKey is the key of a tenant's Idempotency-Key whose SHA-256
// is keyHash (hex): <tenant>.<hash>. A request acting on several tenants
// (a batch an unbound token sends for more than one) is scoped
// MultiTenantScope, which no tenant name can be.
func IdempotencyKey(tenant, keyHash string) string { return tenant + "." + keyHash }

// MultiTenantScope is the IdempotencyKey scope of a request acting on
// more than one tenant (tenants start with a letter or a digit).
const MultiTenantScope = "-multi"

// EventIDsBucket marks the event ids the producer stored, so that an id
// stays a duplicate for as long as EVENTS keeps its event, not only for
// the duplicate window: one key per tenant and event id (EventIDKey),
// the event's EVENTS sequence as value, TTL = EVENTS' max age.
const EventIDsBucket = "hookline_event_ids"

// EventIDKey is the mark of an event id of tenant: <tenant>.<event id>,
// its dots written as '=' (which no event id holds).
func EventIDKey(tenant, eventID string) string {
	return tenant + "." + strings.ReplaceAll(eventID, ".", "=")
}

// DeliveriesBucket holds the delivery state of each event × subscription
// (GET /v1/events/{id}/deliveries), written by the deliverers at each
// attempt's outcome and at dead-lettering, kept as long as EVENTS keeps
// events. Keys: DeliveryStateKey.
const DeliveriesBucket = "hookline_deliveries"

// PortalRevocationsBucket holds revoked portal sessions: key s.<session
// id> for one session, t.<tenant> (value: unix ms) for every session of the
// tenant issued before that time. The producer checks both on every portal
// request. Entries outlive the longest session (PortalSessionMaxTTL).
const PortalRevocationsBucket = "hookline_portal_revocations"

// PortalSessionMaxTTL is the longest a portal session may live.
const PortalSessionMaxTTL = 24 * time.Hour

// DeliveryStateKey is the key of the delivery state of an event of tenant
// for a subscription: <tenant>.<event id>.<subscription>, the event id's
// dots written as '=' (which no event id holds) so that the keys of one
// event are exactly DeliveryStateFilter's.
func DeliveryStateKey(tenant, eventID, subscriptionID string) string {
	return tenant + "." + strings.ReplaceAll(eventID, ".", "=") + "." + subscriptionID
}

// DeliveryStateFilter matches the delivery state keys of one event.
func DeliveryStateFilter(tenant, eventID string) string {
	return tenant + "." + strings.ReplaceAll(eventID, ".", "=") + ".*"
}

// DeliveryStateBatchKey is the key of one message holding the delivery
// states of several events of tenant, all stored by EVENTS in the same
// window (a number of pkg/deliverystate's windows since the epoch): <tenant>.s/<window>.<id>,
// id unique to the message. No event id holds '/', so no DeliveryStateKey
// is one.
func DeliveryStateBatchKey(tenant string, window int64, id string) string {
	return tenant + ".s/" + strconv.FormatInt(window, 10) + "." + id
}

// DeliveryStateBatchFilter matches the batch keys of one window of tenant.
func DeliveryStateBatchFilter(tenant string, window int64) string {
	return tenant + ".s/" + strconv.FormatInt(window, 10) + ".*"
}

// EventSubject is the subject an event of tenant and type is published to.
func EventSubject(tenant, eventType string) string {
	return EventsPrefix + "." + tenant + "." + eventType
}

// ParseEventSubject splits events.<tenant>.<type…>.
func ParseEventSubject(subject string) (tenant, eventType string, err error) {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) != 3 || parts[0] != EventsPrefix || parts[1] == "" || parts[2] == "" {
		return "", "", fmt.Errorf("subject %q is not %s.<tenant>.<type>", subject, EventsPrefix)
	}
	return parts[1], parts[2], nil
}

// DeliverySubject is where the tasks of one subscription are published.
func DeliverySubject(tenant, subscriptionID string) string {
	return DeliveriesPrefix + "." + tenant + "." + subscriptionID
}

// RetrySubject is the schedule subject of a retry of the task stored at seq
// in DELIVERIES. One schedule per subject: a crash-duplicated schedule
// replaces the first instead of doubling it.
func RetrySubject(subscriptionID string, seq uint64) string {
	return fmt.Sprintf("%s.%s.%d", RetryPrefix, subscriptionID, seq)
}

// DirectRetrySubject is the schedule subject of the retry of a first
// attempt made from dispatch, before any task was stored: keyed by the
// task's dedup id, hashed (an event id may hold '.') with SHA-256, so that
// no tenant can choose two event ids whose retries share a subject. The
// schedule is published under that dedup id (TaskMsgID), so a fan-out
// redone after it finds the task already stored.
func DirectRetrySubject(eventID, subscriptionID string) string {
	sum := sha256.Sum256([]byte(TaskMsgID(eventID, subscriptionID)))
	return fmt.Sprintf("%s.%s.d%x", RetryPrefix, subscriptionID, sum[:16])
}

// AttemptSubject is where the attempt records of a subscription are
// published.
func AttemptSubject(tenant, subscriptionID string) string {
	return AttemptsPrefix + "." + tenant + "." + subscriptionID
}

// AttemptRecords splits the body of an ATTEMPTS message into its records.
// A message holds one or more attempt records of one subscription, each
// the proto3 JSON of hookline.v1.Attempt on its own line ("\n"-terminated;
// the last newline may be missing). Blank lines are skipped.
func AttemptRecords(body []byte) [][]byte {
	var out [][]byte
	for len(body) > 0 {
		line := body
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			body = nil
		}
		if len(bytes.TrimSpace(line)) > 0 {
			out = append(out, line)
		}
	}
	return out
}

// DeadLetterSubject is where a dead letter of a subscription is published.
func DeadLetterSubject(tenant, subscriptionID string) string {
	return DeadLetterPrefix + "." + tenant + "." + subscriptionID
}

// SubscriptionKey is the KV key of a subscription.
func SubscriptionKey(tenant, subscriptionID string) string {
	return tenant + "." + subscriptionID
}
