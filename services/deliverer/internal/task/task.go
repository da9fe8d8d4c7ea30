// Package task holds a delivery task: the envelope that rides in the
// Hookline-* headers of a DELIVERIES message (see pkg/stream's header
// contract), parsed once per message and written back on retries and dead
// letters.
package task

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/nats-io/nats.go"
)

// HeaderPrefix starts every header of the contract. Only these (and the
// W3C trace context) are copied from a task to its retry or dead letter:
// Nats-* headers (the scheduler's Nats-Scheduler, Nats-Schedule-Next, a
// Nats-Msg-Id) must never be.
const HeaderPrefix = "Hookline-"

// Task is a parsed delivery task.
type Task struct {
	EventID        string
	Tenant         string
	EventType      string
	SubscriptionID string
	// OccurredAt is the raw Hookline-Occurred-At ("" when absent).
	OccurredAt string
	// Attempt counts the attempts already made (0 for a new task).
	Attempt        int
	FirstAttemptAt time.Time
	LastAttemptAt  time.Time
	LastStatus     int
	LastError      string
	// Replay is the DEADLETTER sequence a replayed task came from.
	Replay string
	// OrderingKey is set on a task of an ordered subscription whose event
	// has a key; EventSeq is then the event's EVENTS sequence.
	OrderingKey string
	EventSeq    uint64
	// OrderingSeq is the task's number in its key's line, once attempted
	// (0 before).
	OrderingSeq uint64
	// RegistryRev is the subscriptions bucket's revision the event was
	// matched at (0 when absent or unreadable: a hint, never a reason to
	// dead-letter).
	RegistryRev uint64
	// Subject is the deliveries subject the task was consumed from.
	Subject string
	// Header is the message's header as received (read only).
	Header nats.Header
	Body   []byte
}

// ErrMalformed is wrapped by Parse's errors.
var ErrMalformed = errors.New("malformed task")

// Parse reads a task from a message of the deliver consumer. On error it
// still returns what it could read (for the dead letter) and an error
// wrapping ErrMalformed that names the header at fault.
func Parse(subject string, h nats.Header, body []byte) (Task, error) {
	t := Task{Subject: subject, Header: h, Body: body}
	subTenant, subSub := fromSubject(subject)
	t.EventID = get(h, stream.HeaderEventID)
	t.Tenant = get(h, stream.HeaderTenant)
	t.EventType = get(h, stream.HeaderEventType)
	t.SubscriptionID = get(h, stream.HeaderSubscriptionID)
	t.OccurredAt = get(h, stream.HeaderOccurredAt)
	t.LastError = get(h, stream.HeaderLastError)
	t.Replay = get(h, stream.HeaderReplay)

	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if subTenant == "" {
		bad("subject %q is not %s.<tenant>.<subscription>", subject, stream.DeliveriesPrefix)
	}
	for _, req := range []struct{ name, v string }{
		{stream.HeaderEventID, t.EventID},
		{stream.HeaderTenant, t.Tenant},
		{stream.HeaderEventType, t.EventType},
		{stream.HeaderSubscriptionID, t.SubscriptionID},
	} {
		if req.v == "" {
			bad("header %s is missing", req.name)
		}
	}
	if subTenant != "" && t.Tenant != "" && (t.Tenant != subTenant || t.SubscriptionID != subSub) {
		bad("headers %s/%s do not match the subject %q", stream.HeaderTenant, stream.HeaderSubscriptionID, subject)
		// The subject is what the publisher was allowed to write to; the
		// headers are data. The dead letter is filed (and a replay sent)
		// under the subject's tenant and subscription, never another's.
		t.Tenant, t.SubscriptionID = subTenant, subSub
	}
	// Fill what the subject knows, so that the dead letter of a task with
	// missing headers is still filed under its subscription.
	if t.Tenant == "" {
		t.Tenant = subTenant
	}
	if t.SubscriptionID == "" {
		t.SubscriptionID = subSub
	}
	if v := get(h, stream.HeaderAttempt); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			bad("header %s is not a non-negative integer", stream.HeaderAttempt)
		}
		t.Attempt = max(n, 0)
	}
	if v := get(h, stream.HeaderLastStatus); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 999 {
			bad("header %s is not an HTTP status", stream.HeaderLastStatus)
		}
		t.LastStatus = max(n, 0)
	}
	t.RegistryRev, _ = strconv.ParseUint(get(h, stream.HeaderRegistryRev), 10, 64)
	t.OrderingKey = get(h, stream.HeaderOrderingKey)
	if t.OrderingKey != "" {
		if err := stream.ValidateOrderingKey(t.OrderingKey); err != nil {
			bad("header %s %v", stream.HeaderOrderingKey, err)
		}
		n, err := strconv.ParseUint(get(h, stream.HeaderEventSeq), 10, 64)
		if err != nil || n == 0 {
			bad("header %s is not a positive integer (it must come with %s)", stream.HeaderEventSeq, stream.HeaderOrderingKey)
		}
		t.EventSeq = n
	}
	if v := get(h, stream.HeaderOrderingSeq); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			bad("header %s is not a non-negative integer", stream.HeaderOrderingSeq)
		}
		t.OrderingSeq = n
	}
	t.FirstAttemptAt = parseTime(h, stream.HeaderFirstAttemptAt, bad)
	t.LastAttemptAt = parseTime(h, stream.HeaderLastAttemptAt, bad)
	if len(errs) > 0 {
		return t, fmt.Errorf("%w: %w", ErrMalformed, errors.Join(errs...))
	}
	return t, nil
}

func parseTime(h nats.Header, name string, bad func(string, ...any)) time.Time {
	v := get(h, name)
	if v == "" {
		return time.Time{}
	}
	ts, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		bad("header %s is not RFC 3339", name)
		return time.Time{}
	}
	return ts
}

// get reads a header without allocating (nats.Header keys are
// case-sensitive; the contract spells them as in pkg/stream).
func get(h nats.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// SubjectTenant is the tenant a delivery subject names ("" when subject
// is not deliveries.<tenant>.<subscription>).
func SubjectTenant(subject string) string {
	tenant, _ := fromSubject(subject)
	return tenant
}

// fromSubject splits deliveries.<tenant>.<subscription>.
func fromSubject(subject string) (tenant, subscriptionID string) {
	rest, ok := strings.CutPrefix(subject, stream.DeliveriesPrefix+".")
	if !ok {
		return "", ""
	}
	tenant, sub, ok := strings.Cut(rest, ".")
	if !ok || tenant == "" || sub == "" || strings.Contains(sub, ".") {
		return "", ""
	}
	return tenant, sub
}

// Ordered reports whether the task waits its turn in its key's line: it
// has an ordering key and is not a replay (a replay is re-sent at once,
// with the number it had).
func (t *Task) Ordered() bool { return t.OrderingKey != "" && t.Replay == "" }

// CopyHeader returns the Hookline-* headers of h, and its traceparent and
// tracestate (a retry or a replay joins the task's trace), in a new header.
func CopyHeader(h nats.Header) nats.Header {
	out := make(nats.Header, len(h)+4)
	for k, v := range h {
		if len(v) > 0 && (strings.HasPrefix(k, HeaderPrefix) || k == stream.HeaderTraceParent || k == stream.HeaderTraceState) {
			out[k] = []string{v[0]}
		}
	}
	return out
}

// AcceptedAt is when EVENTS stored the task's event (Hookline-Accepted-At,
// which dispatch sets from the event's stream timestamp); zero when the
// header is absent or unreadable.
func (t *Task) AcceptedAt() time.Time {
	at, err := time.Parse(time.RFC3339Nano, get(t.Header, stream.HeaderAcceptedAt))
	if err != nil {
		return time.Time{}
	}
	return at
}

// FormatTime is the contract's time format.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// Set writes one header value (replacing any other).
func Set(h nats.Header, key, value string) { h[key] = []string{value} }

// NewHeader is the header of a new task of an event for a subscription, as
// dispatch publishes it (Nats-Msg-Id is set by the publisher).
func NewHeader(eventID, tenant, eventType, occurredAt, subscriptionID string) nats.Header {
	return nats.Header{
		stream.HeaderEventID:        {eventID},
		stream.HeaderTenant:         {tenant},
		stream.HeaderEventType:      {eventType},
		stream.HeaderOccurredAt:     {occurredAt},
		stream.HeaderSubscriptionID: {subscriptionID},
	}
}
