package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/hookline/hookline/pkg/deliverystate"
	"github.com/hookline/hookline/pkg/endpointhealth"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/publish"
	"github.com/hookline/hookline/services/producer/internal/replayjob"
)

// The OpenAPI 3.1 document of the API, served at GET /openapi.json. Its
// single source is this table and the Go types the handlers encode and
// decode (schemas reflects them); TestOpenAPICoversEveryRoute checks that
// the table and the routes New registers are the same set, and the server
// tests validate the document and every documented answer with an OpenAPI
// validator.

type param struct {
	name, in, doc string
	required      bool
	schema        map[string]any
}

type endpoint struct {
	method, path, summary string
	// scope is the token scope needed ("" for none: probes, the document).
	scope  string
	params []param
	// body is the request type (nil: none).
	body any
	// status and response: the success answer (response nil: no body).
	status   int
	response any
	// text: the success answer is text/plain.
	text bool
	// alt are other success answers (status → type).
	alt map[int]any
}

func str(doc string) map[string]any { return map[string]any{"type": "string", "description": doc} }

func q(name, doc string) param { return param{name: name, in: "query", doc: doc, schema: str(doc)} }

func path(name, doc string) param {
	return param{name: name, in: "path", doc: doc, required: true, schema: str(doc)}
}

var (
	listParams = []param{
		{name: "limit", in: "query", doc: "page size, 1–500 (default 100)", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": MaxListLimit}},
		q("cursor", "next_cursor of the previous page, unchanged"),
		{name: "order", in: "query", doc: "desc (newest first, default) or asc", schema: map[string]any{"type": "string", "enum": []string{"desc", "asc"}}},
	}
	timeParams = []param{
		{name: "since", in: "query", doc: "RFC 3339; inclusive", schema: map[string]any{"type": "string", "format": "date-time"}},
		{name: "until", in: "query", doc: "RFC 3339; exclusive", schema: map[string]any{"type": "string", "format": "date-time"}},
	}
	// idemParam: see idempotent.
	idemParam = param{name: HeaderIdempotencyKey, in: "header", doc: "1–255 printable ASCII characters: a retry with the same key and body " +
		"within HOOKLINE_IDEMPOTENCY_WINDOW (24h) gets the first success again (Idempotent-Replayed: true); the key is scoped to the tenant acted on; " +
		"another body is a 422, a first request still running a 409",
		schema: map[string]any{"type": "string", "minLength": 1, "maxLength": 255}}
	statusParam = q("status", "last HTTP status: 503, 429,503, a class 5xx, or 0 (no answer)")
	typeParam   = q("type", "event type filters, comma-separated, NATS tokens: order.created, order.*, invoice.>")
)

func with(ps ...[]param) []param {
	var out []param
	for _, p := range ps {
		out = append(out, p...)
	}
	return out
}

// endpoints is every route of the API.
var endpoints = []endpoint{
	{method: "POST", path: "/v1/events", summary: "Publish an event", scope: "publish", params: []param{idemParam}, body: eventRequest{}, status: 202, response: publish.Result{}},
	{method: "POST", path: "/v1/events/batch", summary: "Publish up to 500 events, all or nothing", scope: "publish", params: []param{idemParam}, body: batchRequest{}, status: 202, response: batchResponse{}},
	{method: "GET", path: "/v1/events", summary: "List events (EVENTS), newest first", scope: "admin",
		params: with([]param{q("tenant", "tenant (a tenant-bound token: its own)"), typeParam}, timeParams, listParams), status: 200, response: EventPage{}},
	{method: "GET", path: "/v1/events/{id}", summary: "An event with its data and the subscriptions it matches", scope: "admin",
		params: []param{path("id", "event id"), q("tenant", "tenant of the event (required for a token not bound to one)")}, status: 200, response: Event{}},
	{method: "GET", path: "/v1/events/{id}/deliveries", summary: "Per subscription: pending, delivered, retrying or dead_lettered, attempts, last status and time", scope: "admin",
		params: []param{path("id", "event id"), q("tenant", "tenant of the event (required for a token not bound to one)")}, status: 200, response: EventDeliveries{}},
	{method: "POST", path: "/v1/subscriptions", summary: "Create a subscription (the secret is shown only here)", scope: "admin", params: []param{idemParam}, body: createRequest{}, status: 201, response: hooklinev1.Subscription{}},
	{method: "GET", path: "/v1/subscriptions", summary: "List a tenant's subscriptions", scope: "admin",
		params: []param{{name: "tenant", in: "query", required: true, doc: "tenant", schema: str("tenant")}, listParams[0], listParams[1]}, status: 200, response: subscriptionPage{}},
	{method: "GET", path: "/v1/subscriptions/{id}", summary: "A subscription", scope: "admin", params: []param{path("id", "subscription id")}, status: 200, response: hooklinev1.Subscription{}},
	{method: "PATCH", path: "/v1/subscriptions/{id}", summary: "Change a subscription", scope: "admin", params: []param{path("id", "subscription id")}, body: updateRequest{}, status: 200, response: hooklinev1.Subscription{}},
	{method: "DELETE", path: "/v1/subscriptions/{id}", summary: "Delete a subscription", scope: "admin", params: []param{path("id", "subscription id")}, status: 204},
	{method: "POST", path: "/v1/subscriptions/{id}/rotate-secret", summary: "Rotate the signing secret (the new one is shown only here)", scope: "admin", params: []param{path("id", "subscription id")}, status: 200, response: hooklinev1.Subscription{}},
	{method: "POST", path: "/v1/subscriptions/{id}/test", summary: "Send one hookline.test delivery", scope: "admin", params: []param{path("id", "subscription id")}, status: 202, response: testResponse{}},
	{method: "GET", path: "/v1/subscriptions/{id}/attempts", summary: "A subscription's attempt records (ATTEMPTS), newest first", scope: "admin",
		params: with([]param{path("id", "subscription id"), q("outcome", "success, retry, dead_letter (comma-separated)"), statusParam, q("event_id", "one event's attempts"), typeParam}, timeParams, listParams),
		status: 200, response: AttemptPage{}},
	{method: "GET", path: "/v1/subscriptions/{id}/health", summary: "The endpoint's health: circuit, attempts in flight, why it is disabled, success ratio and latency over the last hour and day", scope: "admin",
		params: []param{path("id", "subscription id")}, status: 200, response: Health{}},
	{method: "POST", path: "/v1/tenants/{tenant}/portal-sessions", summary: "Open a portal session: a short-lived signed token and the URL that opens the portal with it", scope: "admin",
		params: []param{path("tenant", "tenant")}, body: createPortalSession{}, status: 201, response: PortalSession{}},
	{method: "DELETE", path: "/v1/tenants/{tenant}/portal-sessions", summary: "Revoke every portal session of the tenant issued until now", scope: "admin",
		params: []param{path("tenant", "tenant")}, status: 204},
	{method: "DELETE", path: "/v1/tenants/{tenant}/portal-sessions/{id}", summary: "Revoke one portal session", scope: "admin",
		params: []param{path("tenant", "tenant"), path("id", "session id (ps_…)")}, status: 204},
	{method: "GET", path: "/v1/subscriptions/{id}/stats", summary: "A subscription's attempts over a window: counts by outcome, success ratio, p50/p99 latency, last success and failure", scope: "admin",
		params: []param{path("id", "subscription id"), {name: "window", in: "query", doc: "15m, 1h (default), 6h or 24h", schema: map[string]any{"type": "string", "enum": []string{"15m", "1h", "6h", "24h"}}}},
		status: 200, response: SubscriptionStats{}},
	{method: "GET", path: "/v1/subscriptions/{id}/effective-policy", summary: "The delivery policy the subscription is delivered with, and the level (subscription, tenant, environment) each value comes from", scope: "admin",
		params: []param{path("id", "subscription id")}, status: 200, response: EffectivePolicy{}},
	{method: "GET", path: "/v1/tenants/{tenant}", summary: "A tenant's record: delivery policy defaults and metadata (empty when never set)", scope: "admin",
		params: []param{path("tenant", "tenant")}, status: 200, response: hooklinev1.Tenant{}},
	{method: "PUT", path: "/v1/tenants/{tenant}", summary: "Replace a tenant's delivery policy defaults and metadata", scope: "admin",
		params: []param{path("tenant", "tenant")}, body: tenantRequest{}, status: 200, response: hooklinev1.Tenant{}},
	{method: "GET", path: "/v1/dead-letters", summary: "List dead letters (DEADLETTER), newest first", scope: "admin",
		params: with([]param{q("subscription_id", "subscription id"), q("tenant", "tenant (a tenant-bound token: its own)"), typeParam,
			q("reason", "dead-letter reasons, comma-separated"), statusParam}, timeParams, listParams), status: 200, response: DeadLetterPage{}},
	{method: "GET", path: "/v1/dead-letters/{seq}", summary: "A dead letter with its data", scope: "admin", params: []param{path("seq", "DEADLETTER sequence")}, status: 200, response: DeadLetter{}},
	{method: "DELETE", path: "/v1/dead-letters/{seq}", summary: "Purge a dead letter", scope: "admin", params: []param{path("seq", "DEADLETTER sequence")}, status: 204},
	{method: "POST", path: "/v1/replays", summary: "Start a replay job over dead letters (dry_run: count and sample only; answers 200 then)", scope: "admin",
		params: []param{idemParam}, body: createReplay{}, status: 202, response: ReplayJob{}, alt: map[int]any{200: ReplayDryRun{}}},
	{method: "GET", path: "/v1/replays/{id}", summary: "A replay job's state and progress", scope: "admin", params: []param{path("id", "job id")}, status: 200, response: ReplayJob{}},
	{method: "DELETE", path: "/v1/replays/{id}", summary: "Cancel a running replay job (it stops before its next entry)", scope: "admin", params: []param{path("id", "job id")}, status: 200, response: ReplayJob{}},
	{method: "GET", path: "/livez", summary: "Liveness", status: 200, text: true},
	{method: "GET", path: "/readyz", summary: "Readiness: NATS connected, topology checked, registry bound (503 otherwise)", status: 200, text: true},
	{method: "GET", path: "/metrics", summary: "Prometheus metrics", status: 200, text: true},
	{method: "GET", path: "/openapi.json", summary: "This document", status: 200, response: map[string]any{}},
}

// subscriptionPage is GET /v1/subscriptions.
type subscriptionPage struct {
	Subscriptions []hooklinev1.Subscription `json:"subscriptions"`
	NextCursor    string                    `json:"next_cursor,omitempty" doc:"present when more may follow: pass it unchanged as cursor"`
}

var (
	openAPIOnce sync.Once
	openAPIDoc  []byte
)

// OpenAPI returns the document.
func OpenAPI() []byte {
	openAPIOnce.Do(func() {
		b, err := json.MarshalIndent(buildOpenAPI(endpoints), "", "  ")
		if err != nil {
			panic("openapi: " + err.Error())
		}
		openAPIDoc = b
	})
	return openAPIDoc
}

func buildOpenAPI(eps []endpoint) map[string]any {
	s := &schemas{
		components: map[string]any{},
		names: map[reflect.Type]string{
			reflect.TypeFor[eventRequest]():         "PublishEventRequest",
			reflect.TypeFor[batchRequest]():         "PublishBatchRequest",
			reflect.TypeFor[batchResponse]():        "PublishBatchResponse",
			reflect.TypeFor[publish.Result]():       "PublishResult",
			reflect.TypeFor[createRequest]():        "CreateSubscriptionRequest",
			reflect.TypeFor[updateRequest]():        "UpdateSubscriptionRequest",
			reflect.TypeFor[testResponse]():         "TestSubscriptionResponse",
			reflect.TypeFor[subscriptionPage]():     "SubscriptionPage",
			reflect.TypeFor[createReplay]():         "CreateReplayRequest",
			reflect.TypeFor[replayjob.Filter]():     "ReplayFilter",
			reflect.TypeFor[deliverystate.State]():  "DeliveryState",
			reflect.TypeFor[endpointhealth.State](): "EndpointHealth",
			reflect.TypeFor[createPortalSession]():  "CreatePortalSessionRequest",
			reflect.TypeFor[tenantRequest]():        "PutTenantRequest",
			reflect.TypeFor[tenantDefaults]():       "TenantDefaults",
			reflect.TypeFor[sourcedSchedule]():      "SourcedSchedule",
			reflect.TypeFor[sourcedString]():        "SourcedString",
			reflect.TypeFor[sourcedCount]():         "SourcedCount",
			reflect.TypeFor[sourcedRate]():          "SourcedRate",
		},
		omit: map[string]map[string]bool{"Subscription": {"keys": true, "sealed_url": true}},
		optional: map[string]map[string]bool{
			"Subscription": {"secret": true, "disabled_at": true, "created_at": true, "updated_at": true, "public_key": true, "auth": true},
			"Problem":      {"errors": true, "ids": true, "detail": true},
			"Tenant":       {"created_at": true, "updated_at": true},
		},
		required: map[string][]string{
			"PublishEventRequest":        {"tenant", "type", "data"},
			"PublishBatchRequest":        {"events"},
			"CreateSubscriptionRequest":  {"tenant", "url", "event_types"},
			"UpdateSubscriptionRequest":  {},
			"CreateReplayRequest":        {"source"},
			"CreatePortalSessionRequest": {},
			"PutTenantRequest":           {},
		},
	}
	problemRef := s.of(reflect.TypeFor[Problem]())
	paths := map[string]any{}
	for _, ep := range eps {
		op := map[string]any{"summary": ep.summary, "operationId": operationID(ep)}
		if ep.scope != "" {
			op["security"] = []any{map[string]any{"bearer": []string{}}}
			op["description"] = "Token scope: " + ep.scope + ". A token bound to a tenant sees and changes only that tenant's data."
		}
		var params []any
		for _, p := range ep.params {
			params = append(params, map[string]any{"name": p.name, "in": p.in, "required": p.required, "description": p.doc, "schema": p.schema})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if ep.body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": s.of(reflect.TypeOf(ep.body))}}}
		}
		ok := map[string]any{"description": http.StatusText(ep.status)}
		switch {
		case ep.text:
			ok["content"] = map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}
		case ep.response != nil:
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(ep.response))}}
		}
		var headers map[string]any
		for _, p := range ep.params {
			if p.name == HeaderIdempotencyKey {
				headers = map[string]any{HeaderReplayed: map[string]any{"description": "true: the stored answer of an earlier request with the same Idempotency-Key",
					"schema": map[string]any{"type": "string", "enum": []string{"true"}}}}
			}
		}
		if headers != nil {
			ok["headers"] = headers
		}
		responses := map[string]any{itoa(ep.status): ok}
		for st, typ := range ep.alt {
			alt := map[string]any{"description": http.StatusText(st),
				"content": map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(typ))}}}
			if headers != nil {
				alt["headers"] = headers
			}
			responses[itoa(st)] = alt
		}
		if !ep.text {
			responses["default"] = map[string]any{"description": "an RFC 9457 problem: 400 bad query or body, 401 no or unknown token, 403 wrong scope or tenant, 404 unknown id, 405 wrong method, 409 conflict, 413 too large, 415 not JSON, 422 invalid fields, 503 NATS unavailable (Retry-After)",
				"content": map[string]any{"application/problem+json": map[string]any{"schema": problemRef}}}
		}
		if ep.path == "/readyz" {
			responses["503"] = map[string]any{"description": "not ready", "content": map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}}
		}
		op["responses"] = responses
		item, _ := paths[ep.path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[ep.path] = item
		}
		item[strings.ToLower(ep.method)] = op
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "Hookline API", "version": "1",
			"description": "Webhook delivery: publish events, manage subscriptions, read the event log, attempts and dead letters, run replay jobs. Errors are RFC 9457 problem details."},
		"paths": paths,
		"components": map[string]any{
			"schemas":         s.components,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "HOOKLINE_API_TOKENS; off in local mode"}},
		},
	}
}

func operationID(ep endpoint) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(ep.method))
	for _, part := range strings.Split(ep.path, "/") {
		part = strings.Trim(part, "{}")
		for _, w := range strings.FieldsFunc(part, func(r rune) bool { return r == '-' || r == '.' || r == '_' }) {
			if w == "v1" {
				continue
			}
			b.WriteString(strings.ToUpper(w[:1]) + w[1:])
		}
	}
	return b.String()
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(OpenAPI())
}
