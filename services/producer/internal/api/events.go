package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/services/producer/internal/publish"
	"go.uber.org/zap"
)

// eventRequest is the body of POST /v1/events (hooklinev1.PublishEventRequest
// in JSON, with data kept as raw bytes).
type eventRequest struct {
	Tenant     string          `json:"tenant"`
	Type       string          `json:"type"`
	Data       json.RawMessage `json:"data"`
	ID         string          `json:"id"`
	OccurredAt string          `json:"occurred_at"`
	// OrderingKey: see stream.HeaderOrderingKey.
	OrderingKey string `json:"ordering_key"`
}

type batchRequest struct {
	Events []eventRequest `json:"events"`
}

type batchResponse struct {
	Events []publish.Result `json:"events"`
}

// event validates one request into an event to publish; invalid fields are
// added to f.
func (a *API) event(f *fields, req eventRequest, now time.Time) publish.Event {
	ev := publish.Event{ID: req.ID, Tenant: req.Tenant, Type: req.Type, Data: req.Data, OccurredAt: now, OrderingKey: req.OrderingKey}
	if req.ID == "" {
		ev.ID, ev.Generated = publish.NewEventID(), true
	}
	ev.Validate(a.maxEventBytes, f.add)
	if req.OccurredAt != "" {
		t, err := publish.ParseOccurredAt(req.OccurredAt)
		f.add("occurred_at", err)
		ev.OccurredAt = t
	}
	return ev
}

// publishEvent handles POST /v1/events.
func (a *API) publishEvent(w http.ResponseWriter, r *http.Request) {
	var req eventRequest
	key, raw, p := decodeIdempotent(w, r, a.maxEventBytes, &req)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var f fields
	ev := a.event(&f, req, time.Now())
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidTenant(w, r, ev.Tenant) {
		return
	}
	if max := a.pub.MaxData(); max > 0 && int64(len(ev.Data)) > max {
		writeProblem(w, problem(http.StatusRequestEntityTooLarge, TypeTooLarge,
			fmt.Sprintf("data is larger than the event stream accepts (%d bytes: the NATS server's max_payload less room for delivery headers)", max)))
		return
	}
	a.idempotent(w, r, idempotentRequest{key: key, scope: ev.Tenant, body: raw, ids: []string{ev.ID}}, func(w http.ResponseWriter, ids []string) {
		ev.ID = ids[0]
		if a.overQuota(w, r, map[string]int{ev.Tenant: 1}, ids) {
			return
		}
		res, err := a.pub.Publish(r.Context(), ev)
		if err != nil {
			a.log.Warn("event not accepted", zap.String("event_id", ev.ID), zap.String("event_type", ev.Type), zap.Error(err))
			p := unavailable("the event was not accepted: the event stream is unavailable; retry with the same id")
			p.IDs = []string{ev.ID}
			writeProblem(w, p)
			return
		}
		writeJSON(w, http.StatusAccepted, res)
	})
}

// publishBatch handles POST /v1/events/batch: all valid or nothing is
// published; all acknowledged or 503 (a retry is safe: ids deduplicate).
func (a *API) publishBatch(w http.ResponseWriter, r *http.Request) {
	var req batchRequest
	key, raw, p := decodeIdempotent(w, r, a.maxBatchBytes, &req)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var f fields
	switch {
	case len(req.Events) == 0:
		f.add("events", errors.New("must hold at least one event"))
	case len(req.Events) > a.maxBatch:
		f.add("events", fmt.Errorf("must hold at most %d events", a.maxBatch))
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	now := time.Now()
	max := a.pub.MaxData()
	evs := make([]publish.Event, len(req.Events))
	for i, er := range req.Events {
		f.prefix = fmt.Sprintf("events[%d].", i)
		evs[i] = a.event(&f, er, now)
		if max > 0 && int64(len(er.Data)) > max {
			f.add("data", fmt.Errorf("is larger than the event stream accepts (%d bytes: the NATS server's max_payload less room for delivery headers)", max))
		}
	}
	if p := f.problem(); p != nil {
		p.Detail += "; nothing of the batch was published"
		writeProblem(w, p)
		return
	}
	for _, ev := range evs {
		if forbidTenant(w, r, ev.Tenant) {
			return
		}
	}
	ids := make([]string, len(evs))
	scope := evs[0].Tenant
	for i, ev := range evs {
		ids[i] = ev.ID
		if ev.Tenant != scope {
			scope = stream.MultiTenantScope
		}
	}
	a.idempotent(w, r, idempotentRequest{key: key, scope: scope, body: raw, ids: ids}, func(w http.ResponseWriter, ids []string) {
		units := map[string]int{}
		for i := range evs {
			evs[i].ID = ids[i]
			units[evs[i].Tenant]++
		}
		if a.overQuota(w, r, units, ids) {
			return
		}
		results, err := a.pub.PublishBatch(r.Context(), evs)
		if err != nil {
			a.log.Warn("event batch not fully accepted", zap.Int("events", len(evs)), zap.Error(err))
			p := unavailable("not every event of the batch was acknowledged; " +
				"retry the same batch with the ids listed: events already stored are deduplicated")
			for _, ev := range evs {
				p.IDs = append(p.IDs, ev.ID)
			}
			writeProblem(w, p)
			return
		}
		writeJSON(w, http.StatusAccepted, batchResponse{Events: results})
	})
}

// overQuota takes the request's events from their tenants' events/s
// quotas and, when a tenant has no room left, answers 429 with
// Retry-After (whole seconds, at least 1) and the ids to retry with;
// nothing of the request is published then. A quota Redis cannot check
// lets the request through (counted and logged by the quota).
func (a *API) overQuota(w http.ResponseWriter, r *http.Request, units map[string]int, ids []string) bool {
	ok, wait := a.quota.Take(r.Context(), units)
	if ok {
		return false
	}
	a.metrics.QuotaRefused.Inc()
	secs := max(1, int(math.Ceil(wait.Seconds())))
	p := problem(http.StatusTooManyRequests, TypeRateLimited,
		fmt.Sprintf("the tenant's events/s quota has no room for these %d events now; nothing was published: retry after %d s with the same ids", sum(units), secs))
	p.IDs = ids
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	writeProblem(w, p)
	return true
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
