package server

import (
	"net/http"
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
	if len(policy.Allow) > 0 {
		log.Warn("subscription URLs may point at private ranges (HOOKLINE_ALLOW_PRIVATE_CIDRS)", zap.Int("ranges", len(policy.Allow)))
	}

	authn, err := c.Auth.Authenticator()
	if err != nil {
		return err
	}
	if !authn.Enabled() {
		log.Warn("API AUTHENTICATION IS OFF: no HOOKLINE_API_TOKENS configured; anyone who reaches this port can publish events and manage subscriptions (local mode only)")
	}
	d.V1 = scoped(authn)

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

// scoped requires the publish scope on /v1/events and /v1/events/batch and
// the admin scope (which implies publish) everywhere else under /v1/.
func scoped(a *auth.Authenticator) func(http.Handler) http.Handler {
	publish, admin := a.Require(auth.ScopePublish), a.Require(auth.ScopeAdmin)
	return func(next http.Handler) http.Handler {
		p, ad := publish(next), admin(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/events" || strings.HasPrefix(r.URL.Path, "/v1/events/") {
				p.ServeHTTP(w, r)
				return
			}
			ad.ServeHTTP(w, r)
		})
	}
}
