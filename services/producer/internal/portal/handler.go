package portal

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/services/producer/internal/api"
)

//go:embed assets
var assets embed.FS

// Cookie and header names.
const (
	CookieName = "hookline_portal"
	CSRFHeader = "X-Hookline-CSRF"
)

// apiRoutes are the /v1/ operations a session may call, under /portal/api.
// Publishing events, purging dead letters and the portal sessions
// themselves are not among them.
var apiRoutes = []string{
	"GET /v1/subscriptions",
	"POST /v1/subscriptions",
	"GET /v1/subscriptions/{id}",
	"PATCH /v1/subscriptions/{id}",
	"DELETE /v1/subscriptions/{id}",
	"POST /v1/subscriptions/{id}/rotate-secret",
	"POST /v1/subscriptions/{id}/test",
	"GET /v1/subscriptions/{id}/attempts",
	"GET /v1/subscriptions/{id}/health",
	"GET /v1/events",
	"GET /v1/events/{id}",
	"GET /v1/events/{id}/deliveries",
	"GET /v1/dead-letters",
	"GET /v1/dead-letters/{seq}",
	"POST /v1/replays",
	"GET /v1/replays/{id}",
	"DELETE /v1/replays/{id}",
}

// APIRoutes lists the /v1/ operations a portal session may call.
func APIRoutes() []string { return append([]string(nil), apiRoutes...) }

// Handler serves /portal/ with v1, the API's /v1/ routes without their
// bearer authentication.
func (p *Portal) Handler(v1 http.Handler) http.Handler {
	static, _ := fs.Sub(assets, "assets")
	index := template.Must(template.ParseFS(static, "index.html"))
	var page bytes.Buffer
	if err := index.Execute(&page, map[string]string{"Name": p.cfg.Name, "Logo": p.logo}); err != nil {
		panic("portal: index.html: " + err.Error())
	}
	theme := []byte(":root{--accent:" + p.cfg.Accent + ";--bg:" + p.cfg.Background + ";--fg:" + p.cfg.Text + "}\n")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /portal", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/portal/", http.StatusMovedPermanently)
	})
	mux.HandleFunc("GET /portal/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(page.Bytes())
	})
	mux.HandleFunc("GET /portal/theme.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(theme)
	})
	files := http.StripPrefix("/portal/assets/", http.FileServerFS(static))
	mux.HandleFunc("GET /portal/assets/{file}", func(w http.ResponseWriter, r *http.Request) {
		if f := r.PathValue("file"); f == "index.html" || strings.HasPrefix(f, ".") {
			api.WriteProblem(w, http.StatusNotFound, api.TypeNotFound, "no such file")
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
	mux.HandleFunc("POST /portal/api/session", p.exchange)
	mux.HandleFunc("GET /portal/api/session", p.whoami)
	mux.HandleFunc("DELETE /portal/api/session", p.signOut)
	for _, route := range apiRoutes {
		method, path, _ := strings.Cut(route, " ")
		mux.Handle(method+" /portal/api"+path, p.forward(v1))
	}
	mux.HandleFunc("/portal/", func(w http.ResponseWriter, _ *http.Request) {
		api.WriteProblem(w, http.StatusNotFound, api.TypeNotFound, "no such page or operation in the portal")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The pattern that serves it, or "portal" (an unknown path); a
		// /v1/ operation passed on becomes "portal <its pattern>".
		route := api.PortalRoute
		if _, pattern := mux.Handler(r); pattern != "" && pattern != "/portal/" {
			route += " " + pattern
		}
		api.SetRoute(r, route)
		h := w.Header()
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		if strings.HasPrefix(r.URL.Path, "/portal/api/") {
			h.Set("Cache-Control", "no-store")
			// A cross-site page can neither read these answers (no CORS)
			// nor send the SameSite=Strict cookie; refuse it outright.
			if r.Header.Get("Sec-Fetch-Site") == "cross-site" {
				api.WriteProblem(w, http.StatusForbidden, api.TypeForbidden, "cross-site requests to the portal API are refused")
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// session authenticates the request: a bearer token (the page's memory)
// or the cookie. It answers 401 or 503 itself and returns false then.
func (p *Portal) session(w http.ResponseWriter, r *http.Request) (Claims, bool, bool) {
	c, _, viaCookie, ok := p.authenticate(w, r)
	return c, viaCookie, ok
}

// authenticate is session that also returns the token.
func (p *Portal) authenticate(w http.ResponseWriter, r *http.Request) (Claims, string, bool, bool) {
	tok, viaCookie := "", false
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			p.unauthorized(w, r, "send the portal session token as `Authorization: Bearer <token>`")
			return Claims{}, "", false, false
		}
		tok = strings.TrimSpace(t)
	} else if c, err := r.Cookie(CookieName); err == nil {
		tok, viaCookie = c.Value, true
	}
	if tok == "" {
		p.unauthorized(w, r, "no portal session: open the portal with the link your platform gave you")
		return Claims{}, "", false, false
	}
	c, err := Verify(p.key, tok, p.now())
	if err != nil {
		detail := "the portal session is not valid: open the portal again from your platform"
		if errors.Is(err, ErrExpired) {
			detail = "the portal session has expired: open the portal again from your platform"
		}
		p.unauthorized(w, r, detail)
		return Claims{}, "", false, false
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	revoked, err := p.rev.revoked(ctx, c)
	if err != nil {
		p.log.Warn("portal session not checked: revocations unreadable", zap.String("session_id", c.ID), zap.Error(err))
		w.Header().Set("Retry-After", "1")
		api.WriteProblem(w, http.StatusServiceUnavailable, api.TypeUnavailable, "the portal session could not be checked (NATS); retry")
		return Claims{}, "", false, false
	}
	if revoked {
		p.unauthorized(w, r, "the portal session was revoked: open the portal again from your platform")
		return Claims{}, "", false, false
	}
	return c, tok, viaCookie, true
}

func (p *Portal) unauthorized(w http.ResponseWriter, r *http.Request, detail string) {
	if _, err := r.Cookie(CookieName); err == nil {
		p.clearCookie(w, r)
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="hookline-portal"`)
	api.WriteProblem(w, http.StatusUnauthorized, auth.TypeUnauthorized, detail)
}

func (p *Portal) secure(r *http.Request) bool {
	return r.TLS != nil || strings.HasPrefix(p.cfg.URL, "https://")
}

func (p *Portal) clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/portal/", MaxAge: -1,
		HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteStrictMode})
}

// sessionInfo is what the page learns about its session.
type sessionInfo struct {
	ID              string    `json:"id"`
	Tenant          string    `json:"tenant"`
	SubscriptionIDs []string  `json:"subscription_ids,omitempty"`
	ReadOnly        bool      `json:"read_only"`
	ExpiresAt       time.Time `json:"expires_at"`
	CSRFToken       string    `json:"csrf_token"`
}

func (p *Portal) info(c Claims) sessionInfo {
	return sessionInfo{ID: c.ID, Tenant: c.Tenant, SubscriptionIDs: c.Subscriptions, ReadOnly: c.ReadOnly,
		ExpiresAt: c.ExpiresAt(), CSRFToken: csrfToken(p.key, c.ID)}
}

// exchange trades the bearer token of the URL for the session cookie.
func (p *Portal) exchange(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") == "" {
		p.unauthorized(w, r, "send the portal session token as `Authorization: Bearer <token>`")
		return
	}
	c, tok, _, ok := p.authenticate(w, r)
	if !ok {
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok,
		Path: "/portal/", Expires: c.ExpiresAt(), HttpOnly: true, Secure: p.secure(r), SameSite: http.SameSiteStrictMode})
	p.log.Info("portal session opened", zap.String("session_id", c.ID), zap.String("tenant", c.Tenant))
	writeJSON(w, p.info(c))
}

func (p *Portal) whoami(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := p.session(w, r); ok {
		writeJSON(w, p.info(c))
	}
}

// signOut revokes the session and forgets the cookie.
func (p *Portal) signOut(w http.ResponseWriter, r *http.Request) {
	c, viaCookie, ok := p.session(w, r)
	if !ok || !p.csrfOK(w, r, c, viaCookie) {
		return
	}
	if err := p.rev.revoke(r.Context(), c.Tenant, c.ID); err != nil {
		p.log.Warn("portal session not revoked", zap.String("session_id", c.ID), zap.Error(err))
		api.WriteProblem(w, http.StatusServiceUnavailable, api.TypeUnavailable, "the portal session could not be ended (NATS); retry")
		return
	}
	p.clearCookie(w, r)
	p.log.Info("portal session signed out", zap.String("session_id", c.ID))
	w.WriteHeader(http.StatusNoContent)
}

// csrfOK checks the CSRF header of a change made with the cookie; a bearer
// token cannot be forged cross-site and needs none.
func (p *Portal) csrfOK(w http.ResponseWriter, r *http.Request, c Claims, viaCookie bool) bool {
	if !viaCookie || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(csrfToken(p.key, c.ID))) == 1 {
		return true
	}
	api.WriteProblem(w, http.StatusForbidden, api.TypeForbidden, "missing or wrong "+CSRFHeader+" header (the session's csrf_token)")
	return false
}

// forward passes an allowed call to the API's handler as the session's
// principal: its tenant and subscriptions bind every handler.
func (p *Portal) forward(v1 http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, viaCookie, ok := p.session(w, r)
		if !ok || !p.csrfOK(w, r, c, viaCookie) {
			return
		}
		if c.ReadOnly && r.Method != http.MethodGet && r.Method != http.MethodHead {
			api.WriteProblem(w, http.StatusForbidden, api.TypeForbidden, "this portal session is read-only")
			return
		}
		pr := auth.Principal{Name: "portal:" + c.ID, Scopes: []string{auth.ScopeAdmin}, Tenant: c.Tenant, Subscriptions: c.Subscriptions}
		r2 := r.Clone(auth.WithPrincipal(r.Context(), pr))
		r2.URL.Path = strings.TrimPrefix(r.URL.Path, "/portal/api")
		r2.URL.RawPath = ""
		r2.RequestURI = r2.URL.RequestURI()
		r2.Header.Del("Authorization")
		r2.Header.Del("Cookie")
		v1.ServeHTTP(w, r2)
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	api.WriteJSON(w, http.StatusOK, v)
}
