package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/fixture"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/api"
)

// Stats count a subscription's attempt records of the window by outcome,
// with latency percentiles and the last success and failure; another
// tenant's token sees nothing; bad parameters are 400s.
func TestSubscriptionStats(t *testing.T) {
	t.Parallel()
	e := start(t, map[string]string{"HOOKLINE_API_TOKENS": tokens()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["a"]}`)
	expect(t, sub, http.StatusCreated)
	id := sub.json(t)["id"].(string)
	empty := e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/stats", "")
	expect(t, empty, http.StatusOK)
	if m := empty.json(t); m["attempts"] != float64(0) || m["success_ratio"] != nil || m["complete"] != true || m["window"] != "1h" {
		t.Fatalf("no attempts: %s", empty.Body)
	}

	base := time.Now().Add(-10 * time.Minute)
	rec := func(i int, outcome string, status int32, d float64) *hooklinev1.Attempt {
		return &hooklinev1.Attempt{EventId: fmt.Sprintf("evt_%d", i), Tenant: "acme", SubscriptionId: id, EventType: "a", Attempt: 1,
			StartedAt: timestamppb.New(base.Add(time.Duration(i) * time.Second)), DurationSeconds: d, Status: status, Outcome: outcome,
			Error: map[bool]string{true: fmt.Sprintf("HTTP %d", status)}[outcome != "success"]}
	}
	// 100 successes taking 0.01 … 1.00 s, then 3 retries, a dead letter
	// and a deferral; stored in three messages (batched records).
	var ok []*hooklinev1.Attempt
	for i := range 100 {
		ok = append(ok, rec(i, "success", 200, float64(i+1)/100))
	}
	if _, err := fixture.Attempts(ctx, e.js, ok...); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.Attempts(ctx, e.js, rec(100, "retry", 503, 2), rec(101, "retry", 503, 2), rec(102, "retry", 500, 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := fixture.Attempts(ctx, e.js, rec(103, "dead_letter", 410, 3), rec(104, "deferred", 0, 0)); err != nil {
		t.Fatal(err)
	}
	// Another subscription's records are not counted.
	if _, err := fixture.Attempts(ctx, e.js, &hooklinev1.Attempt{EventId: "x", Tenant: "acme", SubscriptionId: "sub_OTHER", Outcome: "retry", Status: 500}); err != nil {
		t.Fatal(err)
	}

	r := e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/stats?window=24h", "")
	expect(t, r, http.StatusOK)
	var got api.SubscriptionStats
	decodeJSON(t, r.Body, &got)
	want := api.StatsOutcomes{Success: 100, Retry: 3, DeadLetter: 1, Deferred: 1}
	if got.Attempts != 105 || got.Outcomes != want || got.Window != "24h" || !got.Complete {
		t.Fatalf("stats %+v, want 105 attempts %+v, complete", got, want)
	}
	if got.SuccessRatio == nil || *got.SuccessRatio != 100.0/104 {
		t.Fatalf("success ratio %v, want 100/104", got.SuccessRatio)
	}
	// 104 HTTP attempts: the median is the 52nd duration (0.52 s), the
	// 99th percentile the 103rd (2 s).
	if got.LatencyP50Seconds != 0.52 || got.LatencyP99Seconds != 2 {
		t.Fatalf("p50 %v p99 %v, want 0.52 and 2", got.LatencyP50Seconds, got.LatencyP99Seconds)
	}
	if got.LastSuccessAt == nil || !got.LastSuccessAt.Equal(base.Add(99*time.Second).UTC().Truncate(time.Microsecond)) && !got.LastSuccessAt.Equal(base.Add(99*time.Second).UTC()) {
		t.Fatalf("last success %v, want %v", got.LastSuccessAt, base.Add(99*time.Second))
	}
	if got.LastFailureAt == nil || got.LastFailureStatus == nil || *got.LastFailureStatus != 410 || got.LastFailureError != "HTTP 410" {
		t.Fatalf("last failure %v %v %q, want the dead letter's 410", got.LastFailureAt, got.LastFailureStatus, got.LastFailureError)
	}

	if got.Health == nil || got.Health.Circuit != endpointhealth.Closed || got.Health.InFlight != 0 {
		t.Fatalf("health %+v, want closed with nothing in flight", got.Health)
	}
	// The deliverers' Redis state (what internal/breaker and inflight
	// write): an open circuit with 5 failures, two attempts in flight.
	until := time.Now().Add(30 * time.Second).UnixMilli()
	e.rdb.HSet(ctx, endpointhealth.BreakerKey(id), endpointhealth.FieldFailures, 5, endpointhealth.FieldOpenUntil, until,
		endpointhealth.FieldSince, time.Now().Add(-time.Minute).UnixMilli())
	e.rdb.ZAdd(ctx, endpointhealth.InFlightKey(id), redis.Z{Score: float64(until), Member: "a"}, redis.Z{Score: float64(until), Member: "b"},
		redis.Z{Score: 1, Member: "expired"})
	decodeJSON(t, e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/stats", "").Body, &got)
	if h := got.Health; h == nil || h.Circuit != endpointhealth.Open || h.Failures != 5 || h.InFlight != 2 || h.OpenUntil == nil || h.OpenUntil.UnixMilli() != until {
		t.Fatalf("health %+v, want open until %d, 5 failures, 2 in flight", got.Health, until)
	}
	if got.Deferrals == nil || got.Deferrals.Total != 0 {
		t.Fatalf("deferrals before any: %+v", got.Deferrals)
	}
	// The deliverers' deferral counts (internal/deferrals): rate-limit
	// deferrals in the window are shown by reason; one of another
	// subscription and those before the window are not.
	pipe := e.rdb.Pipeline()
	now := time.Now()
	endpointhealth.AddDeferrals(ctx, pipe, id, "rate_limited", now, 12)
	endpointhealth.AddDeferrals(ctx, pipe, id, "line_full", now.Add(-40*time.Minute), 3)
	endpointhealth.AddDeferrals(ctx, pipe, id, "rate_limited", now.Add(-3*time.Hour), 500)
	endpointhealth.AddDeferrals(ctx, pipe, "sub_OTHER", "rate_limited", now, 9)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	decodeJSON(t, e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/stats", "").Body, &got)
	if d := got.Deferrals; d == nil || d.Total != 15 || d.ByReason["rate_limited"] != 12 || d.ByReason["line_full"] != 3 || d.Since.After(got.Since) {
		t.Fatalf("deferrals of the hour %+v, want 12 rate_limited and 3 line_full since before %s", got.Deferrals, got.Since)
	}
	decodeJSON(t, e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/stats?window=24h", "").Body, &got)
	if d := got.Deferrals; d == nil || d.Total != 515 {
		t.Fatalf("deferrals of the day %+v, want 515", got.Deferrals)
	}

	expect(t, e.doAs(tokAdmin, "PATCH", "/v1/subscriptions/"+id, `{"disabled":true}`), http.StatusOK)
	if m := e.doAs(tokAdmin, "GET", "/v1/subscriptions/"+id+"/stats", "").json(t); m["disabled"] != true || m["disabled_reason"] != "manual" {
		t.Fatalf("disabled subscription: %v", m)
	}

	globex := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://globex.example/h","event_types":["a"]}`)
	expect(t, globex, http.StatusCreated)
	for _, tt := range []struct {
		token, path string
		status      int
	}{
		{tokAdminAcme, "/v1/subscriptions/" + globex.json(t)["id"].(string) + "/stats", 404},
		{tokPublishAcme, "/v1/subscriptions/" + id + "/stats", 403},
		{tokAdminAcme, "/v1/subscriptions/" + id + "/stats?window=2d", 400},
		{tokAdminAcme, "/v1/subscriptions/" + id + "/stats?window=1h&window=24h", 400},
		{tokAdminAcme, "/v1/subscriptions/" + id + "/stats?limit=5", 400},
	} {
		expect(t, e.doAs(tt.token, "GET", tt.path, ""), tt.status)
	}
}

// A window holding more records than one answer reads is answered from
// its newest records, complete false, covered_since saying from when.
func TestSubscriptionStatsAreBounded(t *testing.T) {
	t.Parallel()
	e := start(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub := e.do("POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["a"]}`)
	expect(t, sub, http.StatusCreated)
	id := sub.json(t)["id"].(string)
	base := time.Now().Add(-30 * time.Minute)
	const perMsg = 2000
	total := api.StatsMaxRecords + perMsg
	for m := 0; m < total/perMsg; m++ {
		batch := make([]*hooklinev1.Attempt, perMsg)
		for i := range batch {
			n := m*perMsg + i
			outcome := "retry"
			if n >= perMsg { // the oldest message alone holds failures
				outcome = "success"
			}
			batch[i] = &hooklinev1.Attempt{EventId: fmt.Sprintf("e%d", n), Tenant: "acme", SubscriptionId: id, Outcome: outcome, Status: 200,
				StartedAt: timestamppb.New(base.Add(time.Duration(n) * time.Millisecond))}
		}
		if _, err := fixture.Attempts(ctx, e.js, batch...); err != nil {
			t.Fatal(err)
		}
	}
	began := time.Now()
	r := e.do("GET", "/v1/subscriptions/"+id+"/stats", nil)
	expect(t, r, http.StatusOK)
	t.Logf("stats over %d records (of %d) in %s", api.StatsMaxRecords, total, time.Since(began))
	var got api.SubscriptionStats
	decodeJSON(t, r.Body, &got)
	if got.Complete || got.Attempts != api.StatsMaxRecords || got.Outcomes.Success != api.StatsMaxRecords || got.Outcomes.Retry != 0 {
		t.Fatalf("stats %+v: want the newest %d records only, complete false", got, api.StatsMaxRecords)
	}
	if want := base.Add(time.Duration(perMsg) * time.Millisecond).UTC(); !got.CoveredSince.Equal(want) {
		t.Fatalf("covered_since %v, want %v (the oldest record read)", got.CoveredSince, want)
	}
}

func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
