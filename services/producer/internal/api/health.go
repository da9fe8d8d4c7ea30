package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/attempt"
	"github.com/hookline/hookline/pkg/endpointhealth"
)

// HealthReader reads what the deliverers share about an endpoint in Redis
// (endpointhealth.Read on the producer's Redis client).
type HealthReader func(ctx context.Context, subscriptionID string, now time.Time) (endpointhealth.Snapshot, error)

// DeferralReader reads a subscription's deferral counts from since to now
// (endpointhealth.ReadDeferrals on the producer's Redis client).
type DeferralReader func(ctx context.Context, subscriptionID string, since, now time.Time) (endpointhealth.Deferrals, error)

// Health answers GET /v1/subscriptions/{id}/health: the endpoint's circuit
// and attempts in flight as the deliverers share them in Redis, why it is
// disabled, and its success ratio and latency over the last hour and day
// from its attempt records.
type Health struct {
	SubscriptionID string                 `json:"subscription_id"`
	Disabled       bool                   `json:"disabled"`
	DisabledReason string                 `json:"disabled_reason,omitempty" doc:"why it is disabled: failing (auto-disabled), gone (410), by hand, …"`
	Circuit        endpointhealth.Circuit `json:"circuit"`
	InFlight       int64                  `json:"in_flight" doc:"attempts under way now, across every deliverer (unexpired in-flight leases)"`
	// MaxInFlight is the subscription's own cap; 0: the deliverers' adaptive default.
	MaxInFlight        uint32  `json:"max_in_flight" doc:"the subscription's cap; 0: the deliverers' adaptive default (HOOKLINE_DEFAULT_MAX_IN_FLIGHT up to its ceiling)"`
	RateLimitPerSecond float64 `json:"rate_limit_per_second" doc:"0: none"`
	// LiveUnavailable says why the live part (circuit, in flight) is absent.
	LiveUnavailable string         `json:"live_unavailable,omitempty" doc:"set when Redis could not be read: the circuit and in-flight fields are then zero"`
	LastHour        HealthWindow   `json:"last_hour"`
	LastDay         HealthWindow   `json:"last_day"`
	Buckets         []HealthBucket `json:"buckets" doc:"the last hour in 12 five-minute buckets, oldest first"`

	// DeferralsLastHour counts the tasks deferred instead of attempted
	// (absent when Redis could not be read).
	DeferralsLastHour *endpointhealth.Deferrals `json:"deferrals_last_hour,omitempty" doc:"tasks deferred (rate limit, open circuit, full line, …) over the last hour, by every deliverer; absent when Redis could not be read"`
}

// HealthWindow sums the attempts of a window.
type HealthWindow struct {
	Attempts     int     `json:"attempts"`
	Successes    int     `json:"successes"`
	SuccessRatio float64 `json:"success_ratio" doc:"successes / attempts; 0 without attempts"`
	// Latency quantiles of every attempt of the window, in seconds.
	LatencyP50 float64 `json:"latency_p50_seconds"`
	LatencyP95 float64 `json:"latency_p95_seconds"`
	// Sampled: more attempts were made than were read (the newest only).
	Sampled bool `json:"sampled" doc:"true when the window held more than the newest 2,000 attempts that were read"`
}

// HealthBucket is one five-minute bucket of the last hour.
type HealthBucket struct {
	Start     time.Time `json:"start"`
	Successes int       `json:"successes"`
	Failures  int       `json:"failures"`
}

// healthSample bounds the attempt records one health answer reads.
const healthSample = 2000

func (a *API) subscriptionHealth(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.lookup(w, r)
	if !ok {
		return
	}
	js, ctx, cancel, ok := a.reading(w, r)
	if !ok {
		return
	}
	defer cancel()
	now := time.Now().UTC()
	out := Health{SubscriptionID: sub.GetId(), Disabled: sub.GetDisabled(), DisabledReason: sub.GetDisabledReason(),
		MaxInFlight: sub.GetMaxInFlight(), RateLimitPerSecond: sub.GetRateLimitPerSecond()}
	if a.health == nil {
		out.LiveUnavailable = "this producer has no Redis client"
	} else if snap, err := a.health(ctx, sub.GetId(), now); err != nil {
		out.LiveUnavailable = "Redis could not be read"
	} else {
		out.Circuit, out.InFlight = snap.Circuit, snap.InFlight
	}
	out.DeferralsLastHour = a.readDeferrals(ctx, sub.GetId(), now.Add(-time.Hour), now)
	// The newest attempts of the last day, newest first.
	f := attempt.Filter{Query: attempt.Query{Tenant: sub.GetTenant(), Subscription: sub.GetId(), Since: now.Add(-24 * time.Hour)}}
	var recs []attempt.Record
	more, err := newestAttempts(ctx, js, f, healthSample, func(rec attempt.Record) { recs = append(recs, rec) })
	if err != nil {
		a.streamError(w, "attempts", err)
		return
	}
	hourAgo := now.Add(-time.Hour)
	out.Buckets = make([]HealthBucket, 12)
	for i := range out.Buckets {
		out.Buckets[i].Start = hourAgo.Add(time.Duration(i) * 5 * time.Minute)
	}
	var hour, day []attempt.Record
	for _, rec := range recs {
		t := rec.Attempt.GetStartedAt().AsTime()
		day = append(day, rec)
		if t.Before(hourAgo) {
			continue
		}
		hour = append(hour, rec)
		i := min(int(t.Sub(hourAgo)/(5*time.Minute)), 11)
		if rec.Attempt.GetOutcome() == attempt.OutcomeSuccess {
			out.Buckets[i].Successes++
		} else {
			out.Buckets[i].Failures++
		}
	}
	out.LastDay = window(day, more)
	out.LastHour = window(hour, more && len(hour) == len(day))
	writeJSON(w, http.StatusOK, out)
}

func window(recs []attempt.Record, sampled bool) HealthWindow {
	w := HealthWindow{Attempts: len(recs), Sampled: sampled}
	if len(recs) == 0 {
		return w
	}
	d := make([]float64, 0, len(recs))
	for _, rec := range recs {
		if rec.Attempt.GetOutcome() == attempt.OutcomeSuccess {
			w.Successes++
		}
		d = append(d, rec.Attempt.GetDurationSeconds())
	}
	slices.Sort(d)
	w.SuccessRatio = float64(w.Successes) / float64(len(recs))
	w.LatencyP50 = d[(len(d)-1)*50/100]
	w.LatencyP95 = d[(len(d)-1)*95/100]
	return w
}

// readDeferrals is a subscription's deferrals from since to now, or nil
// (logged) when they cannot be read.
func (a *API) readDeferrals(ctx context.Context, id string, since, now time.Time) *endpointhealth.Deferrals {
	if a.deferrals == nil {
		return nil
	}
	d, err := a.deferrals(ctx, id, since, now)
	if err != nil {
		a.log.Warn("deferral counts unavailable", zap.String("subscription_id", id), zap.Error(err))
		return nil
	}
	return &d
}
