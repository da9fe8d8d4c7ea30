package policy_test

import (
	"slices"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/policy"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

var env = policy.Environment{RetrySchedule: []time.Duration{0, 5 * time.Second}, AttemptTimeout: 15 * time.Second, AutoDisableAfter: 120 * time.Hour}

func TestResolveTakesTheFirstLevelThatSetsAValue(t *testing.T) {
	t.Parallel()
	ten := &hooklinev1.Tenant{Tenant: "acme", Defaults: &hooklinev1.DeliveryPolicy{
		RetrySchedule: []string{"0s", "1m"}, AttemptTimeout: "10s", MaxInFlight: 5, RateLimitPerSecond: 2, RateLimitBurst: 4,
	}}
	tests := []struct {
		name       string
		tenant     *hooklinev1.Tenant
		sub        *hooklinev1.Subscription
		schedule   []time.Duration
		scheduleAt string
		timeout    time.Duration
		timeoutAt  string
		disableAt  string
		rate       policy.Rate
		rateAt     string
		inFlightAt string
		format     string
	}{
		{"environment only", nil, &hooklinev1.Subscription{}, env.RetrySchedule, "environment", 15 * time.Second, "environment", "environment", policy.Rate{}, "environment", "environment", "raw"},
		{"tenant defaults", ten, &hooklinev1.Subscription{PayloadFormat: "envelope"}, []time.Duration{0, time.Minute}, "tenant", 10 * time.Second, "tenant", "environment", policy.Rate{PerSecond: 2, Burst: 4}, "tenant", "tenant", "envelope"},
		{"the subscription's own", ten, &hooklinev1.Subscription{RetrySchedule: []string{"0s", "100ms", "100ms"}, AttemptTimeout: "2s", AutoDisableAfter: "0s", RateLimitPerSecond: 1, MaxInFlight: 1},
			[]time.Duration{0, 100 * time.Millisecond, 100 * time.Millisecond}, "subscription", 2 * time.Second, "subscription", "subscription", policy.Rate{PerSecond: 1}, "subscription", "subscription", "raw"},
		{"an unparsable value is skipped", ten, &hooklinev1.Subscription{RetrySchedule: []string{"0s", "soon"}, AttemptTimeout: "x"},
			[]time.Duration{0, time.Minute}, "tenant", 10 * time.Second, "tenant", "environment", policy.Rate{PerSecond: 2, Burst: 4}, "tenant", "tenant", "raw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := policy.Resolve(env, tt.tenant, tt.sub)
			if !slices.Equal(e.RetrySchedule.Value, tt.schedule) || e.RetrySchedule.Source != tt.scheduleAt {
				t.Errorf("schedule %v from %s, want %v from %s", e.RetrySchedule.Value, e.RetrySchedule.Source, tt.schedule, tt.scheduleAt)
			}
			if e.AttemptTimeout.Value != tt.timeout || e.AttemptTimeout.Source != tt.timeoutAt {
				t.Errorf("timeout %v", e.AttemptTimeout)
			}
			if e.AutoDisableAfter.Source != tt.disableAt {
				t.Errorf("auto-disable %v", e.AutoDisableAfter)
			}
			if e.RateLimit.Value != tt.rate || e.RateLimit.Source != tt.rateAt {
				t.Errorf("rate %v", e.RateLimit)
			}
			if e.MaxInFlight.Source != tt.inFlightAt || e.PayloadFormat.Value != tt.format {
				t.Errorf("in flight %v, format %v", e.MaxInFlight, e.PayloadFormat)
			}
		})
	}
}

// Apply writes what the tenant sets into the record, and leaves the
// environment's durations unset so that the reader's own setting applies.
func TestApplyLeavesEnvironmentDurationsUnset(t *testing.T) {
	t.Parallel()
	ten := &hooklinev1.Tenant{Defaults: &hooklinev1.DeliveryPolicy{MaxInFlight: 5, AutoDisableAfter: "1h"}}
	sub := &hooklinev1.Subscription{Id: "sub_1"}
	out := policy.Apply(policy.Resolve(env, ten, sub), sub)
	if out.GetMaxInFlight() != 5 || out.GetAutoDisableAfter() != "1h0m0s" || out.GetAttemptTimeout() != "" || len(out.GetRetrySchedule()) != 0 {
		t.Fatalf("applied %v", out)
	}
	if sub.GetMaxInFlight() != 0 {
		t.Fatal("Apply changed its argument")
	}
}
