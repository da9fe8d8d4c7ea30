package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/deadletter"
	"github.com/hookline/hookline/pkg/eventlog"
	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
	"github.com/hookline/hookline/services/producer/internal/replayjob"
)

// Replays runs replay jobs (replayjob.Manager).
type Replays interface {
	// Create and CreateEvents store job id (an existing id is returned).
	Create(ctx context.Context, id, owner string, f replayjob.Filter, rate float64) (replayjob.Job, error)
	DryRun(ctx context.Context, f replayjob.Filter, n int) (int, []deadletter.Entry, error)
	CreateEvents(ctx context.Context, id, owner string, f replayjob.Filter, mode string, rate float64) (replayjob.Job, error)
	DryRunEvents(ctx context.Context, f replayjob.Filter, mode string, n int) (int, []eventlog.Event, error)
	Get(ctx context.Context, id string) (replayjob.Job, uint64, error)
	Cancel(ctx context.Context, id string) (replayjob.Job, error)
}

var _ Replays = (*replayjob.Manager)(nil)

// createReplay is the body of POST /v1/replays: the source, the dead-letter
// filters as fields (the listing's query parameters, same syntax), a pace
// and dry_run.
type createReplay struct {
	Source         string  `json:"source" enum:"dead_letters,events" doc:"dead_letters: replay dead letters; events: back-fill one subscription from the event log"`
	SubscriptionID string  `json:"subscription_id" doc:"as the dead-letter listing's filters; required for events"`
	Mode           string  `json:"mode" enum:"missing,all" doc:"events only: missing (default; all with event_id) skips events the subscription already got, all sends every one"`
	EventID        string  `json:"event_id" doc:"events only: resend this one event (since and until are then its storage time)"`
	Tenant         string  `json:"tenant" doc:"dead_letters only"`
	Type           string  `json:"type" doc:"dead_letters only: event type filters, comma-separated (order.*, invoice.>)"`
	Reason         string  `json:"reason" doc:"dead_letters only: dead-letter reasons, comma-separated"`
	Status         string  `json:"status" doc:"dead_letters only: last HTTP status: 503, 429,503, 5xx, 0"`
	Since          string  `json:"since" doc:"RFC 3339, inclusive (events: when EVENTS stored them)"`
	Until          string  `json:"until" doc:"RFC 3339, exclusive"`
	Rate           float64 `json:"rate" doc:"most entries per second (0: as fast as the deliverers answer)"`
	DryRun         bool    `json:"dry_run" doc:"answer the count and a sample, change nothing"`
}

// ReplayJob is a replay job in the API.
type ReplayJob struct {
	ID        string           `json:"id"`
	Source    string           `json:"source"`
	State     string           `json:"state" enum:"running,done,cancelled,failed"`
	Filter    replayjob.Filter `json:"filter"`
	Mode      string           `json:"mode,omitempty" enum:"missing,all"`
	Rate      float64          `json:"rate,omitempty" doc:"the pace asked for (entries per second)"`
	Total     int              `json:"total" doc:"entries selected when the job was created"`
	Done      int              `json:"done" doc:"replayed (then removed from the dead letters)"`
	Failed    int              `json:"failed" doc:"refused by the deliverer; still dead letters"`
	Gone      int              `json:"gone" doc:"left the dead letters before their turn (replayed or purged elsewhere)"`
	Skipped   int              `json:"skipped" doc:"events the subscription already got (mode missing)"`
	Remaining int              `json:"remaining"`
	// PerSecond and ETASeconds are measured on the current runner.
	PerSecond  float64    `json:"per_second" doc:"measured entries per second"`
	ETASeconds float64    `json:"eta_seconds" doc:"time left at that pace (0 when unknown or finished)"`
	LastError  string     `json:"last_error,omitempty"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
}

// ReplayDryRun answers POST /v1/replays with dry_run.
type ReplayDryRun struct {
	DryRun bool         `json:"dry_run"`
	Count  int          `json:"count" doc:"entries a job would replay now"`
	Sample []DeadLetter `json:"sample,omitempty" doc:"dead_letters: the first (oldest) of them, at most 10"`
	Events []Event      `json:"events,omitempty" doc:"events: the first (oldest) of them, at most 10"`
}

func renderJob(j replayjob.Job) ReplayJob {
	rate, eta := j.Progress()
	return ReplayJob{ID: j.ID, Source: j.Source, State: j.State, Filter: j.Filter, Mode: j.Mode, Rate: j.Rate, Total: j.Total,
		Done: j.Done, Failed: j.Failed, Gone: j.Gone, Skipped: j.Skipped, Remaining: j.Remaining(), PerSecond: rate, ETASeconds: eta.Seconds(),
		LastError: j.LastError, CreatedAt: j.CreatedAt, UpdatedAt: j.UpdatedAt, FinishedAt: j.FinishedAt}
}

// ReplaySelection parses a job's filter with the dead-letter listing's
// code: the same fields mean the same selection.
func ReplaySelection(f replayjob.Filter) (deadletter.Selection, error) {
	q := &query{v: f.Values()}
	sel := deadLetterSelection(q)
	sel.Tenant = f.Tenant
	if p := q.problem(); p != nil {
		return deadletter.Selection{}, errors.New(p.Detail)
	}
	return sel, nil
}

const replaySample = 10

func (a *API) createReplay(w http.ResponseWriter, r *http.Request) {
	var req createReplay
	key, raw, p := decodeIdempotent(w, r, maxControlBody, &req)
	if p != nil {
		writeProblem(w, p)
		return
	}
	ir := idempotentRequest{key: key, body: raw, ids: []string{replayjob.NewJobID()}}
	var f fields
	switch req.Source {
	case replayjob.SourceDeadLetters, replayjob.SourceEvents:
	case "":
		f.add("source", errors.New(`is required: "dead_letters" or "events"`))
	default:
		f.add("source", fmt.Errorf(`must be "dead_letters" or "events", not %q`, req.Source))
	}
	if req.Rate < 0 || req.Rate > 10000 {
		f.add("rate", errors.New("must be from 0 (no pacing) to 10000 entries per second"))
	}
	if req.Source == replayjob.SourceEvents {
		a.createBackfill(w, r, req, &f, ir)
		return
	}
	if req.Mode != "" {
		f.add("mode", errors.New(`applies to source "events" only`))
	}
	if req.EventID != "" {
		f.add("event_id", errors.New(`applies to source "events" only`))
	}
	filter := replayjob.Filter{SubscriptionID: req.SubscriptionID, Tenant: req.Tenant, Type: req.Type, Reason: req.Reason,
		Status: req.Status, Since: req.Since, Until: req.Until}
	if req.Tenant != "" {
		f.tenant("tenant", req.Tenant)
	}
	if _, err := ReplaySelection(filter); err != nil {
		f.add("filter", errors.New(strings.ReplaceAll(err.Error(), "query parameter ", "")))
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidSubscription(w, r, filter.SubscriptionID) {
		return
	}
	owner := authTenant(r)
	if filter.Tenant == "" {
		filter.Tenant = owner
	} else if forbidTenant(w, r, filter.Tenant) {
		return
	}
	ir.scope = filter.Tenant
	if ir.scope == "" {
		ir.scope = stream.MultiTenantScope // an unbound token's job over every tenant
	}
	a.startReplay(w, r, ir, req.DryRun, func(ctx context.Context) (ReplayDryRun, error) {
		n, sample, err := a.replays.DryRun(ctx, filter, replaySample)
		out := ReplayDryRun{DryRun: true, Count: n, Sample: make([]DeadLetter, 0, len(sample))}
		for _, e := range sample {
			out.Sample = append(out.Sample, renderDeadLetter(e))
		}
		return out, err
	}, func(ctx context.Context, id string) (replayjob.Job, error) {
		return a.replays.Create(ctx, id, filter.Tenant, filter, req.Rate)
	})
}

// startReplay answers a replay request once per Idempotency-Key: with
// dry set, the count and sample dryRun reads (200); otherwise the job
// create starts with the request's reserved id (202, Location).
func (a *API) startReplay(w http.ResponseWriter, r *http.Request, ir idempotentRequest, dry bool,
	dryRun func(ctx context.Context) (ReplayDryRun, error), create func(ctx context.Context, id string) (replayjob.Job, error)) {
	if a.replays == nil {
		writeProblem(w, unavailable("replay jobs are not available on this producer"))
		return
	}
	a.idempotent(w, r, ir, func(w http.ResponseWriter, ids []string) {
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		defer cancel()
		if dry {
			out, err := dryRun(ctx)
			if err != nil {
				a.replayError(w, "", err)
				return
			}
			writeJSON(w, http.StatusOK, out)
			return
		}
		j, err := create(ctx, ids[0])
		if err != nil {
			a.replayError(w, "", err)
			return
		}
		w.Header().Set("Location", "/v1/replays/"+url.PathEscape(j.ID))
		writeJSON(w, http.StatusAccepted, renderJob(j))
	})
}

// job reads the {id} job; another tenant's is not found.
func (a *API) job(w http.ResponseWriter, r *http.Request) (replayjob.Job, bool) {
	id := r.PathValue("id")
	if a.replays == nil {
		writeProblem(w, unavailable("replay jobs are not available on this producer"))
		return replayjob.Job{}, false
	}
	j, _, err := a.replays.Get(r.Context(), id)
	if err == nil && (bound(r) && j.Owner != authTenant(r) || auth.CheckSubscription(r.Context(), j.Filter.SubscriptionID) != nil) {
		err = replayjob.ErrNotFound
	}
	if err != nil {
		a.replayError(w, id, err)
		return replayjob.Job{}, false
	}
	return j, true
}

// bound reports a token bound to a tenant.
func bound(r *http.Request) bool { return authTenant(r) != "" }

func (a *API) getReplay(w http.ResponseWriter, r *http.Request) {
	if j, ok := a.job(w, r); ok {
		writeJSON(w, http.StatusOK, renderJob(j))
	}
}

func (a *API) cancelReplay(w http.ResponseWriter, r *http.Request) {
	j, ok := a.job(w, r)
	if !ok {
		return
	}
	j, err := a.replays.Cancel(r.Context(), j.ID)
	if errors.Is(err, replayjob.ErrFinished) {
		writeProblem(w, problem(http.StatusConflict, TypeConflict, fmt.Sprintf("replay job %s is %s: nothing to cancel", j.ID, j.State)))
		return
	}
	if err != nil {
		a.replayError(w, j.ID, err)
		return
	}
	writeJSON(w, http.StatusOK, renderJob(j))
}

func (a *API) replayError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, replayjob.ErrNotFound) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("replay job %q not found (unknown, another tenant's, or expired a week after it ended)", id)))
		return
	}
	a.log.Error("replay job call failed", zap.String("job_id", id), zap.Error(err))
	writeProblem(w, unavailable("replay jobs are unavailable (NATS); retry"))
}

// createBackfill starts (or dry-runs) a job of source events: the
// subscription's own tenant and event types select the events.
func (a *API) createBackfill(w http.ResponseWriter, r *http.Request, req createReplay, f *fields, ir idempotentRequest) {
	mode := req.Mode
	switch mode {
	case "":
		mode = replayjob.ModeMissing
		if req.EventID != "" {
			mode = replayjob.ModeAll
		}
	case replayjob.ModeMissing, replayjob.ModeAll:
	default:
		f.add("mode", fmt.Errorf(`must be "missing" (default) or "all", not %q`, req.Mode))
	}
	if req.SubscriptionID == "" {
		f.add("subscription_id", errors.New(`is required with source "events"`))
	}
	for name, v := range map[string]string{"tenant": req.Tenant, "type": req.Type, "reason": req.Reason, "status": req.Status} {
		if v != "" {
			f.add(name, errors.New(`applies to source "dead_letters" only (an events job takes the subscription's tenant and types)`))
		}
	}
	if req.EventID != "" {
		if stream.ValidateEventID(req.EventID) != nil {
			f.add("event_id", errors.New("is not an event id ([A-Za-z0-9_.-]{1,128})"))
		}
		if req.Since != "" || req.Until != "" {
			f.add("event_id", errors.New("comes without since and until (the event's own time is the window)"))
		}
	}
	q := &query{v: url.Values{}}
	since, until := req.Since, req.Until
	q.v.Set("since", since)
	q.v.Set("until", until)
	q.window(q.time("since"), q.time("until"))
	if p := q.problem(); p != nil {
		f.add("since", errors.New(strings.ReplaceAll(p.Detail, "query parameter ", "")))
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	sub, err := a.reg.Get(r.Context(), req.SubscriptionID)
	if err == nil && hiddenSubscription(r, sub.GetTenant(), sub.GetId()) {
		err = subscription.ErrNotFound
	}
	if err != nil {
		a.registryError(w, req.SubscriptionID, err)
		return
	}
	if sub.GetDisabled() {
		writeProblem(w, problem(http.StatusConflict, TypeConflict, fmt.Sprintf("subscription %s is disabled; enable it before back-filling it", sub.GetId())))
		return
	}
	filter := replayjob.Filter{SubscriptionID: sub.GetId(), Tenant: sub.GetTenant(), Type: strings.Join(sub.GetEventTypes(), ","), Since: since, Until: until}
	if req.EventID != "" {
		// One event: the job's window is the instant EVENTS stored it.
		js, ok := a.js(w)
		if !ok {
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), readTimeout)
		ev, err := eventlog.Find(ctx, js, sub.GetTenant(), req.EventID)
		cancel()
		if errors.Is(err, eventlog.ErrNotFound) {
			writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("event %q of tenant %q not found (never published, or older than EVENTS keeps)", req.EventID, sub.GetTenant())))
			return
		}
		if err != nil {
			a.streamError(w, "the event", err)
			return
		}
		filter.EventID = ev.ID
		filter.Since = ev.ReceivedAt.UTC().Format(time.RFC3339Nano)
		filter.Until = ev.ReceivedAt.Add(time.Nanosecond).UTC().Format(time.RFC3339Nano)
	}
	ir.scope = sub.GetTenant()
	a.startReplay(w, r, ir, req.DryRun, func(ctx context.Context) (ReplayDryRun, error) {
		n, sample, err := a.replays.DryRunEvents(ctx, filter, mode, replaySample)
		out := ReplayDryRun{DryRun: true, Count: n, Events: make([]Event, 0, len(sample))}
		for _, e := range sample {
			out.Events = append(out.Events, renderEvent(e))
		}
		return out, err
	}, func(ctx context.Context, id string) (replayjob.Job, error) {
		return a.replays.CreateEvents(ctx, id, sub.GetTenant(), filter, mode, req.Rate)
	})
}
