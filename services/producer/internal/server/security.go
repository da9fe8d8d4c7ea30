package server

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/services/producer/internal/api"
	"github.com/hookline/hookline/services/producer/internal/config"
	"github.com/hookline/hookline/services/producer/internal/registry"
	"go.uber.org/zap"
)

// secure applies the security settings: the SSRF policy for subscription
// URLs, bearer-token authentication of /v1/ (publish scope for the events
// routes, admin for the rest), and the key that seals signing secrets in
// the registry. It says loudly when authentication or sealing is off.
func secure(c config.Security, log *zap.Logger, d *api.Deps, reg *registry.Registry) error {
	policy, err := c.URLs.Policy()
	if err != nil {
		return err
	}
	d.URLPolicy = policy
	if n := len(policy.Allow) + len(policy.AllowPorts); n > 0 {
		log.Warn("subscription URLs may point at private ranges (HOOKLINE_ALLOW_PRIVATE_CIDRS)", zap.Int("ranges", n))
	}

	authn, err := c.Auth.Authenticator()
	if err != nil {
		return err
	}
	d.V1 = scoped(authn)
	if !authn.Enabled() {
		log.Warn("API AUTHENTICATION IS OFF: no HOOKLINE_API_TOKENS configured; anyone who reaches this port can publish events and manage subscriptions (local mode only: loopback Host names and JSON bodies only)")
		inner := d.V1
		d.V1 = func(h http.Handler) http.Handler { return localOnly(inner(h)) }
	}

	box, err := c.Secrets.Box()
	if err != nil {
		return err
	}
	if box == nil {
		log.Warn("signing secrets are stored in clear in the registry: set HOOKLINE_SECRET_KEY (base64 of 32 bytes) to seal them at rest")
	}
	reg.SealWith(box)
	return nil
}

// localOnly guards the API while authentication is off (a developer's
// machine): a web page the developer visits must not be able to drive it.
// A cross-site form or a no-CORS fetch cannot send application/json, so a
// request with a body must declare it (415 otherwise); and a DNS-rebinding
// page reaches the port under its own host name, so the Host must be a
// loopback name or address (403 otherwise), as must an Origin when sent.
func localOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !loopbackHost(r.Host) {
			api.WriteProblem(w, http.StatusForbidden, api.TypeForbidden,
				"with authentication off (no HOOKLINE_API_TOKENS) the API answers only to localhost, 127.0.0.1 or [::1]")
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || !loopbackHost(u.Host) {
				api.WriteProblem(w, http.StatusForbidden, api.TypeForbidden,
					"with authentication off (no HOOKLINE_API_TOKENS) the API refuses requests from other origins")
				return
			}
		}
		if r.ContentLength != 0 && r.Method != http.MethodGet && r.Header.Get("Content-Type") == "" {
			api.WriteProblem(w, http.StatusUnsupportedMediaType, api.TypeUnsupportedMedia, "Content-Type must be application/json")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// loopbackHost reports a Host (with or without a port) that names this
// machine: localhost, *.localhost, or a loopback address.
func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	return err == nil && a.Unmap().IsLoopback()
}

// scoped requires the publish scope to publish (POST /v1/events and
// /v1/events/batch) and the admin scope (which implies publish) everywhere
// else under /v1/, reading the event log included: a publish token is a
// write-only credential.
func scoped(a *auth.Authenticator) func(http.Handler) http.Handler {
	publish, admin := a.Require(auth.ScopePublish), a.Require(auth.ScopeAdmin)
	return func(next http.Handler) http.Handler {
		p, ad := publish(next), admin(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && (r.URL.Path == "/v1/events" || r.URL.Path == "/v1/events/batch") {
				p.ServeHTTP(w, r)
				return
			}
			ad.ServeHTTP(w, r)
		})
	}
}
