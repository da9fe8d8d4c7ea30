package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/jsoncheck"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/pkg/wire"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// readTimeout bounds the NATS work of one read request.
const readTimeout = 20 * time.Second

// DeadLetter is a dead letter in the API.
type DeadLetter struct {
	Seq             uint64     `json:"seq" doc:"DEADLETTER stream sequence: the id of the dead letter"`
	EventID         string     `json:"event_id"`
	Tenant          string     `json:"tenant"`
	EventType       string     `json:"event_type"`
	SubscriptionID  string     `json:"subscription_id"`
	Reason          string     `json:"reason" enum:"@dead_letter_reasons"`
	LastStatus      int32      `json:"last_status" doc:"last HTTP status; 0: no answer"`
	LastError       string     `json:"last_error,omitempty"`
	Attempts        uint32     `json:"attempts"`
	FirstAttemptAt  *time.Time `json:"first_attempt_at,omitempty"`
	LastAttemptAt   *time.Time `json:"last_attempt_at,omitempty"`
	OccurredAt      *time.Time `json:"occurred_at,omitempty"`
	DeadLetteredAt  *time.Time `json:"dead_lettered_at,omitempty"`
	OriginalSubject string     `json:"original_subject,omitempty"`
	// ReplayOf is set on a replayed delivery that failed again.
	ReplayOf uint64 `json:"replay_of,omitempty" doc:"the DEADLETTER sequence this entry was replayed from, when a replay failed again"`
	Test     bool   `json:"test,omitempty"`
	// Data is the event body (GET of one dead letter only).
	Data json.RawMessage `json:"data,omitempty" doc:"the event's JSON data (GET /v1/dead-letters/{seq} only)"`
}

// DeadLetterPage is GET /v1/dead-letters.
type DeadLetterPage struct {
	DeadLetters []DeadLetter `json:"dead_letters"`
	NextCursor  string       `json:"next_cursor,omitempty" doc:"present when more may follow: pass it unchanged as cursor"`
}

// Attempt is one attempt record in the API.
type Attempt struct {
	Seq             uint64     `json:"seq" doc:"ATTEMPTS sequence of the message holding the record"`
	Index           int        `json:"index" doc:"position of the record in that message (records are batched)"`
	EventID         string     `json:"event_id"`
	Tenant          string     `json:"tenant"`
	EventType       string     `json:"event_type"`
	SubscriptionID  string     `json:"subscription_id"`
	Attempt         uint32     `json:"attempt"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	DurationSeconds float64    `json:"duration_seconds"`
	Status          int32      `json:"status" doc:"HTTP status; 0: no answer"`
	Outcome         string     `json:"outcome" enum:"success,retry,dead_letter"`
	ErrorClass      string     `json:"error_class,omitempty"`
	Error           string     `json:"error,omitempty"`
	ResponseExcerpt string     `json:"response_excerpt,omitempty"`
	Replay          bool       `json:"replay,omitempty"`
}

// AttemptPage is GET /v1/subscriptions/{id}/attempts.
type AttemptPage struct {
	Attempts   []Attempt `json:"attempts"`
	NextCursor string    `json:"next_cursor,omitempty" doc:"present when more may follow: pass it unchanged as cursor"`
}

// Event is a stored event in the API.
type Event struct {
	Seq         uint64          `json:"seq" doc:"EVENTS stream sequence"`
	ID          string          `json:"id"`
	Tenant      string          `json:"tenant"`
	Type        string          `json:"type"`
	OccurredAt  time.Time       `json:"occurred_at"`
	ReceivedAt  time.Time       `json:"received_at" doc:"when EVENTS stored it: what since and until filter on"`
	OrderingKey string          `json:"ordering_key,omitempty"`
	Data        json.RawMessage `json:"data,omitempty" doc:"the event's JSON data (GET /v1/events/{id} only)"`
	// Subscriptions match the event's type now (GET of one event only).
	Subscriptions []MatchingSubscription `json:"subscriptions,omitempty" doc:"the tenant's subscriptions whose filters match the type now (GET /v1/events/{id} only)"`
}

// MatchingSubscription names a subscription an event matches.
type MatchingSubscription struct {
	ID       string `json:"id"`
	URL      string `json:"url" doc:"credentials masked"`
	Disabled bool   `json:"disabled"`
	// RequestHeaders are the headers each attempt of the event to this
	// subscription carries, secrets hidden.
	RequestHeaders []RequestHeader `json:"request_headers" doc:"the headers an attempt sends (POST, the subscription's payload format as body): the signature and custom header values as REDACTED, per-attempt values noted"`
}

// RequestHeader is one header of an attempt's request.
type RequestHeader struct {
	Name  string `json:"name"`
	Value string `json:"value" doc:"REDACTED for the signature and custom headers; empty where it differs per attempt"`
	Note  string `json:"note,omitempty"`
}

// requestHeaders are the headers the deliverer sends with an attempt of
// ev to sub (pkg/wire sets them in the sender too), sorted by name: the
// signature and custom header values REDACTED (never a secret), the
// per-attempt ones with a note.
func requestHeaders(sub *hooklinev1.Subscription, ev eventlog.Event) []RequestHeader {
	h, custom := http.Header{}, map[string]bool{}
	for name := range sub.GetHeaders() {
		h[http.CanonicalHeaderKey(name)] = []string{subscription.Redacted}
		custom[http.CanonicalHeaderKey(name)] = true
	}
	wire.Request{ID: ev.ID, Signature: subscription.Redacted, UserAgent: "Hookline/<version>", EventType: ev.Type,
		OccurredAt: ev.OccurredAt.UTC().Format(time.RFC3339Nano), Attempt: 1, SubscriptionID: sub.GetId(),
		OrderingKey: ev.OrderingKey}.SetHeaders(h)
	notes := map[string]string{
		wire.RequestHeaderTimestamp:        "the attempt's time (Unix seconds)",
		wire.RequestHeaderAttempt:          "the attempt's number",
		wire.RequestHeaderSignature:        "one Standard Webhooks signature per active secret",
		"User-Agent":                       "the deliverer's version",
		wire.RequestHeaderOrderingSequence: "the event's place in its ordering key",
	}
	h[wire.RequestHeaderTimestamp] = []string{""}
	if ev.OrderingKey != "" {
		h[wire.RequestHeaderOrderingSequence] = []string{""}
	}
	out := make([]RequestHeader, 0, len(h))
	for _, name := range slices.Sorted(maps.Keys(h)) {
		note := notes[name]
		if custom[name] {
			note = "custom header (write-only)"
		}
		out = append(out, RequestHeader{Name: name, Value: h[name][0], Note: note})
	}
	return out
}

// EventPage is GET /v1/events.
type EventPage struct {
	Events     []Event `json:"events"`
	NextCursor string  `json:"next_cursor,omitempty" doc:"present when more may follow: pass it unchanged as cursor"`
}

func ptime(t interface{ AsTime() time.Time }, ok bool) *time.Time {
	if !ok {
		return nil
	}
	v := t.AsTime().UTC()
	return &v
}

func renderDeadLetter(e deadletter.Entry) DeadLetter {
	r := e.Record
	d := DeadLetter{
		Seq: r.GetSeq(), EventID: r.GetEventId(), Tenant: r.GetTenant(), EventType: r.GetEventType(),
		SubscriptionID: r.GetSubscriptionId(), Reason: r.GetReason(), LastStatus: r.GetLastStatus(),
		LastError: r.GetLastError(), Attempts: r.GetAttempts(), OriginalSubject: r.GetOriginalSubject(),
		FirstAttemptAt: ptime(r.GetFirstAttemptAt(), r.GetFirstAttemptAt() != nil),
		LastAttemptAt:  ptime(r.GetLastAttemptAt(), r.GetLastAttemptAt() != nil),
		OccurredAt:     ptime(r.GetOccurredAt(), r.GetOccurredAt() != nil),
		DeadLetteredAt: ptime(r.GetDeadLetteredAt(), r.GetDeadLetteredAt() != nil),
		Test:           e.Header.Get(stream.HeaderTest) == "true",
		Data:           jsonData(r.GetData()),
	}
	if v, ok := e.IsReplay(); ok {
		d.ReplayOf, _ = strconv.ParseUint(v, 10, 64)
	}
	return d
}

// jsonData is the body as JSON, or nil when it is empty or not JSON (an
// invalid_payload dead letter: read it with hookctl dlq show).
func jsonData(b []byte) json.RawMessage {
	if len(b) == 0 || !jsoncheck.Valid(b) {
		return nil
	}
	return json.RawMessage(b)
}

func renderAttempt(rec attempt.Record) Attempt {
	a := rec.Attempt
	return Attempt{
		Seq: rec.Seq, Index: rec.Index, EventID: a.GetEventId(), Tenant: a.GetTenant(), EventType: a.GetEventType(),
		SubscriptionID: a.GetSubscriptionId(), Attempt: a.GetAttempt(),
		StartedAt:       ptime(a.GetStartedAt(), a.GetStartedAt() != nil),
		DurationSeconds: a.GetDurationSeconds(), Status: a.GetStatus(), Outcome: a.GetOutcome(),
		ErrorClass: a.GetErrorClass(), Error: a.GetError(), ResponseExcerpt: a.GetResponseExcerpt(), Replay: a.GetReplay(),
	}
}

func renderEvent(e eventlog.Event) Event {
	return Event{Seq: e.Seq, ID: e.ID, Tenant: e.Tenant, Type: e.Type, OccurredAt: e.OccurredAt.UTC(),
		ReceivedAt: e.ReceivedAt.UTC(), OrderingKey: e.OrderingKey, Data: jsonData(e.Data)}
}

// streamError answers a failed stream read: 503, logged.
func (a *API) streamError(w http.ResponseWriter, what string, err error) {
	a.log.Error("stream read failed", zap.String("what", what), zap.Error(err))
	writeProblem(w, unavailable("could not read "+what+" from NATS; retry"))
}

func (a *API) js(w http.ResponseWriter) (jetstream.JetStream, bool) {
	if a.jetstream == nil || (a.ready != nil && !a.ready()) {
		writeProblem(w, unavailable("the producer is not connected to NATS yet; retry"))
		return nil, false
	}
	return a.jetstream, true
}

// reading starts a read of the streams for request r: the JetStream
// context, and a context that ends after readTimeout (call cancel). ok is
// false when NATS is not connected yet (answered 503).
func (a *API) reading(w http.ResponseWriter, r *http.Request) (js jetstream.JetStream, ctx context.Context, cancel context.CancelFunc, ok bool) {
	js, ok = a.js(w)
	if !ok {
		return nil, nil, nil, false
	}
	ctx, cancel = context.WithTimeout(r.Context(), readTimeout)
	return js, ctx, cancel, true
}

func (a *API) deadLetterStore(ctx context.Context, w http.ResponseWriter) (*deadletter.Store, bool) {
	js, ok := a.js(w)
	if !ok {
		return nil, false
	}
	st, err := deadletter.Open(ctx, js)
	if err != nil {
		a.streamError(w, "dead letters", err)
		return nil, false
	}
	return st, true
}

// deadLetterFilters reads hookctl's filters from the query (or, for a
// replay job, from its fields): subscription_id, tenant, type, reason,
// status, since, until.
func deadLetterSelection(q *query) deadletter.Selection {
	sel := deadletter.Selection{
		Subscription: q.str("subscription_id"),
		Types:        q.typeFilters("type"),
		Reasons:      q.list("reason"),
		Since:        q.time("since"),
		Until:        q.time("until"),
	}
	if sel.Subscription != "" {
		if err := subscription.ValidateID(sel.Subscription); err != nil {
			q.fail("query parameter subscription_id: " + err.Error())
		}
	}
	for _, r := range sel.Reasons {
		if !wire.IsDeadLetterReason(r) {
			q.fail(fmt.Sprintf("query parameter reason %q is not a dead-letter reason; known: %s", r, strings.Join(wire.DeadLetterReasons(), ", ")))
		}
	}
	if s := q.str("status"); s != "" {
		st, err := deadletter.ParseStatuses(s)
		if err != nil {
			q.fail(strings.Replace(err.Error(), "--status", "query parameter status", 1))
		}
		sel.Statuses = st
	}
	q.window(sel.Since, sel.Until)
	return sel
}

func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	q := newQuery(r, "subscription_id", "tenant", "type", "reason", "status", "since", "until")
	tenant, ok := listTenant(w, r, q)
	if !ok {
		return
	}
	sel := deadLetterSelection(q)
	sel.Tenant = tenant
	limit, desc, cursor := q.page(listDeadLetters)
	if p := q.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidSubscription(w, r, sel.Subscription) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	st, ok := a.deadLetterStore(ctx, w)
	if !ok {
		return
	}
	res, err := st.Page(ctx, sel, desc, cursor, limit)
	if err != nil {
		a.streamError(w, "dead letters", err)
		return
	}
	pageJSON(w, "dead_letters", res.Items, listDeadLetters, desc, res, func(e deadletter.Entry) any { return renderDeadLetter(e) })
}

// deadLetter reads the dead letter of the {seq} path value, answering 404
// for one that is not stored or belongs to a tenant the token may not see.
func (a *API) deadLetter(ctx context.Context, w http.ResponseWriter, r *http.Request) (*deadletter.Store, deadletter.Entry, bool) {
	raw := r.PathValue("seq")
	seq, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || seq == 0 {
		writeProblem(w, invalid(fmt.Sprintf("dead-letter seq %q must be a positive whole number (the seq of a listed dead letter)", raw)))
		return nil, deadletter.Entry{}, false
	}
	st, ok := a.deadLetterStore(ctx, w)
	if !ok {
		return nil, deadletter.Entry{}, false
	}
	e, err := st.Get(ctx, seq)
	if errors.Is(err, deadletter.ErrNotFound) || (err == nil && hiddenSubscription(r, e.Record.GetTenant(), e.Record.GetSubscriptionId())) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("dead letter %d not found (replayed, purged, expired, or never stored)", seq)))
		return nil, deadletter.Entry{}, false
	}
	if err != nil {
		a.streamError(w, "the dead letter", err)
		return nil, deadletter.Entry{}, false
	}
	return st, e, true
}

func (a *API) getDeadLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	if _, e, ok := a.deadLetter(ctx, w, r); ok {
		writeJSON(w, http.StatusOK, renderDeadLetter(e))
	}
}

func (a *API) deleteDeadLetter(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	st, e, ok := a.deadLetter(ctx, w, r)
	if !ok {
		return
	}
	err := st.Delete(ctx, e.Record.GetSeq())
	if errors.Is(err, deadletter.ErrNotFound) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("dead letter %d not found (replayed or purged meanwhile)", e.Record.GetSeq())))
		return
	}
	if err != nil {
		a.streamError(w, "the dead letter", err)
		return
	}
	a.log.Info("dead letter purged", zap.Uint64("dead_letter_seq", e.Record.GetSeq()), zap.String("subscription_id", e.Record.GetSubscriptionId()))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) listAttempts(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := subscription.ValidateID(id); err != nil {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("subscription %q not found", id)))
		return
	}
	if auth.CheckSubscription(r.Context(), id) != nil {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("subscription %q not found", id)))
		return
	}
	q := newQuery(r, "since", "until", "outcome", "status", "event_id", "type")
	f := attempt.Filter{Query: attempt.Query{Subscription: id, EventID: q.str("event_id"), Since: q.time("since"), Until: q.time("until")}, Types: q.typeFilters("type")}
	q.window(f.Since, f.Until)
	f.Outcomes = q.list("outcome")
	for _, o := range f.Outcomes {
		if !slices.Contains(attempt.Outcomes, o) {
			q.fail(fmt.Sprintf("query parameter outcome %q: want %s", o, strings.Join(attempt.Outcomes, ", ")))
		}
	}
	if s := q.str("status"); s != "" {
		st, err := deadletter.ParseStatuses(s)
		if err != nil {
			q.fail(strings.Replace(err.Error(), "--status", "query parameter status", 1))
		}
		f.Statuses = st
	}
	if f.EventID != "" && stream.ValidateEventID(f.EventID) != nil {
		q.fail("query parameter event_id is not an event id ([A-Za-z0-9_.-]{1,128})")
	}
	limit, desc, cursor := q.page(listAttempts)
	if p := q.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	_, tenant, ok := a.historyOf(w, r, id)
	if !ok {
		return
	}
	f.Tenant = tenant
	js, ctx, cancel, ok := a.reading(w, r)
	if !ok {
		return
	}
	defer cancel()
	res, err := attempt.Page(ctx, js, f, desc, cursor, limit)
	if err != nil {
		a.streamError(w, "attempts", err)
		return
	}
	pageJSON(w, "attempts", res.Items, listAttempts, desc, res, func(rec attempt.Record) any { return renderAttempt(rec) })
}

func (a *API) listEvents(w http.ResponseWriter, r *http.Request) {
	if forbidLimited(w, r, "read the tenant's event log") {
		return
	}
	q := newQuery(r, "tenant", "type", "since", "until")
	tenant, ok := listTenant(w, r, q)
	if !ok {
		return
	}
	f := eventlog.Filter{Tenant: tenant, Types: q.typeFilters("type"), Since: q.time("since"), Until: q.time("until")}
	q.window(f.Since, f.Until)
	limit, desc, cursor := q.page(listEvents)
	if p := q.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	js, ctx, cancel, ok := a.reading(w, r)
	if !ok {
		return
	}
	defer cancel()
	res, err := eventlog.Page(ctx, js, f, desc, cursor, limit)
	if err != nil {
		a.streamError(w, "events", err)
		return
	}
	pageJSON(w, "events", res.Items, listEvents, desc, res, func(e eventlog.Event) any { return renderEvent(e) })
}

// findEvent reads the event of the {id} path value (and ?tenant=),
// answering 400, 404 or 503 itself when it cannot.
func (a *API) findEvent(w http.ResponseWriter, r *http.Request) (eventlog.Event, bool) {
	id := r.PathValue("id")
	q := newQuery(r, "tenant")
	tenant := q.str("tenant")
	if tenant == "" {
		tenant = authTenant(r)
	}
	switch {
	case tenant == "":
		q.fail("query parameter tenant is required (event ids are unique per tenant)")
	case subscription.ValidateTenant(tenant) != nil:
		q.fail("query parameter tenant: " + subscription.ValidateTenant(tenant).Error())
	}
	if p := q.problem(); p != nil {
		writeProblem(w, p)
		return eventlog.Event{}, false
	}
	notFound := problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("event %q of tenant %q not found (never published, or older than EVENTS keeps)", id, tenant))
	if stream.ValidateEventID(id) != nil {
		writeProblem(w, notFound)
		return eventlog.Event{}, false
	}
	if hiddenTenant(r, tenant) {
		writeProblem(w, notFound)
		return eventlog.Event{}, false
	}
	js, ctx, cancel, ok := a.reading(w, r)
	if !ok {
		return eventlog.Event{}, false
	}
	defer cancel()
	ev, err := eventlog.Find(ctx, js, tenant, id)
	if errors.Is(err, eventlog.ErrNotFound) {
		writeProblem(w, notFound)
		return eventlog.Event{}, false
	}
	if err != nil {
		a.streamError(w, "the event", err)
		return eventlog.Event{}, false
	}
	return ev, true
}

func (a *API) getEvent(w http.ResponseWriter, r *http.Request) {
	ev, ok := a.findEvent(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	out := renderEvent(ev)
	if a.matching != nil {
		subs, err := a.matching(ctx, ev.Tenant, ev.Type)
		if err != nil {
			a.registryError(w, "", err)
			return
		}
		subs = slices.DeleteFunc(subs, func(s *hooklinev1.Subscription) bool { return hiddenSubscription(r, s.GetTenant(), s.GetId()) })
		if len(subs) == 0 && auth.SubscriptionLimited(r.Context()) {
			// Not matched by the session's subscriptions now: shown only
			// when one of them had it delivered.
			states, err := deliverystate.Read(ctx, a.jetstream, ev.Tenant, ev.ID, ev.ReceivedAt)
			if err != nil {
				a.streamError(w, "delivery states", err)
				return
			}
			if !slices.ContainsFunc(slices.Collect(maps.Keys(states)), func(id string) bool { return auth.CheckSubscription(r.Context(), id) == nil }) {
				writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("event %q of tenant %q not found (never published, or older than EVENTS keeps)", ev.ID, ev.Tenant)))
				return
			}
		}
		out.Subscriptions = make([]MatchingSubscription, 0, len(subs))
		for _, s := range subs {
			u, _ := subscription.MaskURL(s.GetUrl())
			out.Subscriptions = append(out.Subscriptions, MatchingSubscription{ID: s.GetId(), URL: u, Disabled: s.GetDisabled(),
				RequestHeaders: requestHeaders(s, ev)})
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// EventDeliveries is GET /v1/events/{id}/deliveries.
type EventDeliveries struct {
	EventID    string                `json:"event_id"`
	Tenant     string                `json:"tenant"`
	Deliveries []deliverystate.State `json:"deliveries" doc:"one per subscription the event went to, and pending for each subscription it matches now that existed when it was stored and has no outcome yet"`
}

func (a *API) eventDeliveries(w http.ResponseWriter, r *http.Request) {
	ev, ok := a.findEvent(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
	defer cancel()
	states, err := deliverystate.Read(ctx, a.jetstream, ev.Tenant, ev.ID, ev.ReceivedAt)
	if err != nil {
		a.streamError(w, "delivery states", err)
		return
	}
	if a.matching != nil {
		subs, err := a.matching(ctx, ev.Tenant, ev.Type)
		if err != nil {
			a.registryError(w, "", err)
			return
		}
		for _, s := range subs {
			if _, seen := states[s.GetId()]; seen || (s.GetCreatedAt() != nil && s.GetCreatedAt().AsTime().After(ev.ReceivedAt)) {
				continue
			}
			states[s.GetId()] = deliverystate.State{SubscriptionID: s.GetId(), State: deliverystate.Pending}
		}
	}
	maps.DeleteFunc(states, func(id string, _ deliverystate.State) bool { return hiddenSubscription(r, ev.Tenant, id) })
	if len(states) == 0 && auth.SubscriptionLimited(r.Context()) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("event %q of tenant %q not found (never published, or older than EVENTS keeps)", ev.ID, ev.Tenant)))
		return
	}
	out := EventDeliveries{EventID: ev.ID, Tenant: ev.Tenant, Deliveries: make([]deliverystate.State, 0, len(states))}
	for _, s := range states {
		out.Deliveries = append(out.Deliveries, s)
	}
	slices.SortFunc(out.Deliveries, func(x, y deliverystate.State) int { return strings.Compare(x.SubscriptionID, y.SubscriptionID) })
	writeJSON(w, http.StatusOK, out)
}

// Matching returns the subscriptions of tenant whose filters match
// eventType now.
type Matching func(ctx context.Context, tenant, eventType string) ([]*hooklinev1.Subscription, error)

// historyOf finds the subscription whose history (attempt records) a
// request reads, and the tenant to read it under. A subscription of another
// tenant is not found; a deleted one (sub nil) keeps its history, read under
// the caller's tenant (every tenant for an unbound token). ok is false when
// an answer was written.
func (a *API) historyOf(w http.ResponseWriter, r *http.Request, id string) (sub *hooklinev1.Subscription, tenant string, ok bool) {
	sub, err := a.reg.Get(r.Context(), id)
	switch {
	case err == nil && hiddenTenant(r, sub.GetTenant()):
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("subscription %q not found", id)))
		return nil, "", false
	case err == nil:
		return sub, sub.GetTenant(), true
	case errors.Is(err, subscription.ErrNotFound):
		return nil, authTenant(r), true
	default:
		a.registryError(w, id, err)
		return nil, "", false
	}
}
