// Package portal serves the embeddable portal at /portal: static pages
// (embedded; no build step) whose JSON calls go to the API's own /v1/
// handlers under /portal/api/v1/, authenticated by a short-lived portal
// session instead of an API token. It also issues and revokes those
// sessions (api.PortalSessions).
//
// A session is a signed token (token.go) naming a tenant, optionally some
// of its subscriptions and read-only. The platform's backend asks for one
// (POST /v1/tenants/{tenant}/portal-sessions) and embeds the returned URL,
// which carries the token in its fragment: browsers never send a fragment
// to a server, so it reaches no access log, proxy or Referer. The page
// reads it, removes it from the address bar, and trades it for an
// HttpOnly, SameSite=Strict cookie (POST /portal/api/session). It keeps
// the token in memory too and sends it as a bearer token, so that an
// iframe whose cookies the browser blocks (a third-party context) works
// until it is reloaded. Every request checks the signature, the expiry
// and the revocations (NATS KV); changes made with the cookie must carry
// the session's CSRF token in X-Hookline-CSRF; a read-only session may
// only read; the session's tenant and subscriptions bind the API's
// handlers exactly as a tenant-bound token does.
package portal

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/oklog/ulid/v2"
	"go.uber.org/zap"

	"github.com/hookline/hookline/services/producer/internal/api"
	"github.com/hookline/hookline/services/producer/internal/config"
)

// Portal issues sessions and serves the portal.
type Portal struct {
	cfg  config.Portal
	key  []byte
	log  *zap.Logger
	rev  *revocations
	now  func() time.Time
	csp  string
	logo string // the logo's URL, or ""
}

var _ api.PortalSessions = (*Portal)(nil)

// Config is a Portal's.
type Config struct {
	// Settings are the HOOKLINE_PORTAL_* settings.
	Settings config.Portal
	// Key signs the sessions (config.Portal.SigningKey).
	Key []byte
	// Log is where the portal logs (nil: nowhere).
	Log *zap.Logger
}

// New builds the portal on js (where session revocations are kept).
func New(js jetstream.JetStream, c Config) *Portal {
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	cfg := c.Settings
	p := &Portal{cfg: cfg, key: c.Key, log: c.Log, rev: &revocations{js: js}, now: time.Now, logo: cfg.LogoURL}
	img := "'self' data:"
	if u, err := url.Parse(cfg.LogoURL); err == nil && cfg.LogoURL != "" {
		img += " " + u.Scheme + "://" + u.Host
	}
	p.csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src " + img +
		"; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors " + cfg.FrameAncestors
	return p
}

// Create signs a new session.
func (p *Portal) Create(_ context.Context, spec api.PortalSessionSpec, base string) (api.PortalSession, error) {
	ttl := spec.TTL
	if ttl == 0 {
		ttl = p.cfg.SessionTTL
	}
	now := p.now()
	c := Claims{Version: 1, ID: "ps_" + ulid.Make().String(), Tenant: spec.Tenant, Subscriptions: spec.SubscriptionIDs,
		ReadOnly: spec.ReadOnly, IssuedAt: now.UnixMilli(), Expires: now.Add(ttl).UnixMilli()}
	tok := Sign(p.key, c)
	if p.cfg.URL != "" {
		base = p.cfg.URL
	}
	u, err := url.Parse(base)
	if err != nil {
		return api.PortalSession{}, fmt.Errorf("portal url: %w", err)
	}
	u = u.JoinPath("portal/")
	u.Fragment = "session=" + tok
	return api.PortalSession{ID: c.ID, Tenant: c.Tenant, Token: tok, URL: u.String(), ExpiresAt: c.ExpiresAt(),
		SubscriptionIDs: c.Subscriptions, ReadOnly: c.ReadOnly}, nil
}

// Revoke ends one session.
func (p *Portal) Revoke(ctx context.Context, tenant, id string) error {
	return p.rev.revoke(ctx, tenant, id)
}

// RevokeAll ends every session of tenant issued until now.
func (p *Portal) RevokeAll(ctx context.Context, tenant string) error {
	return p.rev.revokeAll(ctx, tenant, p.now().UnixMilli())
}
