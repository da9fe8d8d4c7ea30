package api

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/scan"
	"github.com/hookline/hookline/pkg/subscription"
)

// Stats windows: GET /v1/subscriptions/{id}/stats?window=…
var statsWindows = map[string]time.Duration{"15m": 15 * time.Minute, "1h": time.Hour, "6h": 6 * time.Hour, "24h": 24 * time.Hour}

const defaultStatsWindow = "1h"

// StatsMaxRecords bounds what one stats answer reads: the newest attempt
// records of the window, at most this many (and the latencies of those
// in memory). A busier window is answered from its newest part,
// complete false and covered_since saying from when.
const StatsMaxRecords = 20000

// attemptsPage is how many records one read of newestAttempts takes;
// it makes at most max/attemptsPage+4 reads (each reads at most
// scan.DefaultMaxScan messages: a window of messages that hold no record
// cannot make it read on and on).
const attemptsPage = 5000

// newestAttempts calls fn with the attempt records f selects, newest
// first, at most max of them; more is true when records may be left
// unread (max reached, or the reads' bound).
func newestAttempts(ctx context.Context, js jetstream.JetStream, f attempt.Filter, max int, fn func(attempt.Record)) (more bool, err error) {
	var cursor *scan.Pos
	n := 0
	for page := 1; ; page++ {
		res, err := attempt.Page(ctx, js, f, true, cursor, min(attemptsPage, max-n))
		if err != nil {
			return false, err
		}
		for _, rec := range res.Items {
			fn(rec)
		}
		n += len(res.Items)
		if !res.More || n >= max || page == max/attemptsPage+4 {
			return res.More, nil
		}
		cursor = &res.Next
	}
}

// SubscriptionStats is GET /v1/subscriptions/{id}/stats.
type SubscriptionStats struct {
	SubscriptionID string    `json:"subscription_id"`
	Tenant         string    `json:"tenant"`
	Window         string    `json:"window" enum:"15m,1h,6h,24h"`
	Since          time.Time `json:"since" doc:"start of the window (now less the window)"`
	Until          time.Time `json:"until" doc:"when the answer was computed"`
	// Attempts counts the records read; Outcomes splits them.
	Attempts int           `json:"attempts" doc:"attempt records in the window (HTTP attempts and deferrals)"`
	Outcomes StatsOutcomes `json:"outcomes"`
	// SuccessRatio is success ÷ (success + retry + dead_letter).
	SuccessRatio *float64 `json:"success_ratio,omitempty" doc:"successful HTTP attempts ÷ HTTP attempts (absent without any)"`
	// Latency of the HTTP attempts (deferrals have none).
	LatencyP50Seconds float64    `json:"latency_p50_seconds" doc:"median attempt duration"`
	LatencyP99Seconds float64    `json:"latency_p99_seconds" doc:"99th percentile attempt duration"`
	LastSuccessAt     *time.Time `json:"last_success_at,omitempty" doc:"the newest successful attempt in the window"`
	LastFailureAt     *time.Time `json:"last_failure_at,omitempty" doc:"the newest failed attempt (retry or dead_letter) in the window"`
	LastFailureStatus *int32     `json:"last_failure_status,omitempty" doc:"its HTTP status (0: no answer)"`
	LastFailureError  string     `json:"last_failure_error,omitempty"`
	// Complete is false when the window held more than StatsMaxRecords
	// records: the figures are those of the newest, from CoveredSince.
	Complete     bool      `json:"complete" doc:"false: the window held more than 20,000 records; the figures cover its newest, from covered_since"`
	CoveredSince time.Time `json:"covered_since" doc:"start of what the figures cover"`
	// The subscription as the registry has it now (absent once deleted).
	Disabled       bool   `json:"disabled"`
	DisabledReason string `json:"disabled_reason,omitempty" doc:"manual, failing, gone"`
	MaxInFlight    uint32 `json:"max_in_flight" doc:"the subscription's in-flight cap (0: the deliverers' adaptive default)"`
	// Health is the endpoint's health now, as the deliverers keep it in
	// Redis (absent when Redis could not be read).
	Health *endpointhealth.State `json:"health,omitempty" doc:"the endpoint's health now (Redis, every deliverer replica): circuit, cool-down or Retry-After pause, failures in a row, attempts in flight"`
	// Deferrals counts the tasks deferred over the window, by reason, as
	// the deliverers count them in Redis (absent when it could not be
	// read). Deferrals are not attempt records: Outcomes.Deferred does
	// not count them.
	Deferrals *endpointhealth.Deferrals `json:"deferrals,omitempty" doc:"tasks deferred instead of attempted over the window (rate_limited, circuit_open, line_full, …), counted by the deliverers in five-minute buckets; absent when Redis could not be read"`
}

// StatsOutcomes counts attempt records by outcome.
type StatsOutcomes struct {
	Success    int `json:"success"`
	Retry      int `json:"retry"`
	DeadLetter int `json:"dead_letter"`
	Deferred   int `json:"deferred" doc:"deferrals (admission): not HTTP attempts"`
}

// subscriptionStats handles GET /v1/subscriptions/{id}/stats: counts by
// outcome, success ratio, latency and last success and failure over a
// window, from the subscription's attempt records in ATTEMPTS (its own
// subject, read newest first from now back to the window's start, at most
// StatsMaxRecords records).
func (a *API) subscriptionStats(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := subscription.ValidateID(id); err != nil {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("subscription %q not found", id)))
		return
	}
	window := defaultStatsWindow
	for k, vs := range r.URL.Query() {
		switch {
		case k != "window":
			writeProblem(w, invalid(fmt.Sprintf("unknown query parameter %s (known: window)", k)))
			return
		case len(vs) > 1:
			writeProblem(w, invalid("query parameter window is given more than once"))
			return
		}
		window = vs[0]
	}
	d, ok := statsWindows[window]
	if !ok {
		writeProblem(w, invalid(fmt.Sprintf("query parameter window must be 15m, 1h, 6h or 24h, not %q", window)))
		return
	}
	out := SubscriptionStats{SubscriptionID: id, Window: window, Complete: true}
	sub, tenant, ok := a.historyOf(w, r, id)
	if !ok {
		return
	}
	out.Tenant = tenant
	if sub != nil {
		out.Disabled, out.DisabledReason, out.MaxInFlight = sub.GetDisabled(), sub.GetDisabledReason(), sub.GetMaxInFlight()
	}
	js, ctx, cancel, ok := a.reading(w, r)
	if !ok {
		return
	}
	defer cancel()
	now := time.Now().UTC()
	out.Since, out.Until, out.CoveredSince = now.Add(-d), now, now.Add(-d)
	f := attempt.Filter{Query: attempt.Query{Tenant: out.Tenant, Subscription: id, Since: out.Since}}
	var durations []float64
	oldest := now // the oldest record read (records come newest first)
	more, err := newestAttempts(ctx, js, f, StatsMaxRecords, func(rec attempt.Record) {
		out.add(rec, &durations)
		if t := rec.Attempt.GetStartedAt(); t != nil {
			oldest = t.AsTime().UTC()
		}
	})
	if err != nil {
		a.streamError(w, "attempts", err)
		return
	}
	if more {
		// Records before these are left unread.
		out.Complete = false
		out.CoveredSince = oldest
	}
	if n := out.Outcomes.Success + out.Outcomes.Retry + out.Outcomes.DeadLetter; n > 0 {
		ratio := float64(out.Outcomes.Success) / float64(n)
		out.SuccessRatio = &ratio
	}
	out.LatencyP50Seconds, out.LatencyP99Seconds = percentile(durations, 0.50), percentile(durations, 0.99)
	if a.health != nil {
		snap, err := a.health(ctx, id, time.Now())
		st := snap.State()
		if err != nil {
			a.log.Warn("endpoint health unavailable", zap.String("subscription_id", id), zap.Error(err))
		} else {
			out.Health = &st
		}
	}
	out.Deferrals = a.readDeferrals(ctx, id, out.Since, now)
	writeJSON(w, http.StatusOK, out)
}

// add counts one record; records come newest first.
func (s *SubscriptionStats) add(rec attempt.Record, durations *[]float64) {
	a := rec.Attempt
	s.Attempts++
	var at *time.Time
	if a.GetStartedAt() != nil {
		t := a.GetStartedAt().AsTime().UTC()
		at = &t
	}
	switch a.GetOutcome() {
	case "success":
		s.Outcomes.Success++
		if s.LastSuccessAt == nil {
			s.LastSuccessAt = at
		}
	case "retry", "dead_letter":
		if a.GetOutcome() == "retry" {
			s.Outcomes.Retry++
		} else {
			s.Outcomes.DeadLetter++
		}
		if s.LastFailureAt == nil && at != nil {
			st := a.GetStatus()
			s.LastFailureAt, s.LastFailureStatus, s.LastFailureError = at, &st, a.GetError()
		}
	case "deferred":
		s.Outcomes.Deferred++
		return
	default:
		return
	}
	*durations = append(*durations, a.GetDurationSeconds())
}

// percentile is the nearest-rank p-quantile of v (0 for none); it sorts v.
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	i := int(math.Ceil(p*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}
