package api

import (
	"context"
	"net/http"

	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/registry"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"
)

// Tenants reads and writes tenant records (registry.Registry).
type Tenants interface {
	// Tenant is a tenant's record (nil, nil: none).
	Tenant(ctx context.Context, tenant string) (*hooklinev1.Tenant, error)
	PutTenant(ctx context.Context, tenant string, defaults *hooklinev1.DeliveryPolicy, metadata map[string]string) (*hooklinev1.Tenant, error)
}

var _ Tenants = (*registry.Registry)(nil)

// policyFields are the delivery policy fields of a request (nil: absent).
type policyFields struct {
	schedule    *[]string
	timeout     *string
	autoDisable *string
}

func (p policyFields) given() bool {
	return p.schedule != nil && len(*p.schedule) > 0 || p.timeout != nil && *p.timeout != "" || p.autoDisable != nil && *p.autoDisable != ""
}

// policy checks a request's delivery policy fields against the limits of
// this deployment (an empty value: back to the default, always valid).
// ok is false when the limits could not be read (the answer is written).
func (f *fields) policy(ctx context.Context, a *API, w http.ResponseWriter, p policyFields) bool {
	if !p.given() {
		return true
	}
	l, err := a.policyLimits(ctx)
	if err != nil {
		a.log.Warn("delivery policy limits unavailable", zap.Error(err))
		writeProblem(w, unavailable("the delivery policy cannot be checked now (the deliver consumer's AckWait is unreadable); retry"))
		return false
	}
	if p.schedule != nil && len(*p.schedule) > 0 {
		_, err := l.Schedule(*p.schedule)
		f.add("retry_schedule", err)
	}
	if p.timeout != nil && *p.timeout != "" {
		_, err := l.Timeout(*p.timeout)
		f.add("attempt_timeout", err)
	}
	if p.autoDisable != nil && *p.autoDisable != "" {
		_, err := l.AutoDisable(*p.autoDisable)
		f.add("auto_disable_after", err)
	}
	return true
}

// metadata checks a metadata map (policy.ValidateMetadata).
func (f *fields) metadata(m map[string]string) {
	f.add("metadata", policy.ValidateMetadata(m))
}

// tenantRequest is the body of PUT /v1/tenants/{tenant}: it replaces the
// tenant's defaults and metadata.
type tenantRequest struct {
	Defaults tenantDefaults    `json:"defaults" doc:"the delivery policy of the tenant's subscriptions that set none of their own"`
	Metadata map[string]string `json:"metadata" doc:"free-form labels (at most 32; keys up to 64 printable ASCII characters, values up to 512 bytes)"`
}

// tenantDefaults is hooklinev1.DeliveryPolicy in JSON; an empty field is
// unset (the environment's value applies).
type tenantDefaults struct {
	RetrySchedule      []string `json:"retry_schedule,omitempty" doc:"delay before each attempt, Go durations, the first 0s"`
	AttemptTimeout     string   `json:"attempt_timeout,omitempty" doc:"one attempt's timeout, e.g. 10s"`
	AutoDisableAfter   string   `json:"auto_disable_after,omitempty" doc:"auto-disable a subscription failing for this long (0s: never)"`
	MaxInFlight        uint32   `json:"max_in_flight,omitempty"`
	RateLimitPerSecond float64  `json:"rate_limit_per_second,omitempty"`
	RateLimitBurst     uint32   `json:"rate_limit_burst,omitempty"`
	PayloadFormat      string   `json:"payload_format,omitempty" enum:"envelope,raw" doc:"applies to subscriptions created without one, at their creation"`
}

func (a *API) getTenant(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	var f fields
	f.tenant("tenant", name)
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidTenant(w, r, name) || forbidLimited(w, r, "read tenant records") {
		return
	}
	t, err := a.tenants.Tenant(r.Context(), name)
	if err != nil {
		a.tenantError(w, name, err)
		return
	}
	a.writeTenant(w, name, t)
}

func (a *API) putTenant(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("tenant")
	var req tenantRequest
	if p := decodeJSON(w, r, maxControlBody, &req); p != nil {
		writeProblem(w, p)
		return
	}
	var f fields
	f.tenant("tenant", name)
	d := req.Defaults
	f.prefix = "defaults."
	f.limits(a, &d.MaxInFlight, &d.RateLimitPerSecond, &d.RateLimitBurst)
	if d.PayloadFormat != "" {
		f.add("payload_format", subscription.ValidatePayloadFormat(d.PayloadFormat))
	}
	if !f.policy(r.Context(), a, w, policyFields{schedule: &d.RetrySchedule, timeout: &d.AttemptTimeout, autoDisable: &d.AutoDisableAfter}) {
		return
	}
	f.prefix = ""
	f.metadata(req.Metadata)
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidTenant(w, r, name) || forbidLimited(w, r, "change tenant records") {
		return
	}
	t, err := a.tenants.PutTenant(r.Context(), name, &hooklinev1.DeliveryPolicy{
		RetrySchedule: d.RetrySchedule, AttemptTimeout: d.AttemptTimeout, AutoDisableAfter: d.AutoDisableAfter,
		MaxInFlight: d.MaxInFlight, RateLimitPerSecond: d.RateLimitPerSecond, RateLimitBurst: d.RateLimitBurst,
		PayloadFormat: d.PayloadFormat,
	}, req.Metadata)
	if err != nil {
		a.tenantError(w, name, err)
		return
	}
	a.log.Info("tenant record changed", zap.String("tenant", name))
	a.writeTenant(w, name, t)
}

// writeTenant answers a tenant's record; a tenant without one has empty
// defaults and metadata.
func (a *API) writeTenant(w http.ResponseWriter, name string, t *hooklinev1.Tenant) {
	if t == nil {
		t = &hooklinev1.Tenant{Tenant: name}
	} else {
		t = proto.CloneOf(t)
	}
	if t.Defaults == nil {
		t.Defaults = &hooklinev1.DeliveryPolicy{}
	}
	b, err := renderOpts.Marshal(t)
	if err != nil {
		a.tenantError(w, name, err)
		return
	}
	writeRawJSON(w, http.StatusOK, b)
}

func (a *API) tenantError(w http.ResponseWriter, name string, err error) {
	a.log.Error("tenant record call failed", zap.String("tenant", name), zap.Error(err))
	writeProblem(w, unavailable("the tenant records are unavailable; retry"))
}

// Sourced values of GET /v1/subscriptions/{id}/effective-policy: the
// value applied and the level it comes from.
type (
	sourcedSchedule struct {
		Value  []string `json:"value"`
		Source string   `json:"source" enum:"subscription,tenant,environment"`
	}
	sourcedString struct {
		Value  string `json:"value"`
		Source string `json:"source" enum:"subscription,tenant,environment"`
	}
	sourcedCount struct {
		Value  uint32 `json:"value" doc:"0: the adaptive default (HOOKLINE_DEFAULT_MAX_IN_FLIGHT up to its ceiling)"`
		Source string `json:"source" enum:"subscription,tenant,environment"`
	}
	sourcedRate struct {
		PerSecond float64 `json:"per_second" doc:"0: unlimited"`
		Burst     uint32  `json:"burst" doc:"0: the default burst"`
		Source    string  `json:"source" enum:"subscription,tenant,environment"`
	}
)

// EffectivePolicy answers GET /v1/subscriptions/{id}/effective-policy.
type EffectivePolicy struct {
	SubscriptionID   string          `json:"subscription_id"`
	Tenant           string          `json:"tenant"`
	RetrySchedule    sourcedSchedule `json:"retry_schedule"`
	AttemptTimeout   sourcedString   `json:"attempt_timeout"`
	AutoDisableAfter sourcedString   `json:"auto_disable_after" doc:"0s: never"`
	MaxInFlight      sourcedCount    `json:"max_in_flight"`
	RateLimit        sourcedRate     `json:"rate_limit"`
	PayloadFormat    sourcedString   `json:"payload_format" doc:"the tenant's default applies at creation, so this is the subscription's own (environment: a record older than payload formats, delivered raw)"`
}

func (a *API) effectivePolicy(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.lookup(w, r)
	if !ok {
		return
	}
	t, err := a.tenants.Tenant(r.Context(), sub.GetTenant())
	if err != nil {
		a.tenantError(w, sub.GetTenant(), err)
		return
	}
	e := policy.Resolve(a.policyEnv, t, sub)
	writeJSON(w, http.StatusOK, EffectivePolicy{
		SubscriptionID:   sub.GetId(),
		Tenant:           sub.GetTenant(),
		RetrySchedule:    sourcedSchedule{policy.FormatSchedule(e.RetrySchedule.Value), e.RetrySchedule.Source},
		AttemptTimeout:   sourcedString{e.AttemptTimeout.Value.String(), e.AttemptTimeout.Source},
		AutoDisableAfter: sourcedString{e.AutoDisableAfter.Value.String(), e.AutoDisableAfter.Source},
		MaxInFlight:      sourcedCount{e.MaxInFlight.Value, e.MaxInFlight.Source},
		RateLimit:        sourcedRate{e.RateLimit.Value.PerSecond, e.RateLimit.Value.Burst, e.RateLimit.Source},
		PayloadFormat:    sourcedString{e.PayloadFormat.Value, e.PayloadFormat.Source},
	})
}
