package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/subscription"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/registry"
	"go.uber.org/zap"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxControlBody bounds the body of subscription requests.
const maxControlBody = 64 << 10

// createRequest is hooklinev1.CreateSubscriptionRequest in JSON.
type createRequest struct {
	Tenant             string   `json:"tenant"`
	URL                string   `json:"url"`
	EventTypes         []string `json:"event_types"`
	Description        string   `json:"description"`
	MaxInFlight        uint32   `json:"max_in_flight"`
	RateLimitPerSecond float64  `json:"rate_limit_per_second"`
	RateLimitBurst     uint32   `json:"rate_limit_burst"`
	SignatureScheme    string   `json:"signature_scheme"`
	Ordered            bool     `json:"ordered"`
	// "" means envelope.
	PayloadFormat string            `json:"payload_format" enum:"envelope,raw" doc:"the body sent: envelope (default; {id,type,timestamp,data}) or raw (the event's data alone)"`
	Headers       map[string]string `json:"headers" doc:"custom request headers sent on every attempt (write-only: answers show each value as REDACTED)"`
	// Delivery policy of its own (empty: the tenant's default, else the
	// environment's).
	RetrySchedule    []string          `json:"retry_schedule" doc:"delay before each attempt, Go durations, the first 0s (empty: the tenant's default)"`
	AttemptTimeout   string            `json:"attempt_timeout" doc:"one attempt's timeout, e.g. 10s (empty: the tenant's default)"`
	AutoDisableAfter string            `json:"auto_disable_after" doc:"auto-disable after failing this long, 0s: never (empty: the tenant's default)"`
	Metadata         map[string]string `json:"metadata" doc:"free-form labels (at most 32; keys up to 64 printable ASCII characters, values up to 512 bytes)"`
	UID              string            `json:"uid" doc:"an external id, unique within the tenant (a duplicate is a 409)"`
	// How the deliverer authenticates to the endpoint (nil: only the
	// signature and custom headers).
	Auth *authRequest `json:"auth" doc:"endpoint authentication beyond the signature: OAuth 2.0 client credentials or an mTLS client certificate (secrets write-only)"`
}

// updateRequest is hooklinev1.UpdateSubscriptionRequest in JSON; a nil
// field is absent and stays unchanged.
type updateRequest struct {
	URL                *string   `json:"url"`
	EventTypes         *[]string `json:"event_types"`
	Description        *string   `json:"description"`
	Disabled           *bool     `json:"disabled"`
	MaxInFlight        *uint32   `json:"max_in_flight"`
	RateLimitPerSecond *float64  `json:"rate_limit_per_second"`
	RateLimitBurst     *uint32   `json:"rate_limit_burst"`
	PayloadFormat      *string   `json:"payload_format" enum:"envelope,raw"`
	// Replaces every custom header ({} removes them all); a value of
	// REDACTED keeps the stored value of that header.
	Headers *map[string]string `json:"headers" doc:"replaces every custom header ({} removes them all); a value of REDACTED keeps the stored one"`
	// An empty value returns to the default.
	RetrySchedule    *[]string          `json:"retry_schedule" doc:"replaces the schedule ([]: the tenant's default again)"`
	AttemptTimeout   *string            `json:"attempt_timeout" doc:"\"\": the tenant's default again"`
	AutoDisableAfter *string            `json:"auto_disable_after" doc:"\"\": the tenant's default again"`
	Metadata         *map[string]string `json:"metadata" doc:"replaces the metadata ({} removes it)"`
	UID              *string            `json:"uid" doc:"\"\" removes the uid; a uid another subscription of the tenant holds is a 409"`
	// Replaces the endpoint authentication ({} removes it); a secret of
	// REDACTED keeps the stored one.
	Auth *authRequest `json:"auth" doc:"replaces the endpoint authentication ({} removes it); a secret of REDACTED keeps the stored one"`
}

func (a *API) createSubscription(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	key, raw, p := decodeIdempotent(w, r, maxControlBody, &req)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var f fields
	f.tenant("tenant", req.Tenant)
	f.add("url", a.checkURL(req.URL))
	f.eventTypes("event_types", req.EventTypes)
	f.description("description", req.Description)
	f.limits(a, &req.MaxInFlight, &req.RateLimitPerSecond, &req.RateLimitBurst)
	if req.SignatureScheme != "" && req.SignatureScheme != registry.SchemeHMAC && req.SignatureScheme != registry.SchemeEd25519 {
		f.add("signature_scheme", errors.New(`must be "v1" (HMAC-SHA256) or "v1a" (ed25519)`))
	}
	if req.PayloadFormat != "" {
		f.add("payload_format", subscription.ValidatePayloadFormat(req.PayloadFormat))
	}
	f.headers(req.Headers, nil)
	f.auth(a, req.Auth, nil)
	f.metadata(req.Metadata)
	if req.UID != "" {
		f.add("uid", policy.ValidateUID(req.UID))
	}
	if !f.policy(r.Context(), a, w, policyFields{schedule: &req.RetrySchedule, timeout: &req.AttemptTimeout, autoDisable: &req.AutoDisableAfter}) {
		return
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidTenant(w, r, req.Tenant) || forbidLimited(w, r, "create subscriptions") {
		return
	}
	ir := idempotentRequest{key: key, scope: req.Tenant, body: raw, ids: []string{registry.NewSubscriptionID()}}
	a.idempotent(w, r, ir, func(w http.ResponseWriter, ids []string) {
		sub, err := a.reg.CreateAs(r.Context(), ids[0], &hooklinev1.CreateSubscriptionRequest{
			Tenant: req.Tenant, Url: req.URL, EventTypes: req.EventTypes, Description: req.Description,
			MaxInFlight: req.MaxInFlight, RateLimitPerSecond: req.RateLimitPerSecond,
			RateLimitBurst: req.RateLimitBurst, Ordered: req.Ordered, SignatureScheme: req.SignatureScheme,
			PayloadFormat: req.PayloadFormat, Headers: req.Headers,
			RetrySchedule: req.RetrySchedule, AttemptTimeout: req.AttemptTimeout, AutoDisableAfter: req.AutoDisableAfter,
			Metadata: req.Metadata, Uid: req.UID, Auth: req.Auth.proto(),
		})
		if err != nil {
			a.registryError(w, "", err)
			return
		}
		a.log.Info("subscription created", zap.String("subscription_id", sub.GetId()), zap.String("tenant", sub.GetTenant()))
		w.Header().Set("Location", "/v1/subscriptions/"+sub.GetId())
		a.writeSubscription(w, http.StatusCreated, sub)
	})
}

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request) {
	tenant := r.URL.Query().Get("tenant")
	if tenant == "" {
		writeProblem(w, invalid("query parameter tenant is required"))
		return
	}
	var f fields
	f.tenant("tenant", tenant)
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	if forbidTenant(w, r, tenant) {
		return
	}
	limit, after, p := pageParams(r, tenant)
	if p != nil {
		writeProblem(w, p)
		return
	}
	subs, next, err := a.reg.ListPage(r.Context(), tenant, after, limit)
	if err != nil {
		a.registryError(w, "", err)
		return
	}
	out := make([]byte, 0, 256*len(subs)+32)
	out = append(out, `{"subscriptions":[`...)
	subs = slices.DeleteFunc(subs, func(s *hooklinev1.Subscription) bool { return hiddenSubscription(r, s.GetTenant(), s.GetId()) })
	for i, sub := range subs {
		b, err := renderSubscription(sub)
		if err != nil {
			a.registryError(w, sub.GetId(), err)
			return
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	out = append(out, ']')
	if next != "" {
		out = append(out, `,"next_cursor":`...)
		out = strconv.AppendQuote(out, encodeCursor(tenant, next))
	}
	out = append(out, '}')
	writeRawJSON(w, http.StatusOK, out)
}

// lookup finds the subscription of the {id} path value, honouring an
// optional ?tenant= scope (a subscription of another tenant is not found).
func (a *API) lookup(w http.ResponseWriter, r *http.Request) (*hooklinev1.Subscription, bool) {
	id := r.PathValue("id")
	sub, err := a.reg.Get(r.Context(), id)
	if err == nil {
		if t := r.URL.Query().Get("tenant"); t != "" && t != sub.GetTenant() || hiddenSubscription(r, sub.GetTenant(), sub.GetId()) {
			err = subscription.ErrNotFound
		}
	}
	if err != nil {
		a.registryError(w, id, err)
		return nil, false
	}
	return sub, true
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request) {
	if sub, ok := a.lookup(w, r); ok {
		a.writeSubscription(w, http.StatusOK, sub)
	}
}

func (a *API) updateSubscription(w http.ResponseWriter, r *http.Request) {
	var req updateRequest
	if p := decodeJSON(w, r, maxControlBody, &req); p != nil {
		writeProblem(w, p)
		return
	}
	var f fields
	upd := &hooklinev1.UpdateSubscriptionRequest{
		Url: req.URL, Description: req.Description, Disabled: req.Disabled,
		MaxInFlight: req.MaxInFlight, RateLimitPerSecond: req.RateLimitPerSecond, RateLimitBurst: req.RateLimitBurst,
	}
	if req.URL != nil {
		f.add("url", a.checkURL(*req.URL))
	}
	if req.EventTypes != nil {
		f.eventTypes("event_types", *req.EventTypes)
		upd.EventTypes = *req.EventTypes
	}
	if req.Description != nil {
		f.description("description", *req.Description)
	}
	f.limits(a, req.MaxInFlight, req.RateLimitPerSecond, req.RateLimitBurst)
	if req.PayloadFormat != nil {
		f.add("payload_format", subscription.ValidatePayloadFormat(*req.PayloadFormat))
		upd.PayloadFormat = req.PayloadFormat
	}
	if !f.policy(r.Context(), a, w, policyFields{schedule: req.RetrySchedule, timeout: req.AttemptTimeout, autoDisable: req.AutoDisableAfter}) {
		return
	}
	if req.RetrySchedule != nil {
		upd.RetrySchedule = &hooklinev1.Schedule{Delays: *req.RetrySchedule}
	}
	upd.AttemptTimeout, upd.AutoDisableAfter, upd.Uid = req.AttemptTimeout, req.AutoDisableAfter, req.UID
	if req.Metadata != nil {
		f.metadata(*req.Metadata)
		upd.Metadata = &hooklinev1.Metadata{Values: *req.Metadata}
	}
	if req.UID != nil && *req.UID != "" {
		f.add("uid", policy.ValidateUID(*req.UID))
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	cur, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if req.Headers != nil {
		// Judged against the stored headers: REDACTED keeps one of them.
		f.headers(*req.Headers, cur.GetHeaders())
		if p := f.problem(); p != nil {
			writeProblem(w, p)
			return
		}
		upd.Headers = &hooklinev1.Headers{Values: *req.Headers}
	}
	if req.Auth != nil {
		// Judged against the stored one: REDACTED keeps its secret.
		f.auth(a, req.Auth, cur.GetAuth())
		if p := f.problem(); p != nil {
			writeProblem(w, p)
			return
		}
		upd.Auth = req.Auth.proto()
		if upd.Auth.GetType() == "" {
			upd.Auth = &hooklinev1.EndpointAuth{} // removes it
		}
	}
	if proto.Equal(upd, &hooklinev1.UpdateSubscriptionRequest{}) {
		a.getSubscription(w, r) // nothing to change
		return
	}
	sub, err := a.reg.Update(r.Context(), r.PathValue("id"), upd)
	if err != nil {
		a.registryError(w, r.PathValue("id"), err)
		return
	}
	a.log.Info("subscription updated", zap.String("subscription_id", sub.GetId()), zap.Bool("disabled", sub.GetDisabled()))
	a.writeSubscription(w, http.StatusOK, sub)
}

func (a *API) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.lookup(w, r); !ok {
		return
	}
	id := r.PathValue("id")
	if err := a.reg.Delete(r.Context(), id); err != nil {
		a.registryError(w, id, err)
		return
	}
	a.log.Info("subscription deleted", zap.String("subscription_id", id))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	if _, ok := a.lookup(w, r); !ok {
		return
	}
	sub, err := a.reg.RotateSecret(r.Context(), r.PathValue("id"))
	if err != nil {
		a.registryError(w, r.PathValue("id"), err)
		return
	}
	a.log.Info("subscription secret rotated", zap.String("subscription_id", sub.GetId()), zap.Int("active_keys", len(sub.GetKeys())))
	a.writeSubscription(w, http.StatusOK, sub)
}

type testResponse struct {
	EventID string `json:"event_id"`
}

func (a *API) testSubscription(w http.ResponseWriter, r *http.Request) {
	sub, ok := a.lookup(w, r)
	if !ok {
		return
	}
	if sub.GetDisabled() {
		writeProblem(w, problem(http.StatusConflict, TypeConflict,
			fmt.Sprintf("subscription %s is disabled (%s); enable it before sending a test event", sub.GetId(), sub.GetDisabledReason())))
		return
	}
	id, err := a.pub.PublishTest(r.Context(), sub)
	if err != nil {
		a.log.Warn("test delivery not accepted", zap.String("subscription_id", sub.GetId()), zap.Error(err))
		writeProblem(w, unavailable("the test event was not accepted: the delivery stream is unavailable; retry"))
		return
	}
	a.log.Info("test delivery queued", zap.String("subscription_id", sub.GetId()), zap.String("event_id", id))
	writeJSON(w, http.StatusAccepted, testResponse{EventID: id})
}

// registryError answers a failed registry call: 404 for an unknown id, 503
// otherwise (the registry lives in NATS; the failure is not the client's).
func (a *API) registryError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, subscription.ErrNotFound) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("subscription %q not found", id)))
		return
	}
	if errors.Is(err, subscription.ErrRedactedHeader) {
		// The header was removed between the check and the write.
		writeProblem(w, validation([]FieldError{{Field: "headers", Message: subscription.ErrRedactedHeader.Error()}}))
		return
	}
	if errors.Is(err, subscription.ErrRedactedAuth) {
		// The authentication changed between the check and the write.
		writeProblem(w, validation([]FieldError{{Field: "auth", Message: subscription.ErrRedactedAuth.Error()}}))
		return
	}
	if errors.Is(err, registry.ErrUIDTaken) {
		writeProblem(w, problem(http.StatusConflict, TypeConflict, err.Error()))
		return
	}
	if errors.Is(err, registry.ErrTenantFull) {
		writeProblem(w, problem(http.StatusConflict, TypeConflict, err.Error()+" (HOOKLINE_MAX_SUBSCRIPTIONS_PER_TENANT); delete one first"))
		return
	}
	a.log.Error("subscription registry call failed", zap.String("subscription_id", id), zap.Error(err))
	writeProblem(w, unavailable("the subscription registry is unavailable; retry"))
}

var renderOpts = protojson.MarshalOptions{UseProtoNames: true, EmitDefaultValues: true}

// renderSubscription is the API form of a subscription: every field, with
// its defaults, except the signing keys; the secret only when revealed.
func renderSubscription(sub *hooklinev1.Subscription) ([]byte, error) {
	out := proto.CloneOf(sub)
	out.Keys = nil
	// Credentials in the URL are sealed in sealed_url and never shown; the
	// mask also covers records stored before they were sealed.
	out.Url, _ = subscription.MaskURL(out.GetUrl())
	out.SealedUrl = ""
	// Custom headers are write-only.
	out.Headers = subscription.MaskHeaders(out.GetHeaders())
	// So are the endpoint authentication's secrets.
	out.Auth = subscription.MaskAuth(out.GetAuth())
	b, err := renderOpts.Marshal(out)
	if err != nil {
		return nil, err
	}
	return dropFields(b, out.GetSecret() == "")
}

func (a *API) writeSubscription(w http.ResponseWriter, status int, sub *hooklinev1.Subscription) {
	b, err := renderSubscription(sub)
	if err != nil {
		a.registryError(w, sub.GetId(), err)
		return
	}
	writeRawJSON(w, status, b)
}

// dropFields removes "keys" and "sealed_url" (always) and "secret" (when unset) from the
// rendered object and writes the rest in the order of the proto fields.
func dropFields(b []byte, dropSecret bool) ([]byte, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	delete(m, "keys")
	delete(m, "sealed_url")
	if dropSecret {
		delete(m, "secret")
	}
	out := make([]byte, 0, len(b))
	out = append(out, '{')
	fields := (&hooklinev1.Subscription{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		v, ok := m[name]
		if !ok {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = strconv.AppendQuote(out, name)
		out = append(out, ':')
		out = append(out, v...)
	}
	return append(out, '}'), nil
}
