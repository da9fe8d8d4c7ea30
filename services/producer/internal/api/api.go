// Package api is the producer's HTTP API: events in, subscriptions managed,
// errors as RFC 9457 problem details. Handlers translate HTTP to the
// publish and registry packages and back; they hold no state of their own.
package api

import (
	"context"
	"github.com/hookline/hookline/services/producer/internal/quota"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/policy"
	"github.com/hookline/hookline/pkg/ssrf"
	"github.com/hookline/hookline/pkg/tracing"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/metrics"
	"github.com/hookline/hookline/services/producer/internal/publish"
	"github.com/hookline/hookline/services/producer/internal/registry"
	"go.uber.org/zap"
)

// Publisher puts events and test deliveries on JetStream.
type Publisher interface {
	Publish(ctx context.Context, ev publish.Event) (publish.Result, error)
	PublishBatch(ctx context.Context, evs []publish.Event) ([]publish.Result, error)
	PublishTest(ctx context.Context, sub *hooklinev1.Subscription) (string, error)
	// MaxData is the largest event data the event stream accepts (0:
	// unknown, while not connected).
	MaxData() int64
}

// Registry manages subscriptions.
type Registry interface {
	Create(ctx context.Context, req *hooklinev1.CreateSubscriptionRequest) (*hooklinev1.Subscription, error)
	// CreateAs creates a subscription with the id given (an existing one
	// of that id is returned, its secret revealed).
	CreateAs(ctx context.Context, id string, req *hooklinev1.CreateSubscriptionRequest) (*hooklinev1.Subscription, error)
	Get(ctx context.Context, id string) (*hooklinev1.Subscription, error)
	// ListPage returns up to limit subscriptions of tenant with ids after
	// after, in id order, and the id the next page resumes after ("" on
	// the last page).
	ListPage(ctx context.Context, tenant, after string, limit int) ([]*hooklinev1.Subscription, string, error)
	Update(ctx context.Context, id string, req *hooklinev1.UpdateSubscriptionRequest) (*hooklinev1.Subscription, error)
	Delete(ctx context.Context, id string) error
	RotateSecret(ctx context.Context, id string) (*hooklinev1.Subscription, error)
}

var (
	_ Publisher = (*publish.Publisher)(nil)
	_ Registry  = (*registry.Registry)(nil)
)

// Deps is what the API is built from.
type Deps struct {
	Publisher Publisher
	Registry  Registry
	Metrics   *metrics.Metrics
	Log       *zap.Logger
	// Ready reports readiness for /readyz.
	Ready func() bool
	// V1 wraps every /v1/ route: authentication goes here. nil = none.
	V1 func(http.Handler) http.Handler
	// URLPolicy judges subscription URLs (SSRF); the zero value blocks
	// every private range.
	URLPolicy ssrf.Policy

	MaxEventBytes int64
	MaxBatchBytes int64
	MaxBatch      int
	// MaxInFlight and MaxRate bound a subscription's max_in_flight and
	// rate_limit_per_second (defaults 256 and 10,000).
	MaxInFlight uint32
	MaxRate     float64

	// JS reads the streams for the delivery API (dead letters, attempts,
	// events); Matching lists the subscriptions an event matches.
	JS       jetstream.JetStream
	Matching Matching
	// Replays runs replay jobs (nil: the routes answer 503).
	Replays Replays
	// Health reads an endpoint's live health (nil: answered without it).
	Health HealthReader
	// Deferrals reads a subscription's deferral counts (nil: answered
	// without them).
	Deferrals DeferralReader
	// PortalSessions issues portal sessions (nil: those routes answer 503);
	// Portal serves /portal/ given the /v1/ routes without their bearer
	// authentication (nil: no portal).
	PortalSessions PortalSessions
	Portal         func(v1 http.Handler) http.Handler
	// Idempotency remembers Idempotency-Key requests (nil: a request
	// with the header answers 503).
	Idempotency Idempotency
	// Tracing starts a server span per request (nil: off).
	Tracing *tracing.Tracing
	// Tenants holds the tenant records (nil: Registry when it is one).
	Tenants Tenants
	// Quota is the tenants' events/s quota (nil: none).
	Quota *quota.Limiter
	// PolicyEnv is the environment level of the delivery policy;
	// PolicyLimits what a policy must respect (nil: no limits but the
	// fixed ones).
	PolicyEnv    policy.Environment
	PolicyLimits func(context.Context) (policy.Limits, error)
}

// API serves the producer's HTTP endpoints.
type API struct {
	pub     Publisher
	reg     Registry
	metrics *metrics.Metrics
	log     *zap.Logger
	ready   func() bool

	maxEventBytes int64
	maxBatchBytes int64
	maxBatch      int
	maxInFlight   uint32
	maxRate       float64

	jetstream jetstream.JetStream
	matching  Matching
	replays   Replays
	health    HealthReader
	deferrals DeferralReader
	portal    PortalSessions
	idem      Idempotency

	tracing   *tracing.Tracing
	tenants   Tenants
	quota     *quota.Limiter
	policyEnv policy.Environment
	limits    func(context.Context) (policy.Limits, error)
	handler   http.Handler
	allow     map[string][]string // path → methods routed, for 405 answers
	urlPolicy ssrf.Policy
}

// New builds the API and its routes.
func New(d Deps) *API {
	a := &API{
		pub: d.Publisher, reg: d.Registry, metrics: d.Metrics, log: d.Log, ready: d.Ready,
		maxEventBytes: d.MaxEventBytes, maxBatchBytes: d.MaxBatchBytes, maxBatch: d.MaxBatch,
		maxInFlight: d.MaxInFlight, maxRate: d.MaxRate,
		allow: map[string][]string{}, urlPolicy: d.URLPolicy,
		jetstream: d.JS, matching: d.Matching, replays: d.Replays,
		health: d.Health, deferrals: d.Deferrals, portal: d.PortalSessions,
		idem: d.Idempotency, tracing: d.Tracing,
		tenants: d.Tenants, policyEnv: d.PolicyEnv, limits: d.PolicyLimits, quota: d.Quota,
	}
	if t, ok := d.Registry.(Tenants); ok && a.tenants == nil {
		a.tenants = t
	}
	if a.maxInFlight == 0 {
		a.maxInFlight = 256
	}
	if a.maxRate <= 0 {
		a.maxRate = 10000
	}
	v1 := http.NewServeMux()
	a.route(v1, "POST /v1/events", a.publishEvent)
	a.route(v1, "POST /v1/events/batch", a.publishBatch)
	a.route(v1, "POST /v1/subscriptions", a.createSubscription)
	a.route(v1, "GET /v1/subscriptions", a.listSubscriptions)
	a.route(v1, "GET /v1/subscriptions/{id}", a.getSubscription)
	a.route(v1, "PATCH /v1/subscriptions/{id}", a.updateSubscription)
	a.route(v1, "DELETE /v1/subscriptions/{id}", a.deleteSubscription)
	a.route(v1, "POST /v1/subscriptions/{id}/rotate-secret", a.rotateSecret)
	a.route(v1, "POST /v1/subscriptions/{id}/test", a.testSubscription)
	a.route(v1, "GET /v1/subscriptions/{id}/attempts", a.listAttempts)
	a.route(v1, "GET /v1/subscriptions/{id}/health", a.subscriptionHealth)
	a.route(v1, "GET /v1/subscriptions/{id}/stats", a.subscriptionStats)
	a.route(v1, "GET /v1/subscriptions/{id}/effective-policy", a.effectivePolicy)
	a.route(v1, "GET /v1/tenants/{tenant}", a.getTenant)
	a.route(v1, "PUT /v1/tenants/{tenant}", a.putTenant)
	a.route(v1, "GET /v1/events", a.listEvents)
	// Not a method pattern: "GET /v1/events/{id}" would conflict with the
	// 405 fallback of /v1/events/batch (which is more specific than this).
	a.allow["/v1/events/{id}"] = []string{http.MethodGet}
	v1.Handle("/v1/events/{id}", a.routed("GET /v1/events/{id}", a.onlyGET("/v1/events/{id}", a.getEvent)))
	a.route(v1, "GET /v1/events/{id}/deliveries", a.eventDeliveries)
	a.route(v1, "GET /v1/dead-letters", a.listDeadLetters)
	a.route(v1, "GET /v1/dead-letters/{seq}", a.getDeadLetter)
	a.route(v1, "DELETE /v1/dead-letters/{seq}", a.deleteDeadLetter)
	a.route(v1, "POST /v1/replays", a.createReplay)
	a.route(v1, "GET /v1/replays/{id}", a.getReplay)
	a.route(v1, "DELETE /v1/replays/{id}", a.cancelReplay)
	a.route(v1, "POST /v1/tenants/{tenant}/portal-sessions", a.createPortalSession)
	a.route(v1, "DELETE /v1/tenants/{tenant}/portal-sessions", a.revokePortalSessions)
	a.route(v1, "DELETE /v1/tenants/{tenant}/portal-sessions/{id}", a.revokePortalSession)
	a.route(v1, "/", notFound)

	root := http.NewServeMux()
	var v1h http.Handler = v1
	if d.V1 != nil {
		v1h = d.V1(v1h)
	}
	root.Handle("/v1/", v1h)
	if d.Portal != nil {
		// The portal authenticates its own sessions and passes the /v1/
		// calls it allows to the same handlers (its routes are not in the
		// OpenAPI document: they are these, under /portal/api).
		root.Handle("/portal", d.Portal(v1))
		root.Handle("/portal/", d.Portal(v1))
	}
	a.route(root, "GET /livez", livez)
	a.route(root, "GET /readyz", a.readyz)
	a.route(root, "GET /openapi.json", serveOpenAPI)
	root.Handle("GET /metrics", a.routed("GET /metrics", d.Metrics.Handler()))
	a.allow["/metrics"] = append(a.allow["/metrics"], http.MethodGet)
	a.route(root, "/", notFound)
	a.handler = a.recoverPanics(a.observe(root))
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// route registers h for pattern and, for a pattern with a method, a 405
// problem for the other methods on the same path.
func (a *API) route(mux *http.ServeMux, pattern string, h http.HandlerFunc) {
	mux.Handle(pattern, a.routed(pattern, h))
	method, path, ok := cutMethod(pattern)
	if !ok {
		return
	}
	a.allow[path] = append(a.allow[path], method)
	if len(a.allow[path]) == 1 {
		mux.Handle(path, a.routed(path, a.methodNotAllowed(path)))
	}
}

// policyLimits are the limits a delivery policy must respect now.
func (a *API) policyLimits(ctx context.Context) (policy.Limits, error) {
	if a.limits == nil {
		return policy.Limits{}, nil
	}
	return a.limits(ctx)
}

// authTenant is the tenant the caller's token is bound to ("" for every
// tenant).
func authTenant(r *http.Request) string { return auth.TenantOf(r.Context()) }

// onlyGET serves GET and HEAD with h and answers 405 otherwise.
func (a *API) onlyGET(path string, h http.HandlerFunc) http.HandlerFunc {
	notAllowed := a.methodNotAllowed(path)
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			notAllowed(w, r)
			return
		}
		h(w, r)
	}
}

// Routes lists every "METHOD /path" the API serves (the OpenAPI document
// must cover exactly these).
func (a *API) Routes() []string {
	var out []string
	for path, methods := range a.allow {
		for _, m := range methods {
			out = append(out, m+" "+path)
		}
	}
	return out
}
