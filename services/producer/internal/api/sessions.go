package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/stream"
	"github.com/hookline/hookline/pkg/subscription"
)

// PortalSessions issues and revokes portal sessions (the portal package).
type PortalSessions interface {
	// Create signs a session of spec; base is the scheme and host the
	// request reached (the url's base when no public URL is configured).
	Create(ctx context.Context, spec PortalSessionSpec, base string) (PortalSession, error)
	// Revoke ends one session of tenant now.
	Revoke(ctx context.Context, tenant, id string) error
	// RevokeAll ends every session of tenant issued until now.
	RevokeAll(ctx context.Context, tenant string) error
}

// PortalSessionSpec is what a session may do.
type PortalSessionSpec struct {
	Tenant          string
	SubscriptionIDs []string // nil: every subscription of the tenant
	ReadOnly        bool
	TTL             time.Duration // 0: HOOKLINE_PORTAL_SESSION_TTL
}

// createPortalSession is the body of POST /v1/tenants/{tenant}/portal-sessions.
type createPortalSession struct {
	SubscriptionIDs []string `json:"subscription_ids" doc:"limit the session to these subscriptions of the tenant, at most 50 (it can then neither create subscriptions nor read the tenant's event log); absent: every subscription"`
	ReadOnly        bool     `json:"read_only" doc:"the session may look but change nothing"`
	TTLSeconds      int      `json:"ttl_seconds" doc:"lifetime, 60 to 86400 seconds (default HOOKLINE_PORTAL_SESSION_TTL, 1 hour)"`
}

// PortalSession answers POST /v1/tenants/{tenant}/portal-sessions.
type PortalSession struct {
	ID              string    `json:"id" doc:"session id: revoke it with DELETE …/portal-sessions/{id}"`
	Tenant          string    `json:"tenant"`
	Token           string    `json:"token" doc:"the signed session token (a bearer credential: shown only here, never logged)"`
	URL             string    `json:"url" doc:"absolute URL that opens the portal with this session (the token rides in the fragment, which browsers never send to a server)"`
	ExpiresAt       time.Time `json:"expires_at"`
	SubscriptionIDs []string  `json:"subscription_ids,omitempty"`
	ReadOnly        bool      `json:"read_only"`
}

// maxSessionSubscriptions bounds subscription_ids: the token, which names
// them, must fit a cookie (browsers keep 4 KiB; 50 ids make about 2.3).
const maxSessionSubscriptions = 50

func (a *API) portalTenant(w http.ResponseWriter, r *http.Request) (string, bool) {
	tenant := r.PathValue("tenant")
	if err := subscription.ValidateTenant(tenant); err != nil {
		writeProblem(w, invalid("tenant in the path: "+err.Error()))
		return "", false
	}
	if forbidTenant(w, r, tenant) {
		return "", false
	}
	if a.portal == nil {
		writeProblem(w, unavailable("portal sessions are not available on this producer"))
		return "", false
	}
	return tenant, true
}

func (a *API) createPortalSession(w http.ResponseWriter, r *http.Request) {
	var req createPortalSession
	if p := decodeJSON(w, r, maxControlBody, &req); p != nil {
		writeProblem(w, p)
		return
	}
	tenant, ok := a.portalTenant(w, r)
	if !ok {
		return
	}
	var f fields
	if req.TTLSeconds != 0 && (req.TTLSeconds < 60 || time.Duration(req.TTLSeconds)*time.Second > stream.PortalSessionMaxTTL) {
		f.add("ttl_seconds", fmt.Errorf("must be from 60 to %d seconds", int(stream.PortalSessionMaxTTL.Seconds())))
	}
	if req.SubscriptionIDs != nil {
		switch {
		case len(req.SubscriptionIDs) == 0:
			f.add("subscription_ids", errors.New("must name at least one subscription (leave it out for every subscription)"))
		case len(req.SubscriptionIDs) > maxSessionSubscriptions:
			f.add("subscription_ids", fmt.Errorf("at most %d subscriptions", maxSessionSubscriptions))
		}
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	var ids []string
	for _, id := range req.SubscriptionIDs {
		if slices.Contains(ids, id) {
			continue
		}
		sub, err := a.reg.Get(r.Context(), id)
		if errors.Is(err, subscription.ErrNotFound) || (err == nil && sub.GetTenant() != tenant) {
			f.add("subscription_ids", fmt.Errorf("%q is not a subscription of tenant %s", id, tenant))
			continue
		}
		if err != nil {
			a.registryError(w, id, err)
			return
		}
		ids = append(ids, id)
	}
	if p := f.problem(); p != nil {
		writeProblem(w, p)
		return
	}
	spec := PortalSessionSpec{Tenant: tenant, SubscriptionIDs: ids, ReadOnly: req.ReadOnly, TTL: time.Duration(req.TTLSeconds) * time.Second}
	s, err := a.portal.Create(r.Context(), spec, requestBase(r))
	if err != nil {
		a.log.Error("portal session not created", zap.String("tenant", tenant), zap.Error(err))
		writeProblem(w, unavailable("the portal session could not be created; retry"))
		return
	}
	a.log.Info("portal session created", zap.String("tenant", tenant), zap.String("session_id", s.ID),
		zap.Int("subscriptions", len(ids)), zap.Bool("read_only", req.ReadOnly), zap.Time("expires_at", s.ExpiresAt))
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, s)
}

func (a *API) revokePortalSession(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.portalTenant(w, r)
	if !ok {
		return
	}
	id := r.PathValue("id")
	if !validSessionID(id) {
		writeProblem(w, problem(http.StatusNotFound, TypeNotFound, fmt.Sprintf("portal session %q not found", id)))
		return
	}
	if err := a.portal.Revoke(r.Context(), tenant, id); err != nil {
		a.log.Error("portal session not revoked", zap.String("tenant", tenant), zap.String("session_id", id), zap.Error(err))
		writeProblem(w, unavailable("the portal session could not be revoked (NATS); retry"))
		return
	}
	a.log.Info("portal session revoked", zap.String("tenant", tenant), zap.String("session_id", id))
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) revokePortalSessions(w http.ResponseWriter, r *http.Request) {
	tenant, ok := a.portalTenant(w, r)
	if !ok {
		return
	}
	if err := a.portal.RevokeAll(r.Context(), tenant); err != nil {
		a.log.Error("portal sessions not revoked", zap.String("tenant", tenant), zap.Error(err))
		writeProblem(w, unavailable("the portal sessions could not be revoked (NATS); retry"))
		return
	}
	a.log.Info("every portal session of the tenant revoked", zap.String("tenant", tenant))
	w.WriteHeader(http.StatusNoContent)
}

// validSessionID: ps_ and a ULID.
func validSessionID(id string) bool {
	if len(id) != 29 || id[:3] != "ps_" {
		return false
	}
	for _, c := range id[3:] {
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// requestBase is the scheme and host a request reached.
func requestBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
