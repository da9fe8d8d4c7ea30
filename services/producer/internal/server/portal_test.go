package server_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hookline/hookline/pkg/endpointhealth"
	"github.com/hookline/hookline/pkg/fixture"
	"github.com/hookline/hookline/pkg/stream"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"github.com/hookline/hookline/services/producer/internal/portal"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func redisZ(expiry time.Time, member string) redis.Z {
	return redis.Z{Score: float64(expiry.UnixMilli()), Member: member}
}

func timestamp(t time.Time) *timestamppb.Timestamp { return timestamppb.New(t) }

// portalKey is HOOKLINE_PORTAL_KEY in these tests: the test signs tokens
// of its own with it (an expired one) and with another key (a forgery).
var portalKey = []byte("0123456789abcdef0123456789abcdef")

func portalEnv() map[string]string {
	return map[string]string{
		"HOOKLINE_API_TOKENS":             tokens(),
		"HOOKLINE_PORTAL_KEY":             base64.StdEncoding.EncodeToString(portalKey),
		"HOOKLINE_PORTAL_FRAME_ANCESTORS": "https://app.example.com",
	}
}

// portalCall is one request to the portal as a browser would send it:
// the session token as a bearer (the page's memory) or the cookie, and
// the CSRF header.
type portalCall struct {
	bearer, cookie, csrf string
	header               map[string]string
}

func (e *env) portal(c portalCall, method, path, body string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.base+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != "" {
		req.AddCookie(&http.Cookie{Name: portal.CookieName, Value: c.cookie})
	}
	if c.csrf != "" {
		req.Header.Set(portal.CSRFHeader, c.csrf)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// session opens a portal session as the unbound admin token.
func (e *env) session(tenant, body string) (token, id string) {
	e.t.Helper()
	r := e.doAs(tokAdmin, "POST", "/v1/tenants/"+tenant+"/portal-sessions", body)
	expect(e.t, r, http.StatusCreated)
	m := r.json(e.t)
	return m["token"].(string), m["id"].(string)
}

// TestPortalSessions: creating sessions (who may, what is refused), the
// URL and its fragment, the cookie exchange, CSRF, read-only, expiry,
// forgery, revocation (one and all), and no token in the logs.
func TestPortalSessions(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	acme := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["order.*"]}`)
	expect(t, acme, http.StatusCreated)
	acmeID := acme.json(t)["id"].(string)
	globex := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"globex","url":"https://globex.example/h","event_types":[">"]}`)
	expect(t, globex, http.StatusCreated)
	globexID := globex.json(t)["id"].(string)

	// Who may open one, and what is refused.
	for _, tt := range []struct {
		name, token, tenant, body string
		status                    int
	}{
		{"no token", "", "acme", `{}`, 401},
		{"publish scope", tokPublishAcme, "acme", `{}`, 403},
		{"another tenant's token", tokAdminAcme, "globex", `{}`, 403},
		{"bad tenant", tokAdmin, "Not_A_Tenant", `{}`, 400},
		{"ttl too short", tokAdmin, "acme", `{"ttl_seconds":5}`, 422},
		{"ttl too long", tokAdmin, "acme", `{"ttl_seconds":86401}`, 422},
		{"another tenant's subscription", tokAdmin, "acme", `{"subscription_ids":["` + globexID + `"]}`, 422},
		{"unknown subscription", tokAdmin, "acme", `{"subscription_ids":["sub_01NOPE"]}`, 422},
		{"empty subscription list", tokAdmin, "acme", `{"subscription_ids":[]}`, 422},
		{"unknown field", tokAdmin, "acme", `{"tenant":"globex"}`, 400},
		{"bound token, own tenant", tokAdminAcme, "acme", `{"read_only":true}`, 201},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := e.doAs(tt.token, "POST", "/v1/tenants/"+tt.tenant+"/portal-sessions", tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
		})
	}

	r := e.doAs(tokAdmin, "POST", "/v1/tenants/acme/portal-sessions", `{"ttl_seconds":600}`)
	expect(t, r, http.StatusCreated)
	m := r.json(t)
	tok, sid := m["token"].(string), m["id"].(string)
	if want := e.base + "/portal/#session=" + tok; m["url"] != want {
		t.Fatalf("url %q, want %q (the token in the fragment)", m["url"], want)
	}
	exp, err := time.Parse(time.RFC3339Nano, m["expires_at"].(string))
	if err != nil || exp.Before(time.Now().Add(590*time.Second)) || exp.After(time.Now().Add(610*time.Second)) {
		t.Fatalf("expires_at %v (%v), want in 10 minutes", m["expires_at"], err)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("a session answer may be cached: %v", r.Header)
	}

	// The exchange: the bearer token for an HttpOnly, SameSite=Strict cookie.
	ex := e.portal(portalCall{bearer: tok}, "POST", "/portal/api/session", "")
	expect(t, ex, http.StatusOK)
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: ex.Header}).Cookies() {
		if c.Name == portal.CookieName {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != tok || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Path != "/portal/" {
		t.Fatalf("session cookie %+v; want HttpOnly, SameSite=Strict, Path=/portal/", cookie)
	}
	info := ex.json(t)
	csrf, _ := info["csrf_token"].(string)
	if info["tenant"] != "acme" || info["id"] != sid || csrf == "" || strings.Contains(string(ex.Body), tok) {
		t.Fatalf("session info %s", ex.Body)
	}
	expect(t, e.portal(portalCall{}, "POST", "/portal/api/session", ""), http.StatusUnauthorized)

	viaCookie := portalCall{cookie: tok, csrf: csrf}
	expect(t, e.portal(portalCall{cookie: tok}, "GET", "/portal/api/session", ""), http.StatusOK)
	expect(t, e.portal(viaCookie, "GET", "/portal/api/v1/subscriptions?tenant=acme", ""), http.StatusOK)
	// CSRF: a change made with the cookie needs the session's token; a
	// bearer needs none.
	body := `{"tenant":"acme","url":"https://acme.example/new","event_types":["a"]}`
	expect(t, e.portal(portalCall{cookie: tok}, "POST", "/portal/api/v1/subscriptions", body), http.StatusForbidden)
	expect(t, e.portal(portalCall{cookie: tok, csrf: "nope"}, "POST", "/portal/api/v1/subscriptions", body), http.StatusForbidden)
	expect(t, e.portal(viaCookie, "POST", "/portal/api/v1/subscriptions", body), http.StatusCreated)
	expect(t, e.portal(portalCall{bearer: tok}, "PATCH", "/portal/api/v1/subscriptions/"+acmeID, `{"description":"d"}`), http.StatusOK)
	// A cross-site request is refused even with the right headers.
	expect(t, e.portal(portalCall{cookie: tok, csrf: csrf, header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, "GET", "/portal/api/v1/subscriptions?tenant=acme", ""), http.StatusForbidden)
	// Only the allowed operations: no publishing, no purge, no sessions.
	expect(t, e.portal(portalCall{bearer: tok}, "POST", "/portal/api/v1/events", `{"tenant":"acme","type":"a","data":{}}`), http.StatusNotFound)
	expect(t, e.portal(portalCall{bearer: tok}, "DELETE", "/portal/api/v1/dead-letters/1", ""), http.StatusNotFound)
	expect(t, e.portal(portalCall{bearer: tok}, "POST", "/portal/api/v1/tenants/acme/portal-sessions", `{}`), http.StatusNotFound)
	// A portal token is no API token, and an API token no portal session.
	expect(t, e.doAs(tok, "GET", "/v1/subscriptions?tenant=acme", ""), http.StatusUnauthorized)
	expect(t, e.portal(portalCall{bearer: tokAdmin}, "GET", "/portal/api/v1/subscriptions?tenant=acme", ""), http.StatusUnauthorized)

	// Read-only.
	ro, _ := e.session("acme", `{"read_only":true}`)
	expect(t, e.portal(portalCall{bearer: ro}, "GET", "/portal/api/v1/subscriptions/"+acmeID, ""), http.StatusOK)
	expect(t, e.portal(portalCall{bearer: ro}, "PATCH", "/portal/api/v1/subscriptions/"+acmeID, `{"disabled":true}`), http.StatusForbidden)
	expect(t, e.portal(portalCall{bearer: ro}, "POST", "/portal/api/v1/subscriptions/"+acmeID+"/test", ""), http.StatusForbidden)

	// Expired, forged, tampered, malformed.
	now := time.Now()
	expired := portal.Sign(portalKey, portal.Claims{Version: 1, ID: "ps_01EXPIRED0000000000000000", Tenant: "acme",
		IssuedAt: now.Add(-2 * time.Hour).UnixMilli(), Expires: now.Add(-time.Hour).UnixMilli()})
	forged := portal.Sign([]byte("another key, another key, anoth!"), portal.Claims{Version: 1, ID: "ps_01FORGED00000000000000000", Tenant: "globex",
		IssuedAt: now.UnixMilli(), Expires: now.Add(time.Hour).UnixMilli()})
	payload, sig, _ := strings.Cut(tok, ".")
	raw, _ := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(payload, "hlps_"))
	tampered := "hlps_" + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(raw), `"acme"`, `"globex"`, 1))) + "." + sig
	for name, bad := range map[string]string{"expired": expired, "forged": forged, "tampered": tampered, "malformed": "hlps_x", "api token": tokAdmin} {
		r := e.portal(portalCall{bearer: bad}, "GET", "/portal/api/v1/subscriptions?tenant=acme", "")
		if r.Status != http.StatusUnauthorized {
			t.Errorf("%s token: status %d, want 401: %s", name, r.Status, r.Body)
		}
		if c := e.portal(portalCall{cookie: bad}, "GET", "/portal/api/session", ""); c.Status != http.StatusUnauthorized || !strings.Contains(c.Header.Get("Set-Cookie"), "Max-Age=0") {
			t.Errorf("%s cookie: status %d, Set-Cookie %q: want 401 and the cookie cleared", name, c.Status, c.Header.Get("Set-Cookie"))
		}
	}
	if r := e.portal(portalCall{bearer: expired}, "GET", "/portal/api/session", ""); !strings.Contains(string(r.Body), "expired") {
		t.Errorf("an expired session is not told so: %s", r.Body)
	}

	// Revoking one session ends it on its next request, cookie or bearer.
	other, _ := e.session("acme", `{}`)
	expect(t, e.doAs(tokAdminAcme, "DELETE", "/v1/tenants/globex/portal-sessions/"+sid, ""), http.StatusForbidden)
	expect(t, e.doAs(tokAdminAcme, "DELETE", "/v1/tenants/acme/portal-sessions/nope", ""), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "DELETE", "/v1/tenants/acme/portal-sessions/"+sid, ""), http.StatusNoContent)
	expect(t, e.portal(viaCookie, "GET", "/portal/api/v1/subscriptions?tenant=acme", ""), http.StatusUnauthorized)
	expect(t, e.portal(portalCall{bearer: tok}, "GET", "/portal/api/session", ""), http.StatusUnauthorized)
	expect(t, e.portal(portalCall{bearer: other}, "GET", "/portal/api/session", ""), http.StatusOK)
	// Signing out revokes the session too.
	mine, _ := e.session("acme", `{}`)
	expect(t, e.portal(portalCall{bearer: mine}, "DELETE", "/portal/api/session", ""), http.StatusNoContent)
	expect(t, e.portal(portalCall{bearer: mine}, "GET", "/portal/api/session", ""), http.StatusUnauthorized)
	// Revoking all of a tenant's sessions ends those issued before, not
	// the next ones, nor another tenant's.
	g, _ := e.session("globex", `{}`)
	expect(t, e.doAs(tokAdmin, "DELETE", "/v1/tenants/acme/portal-sessions", ""), http.StatusNoContent)
	expect(t, e.portal(portalCall{bearer: other}, "GET", "/portal/api/session", ""), http.StatusUnauthorized)
	expect(t, e.portal(portalCall{bearer: g}, "GET", "/portal/api/session", ""), http.StatusOK)
	eventually(t, "a session issued after revoking all", func() bool {
		next, _ := e.session("acme", `{}`)
		return e.portal(portalCall{bearer: next}, "GET", "/portal/api/session", "").Status == http.StatusOK
	})

	// No token, cookie or CSRF token in any log line.
	for _, entry := range e.logs.All() {
		line := stringify(entry.ContextMap()) + entry.Message
		if strings.Contains(line, "hlps_") || strings.Contains(line, csrf) {
			t.Fatalf("a portal token was logged: %s", line)
		}
	}
}

// TestPortalTenantIsolation: a session of tenant acme can neither see nor
// change anything of tenant globex, on every operation the portal allows;
// a session limited to one subscription sees nothing of the others.
func TestPortalTenantIsolation(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mk := func(tenant, url string) string {
		r := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"`+tenant+`","url":"`+url+`","event_types":["order.*"]}`)
		expect(t, r, http.StatusCreated)
		return r.json(t)["id"].(string)
	}
	a1, a2, g := mk("acme", "https://acme.example/1"), mk("acme", "https://acme.example/2"), mk("globex", "https://globex.example/1")
	ev := e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"globex","type":"order.created","id":"ord_1","data":{}}`)
	expect(t, ev, http.StatusAccepted)
	expect(t, e.doAs(tokAdmin, "POST", "/v1/events", `{"tenant":"acme","type":"order.created","id":"ord_1","data":{}}`), http.StatusAccepted)
	gdl, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: "ord_1", Tenant: "globex", SubscriptionId: g, EventType: "order.created", LastStatus: 500})
	if err != nil {
		t.Fatal(err)
	}
	a2dl, err := fixture.DeadLetter(ctx, e.js, &hooklinev1.DeadLetter{EventId: "ord_1", Tenant: "acme", SubscriptionId: a2, EventType: "order.created", LastStatus: 500})
	if err != nil {
		t.Fatal(err)
	}
	fixture.Replayer(t, e.nats)
	gJob := e.doAs(tokAdmin, "POST", "/v1/replays", `{"source":"dead_letters","subscription_id":"`+g+`","rate":0.1}`)
	expect(t, gJob, http.StatusAccepted)
	gJobID := gJob.json(t)["id"].(string)

	acme, _ := e.session("acme", `{}`)
	only, _ := e.session("acme", `{"subscription_ids":["`+a1+`"]}`)
	isolation := []struct {
		name, token, method, path, body string
		status                          int
	}{
		{"list other tenant", acme, "GET", "/portal/api/v1/subscriptions?tenant=globex", "", 403},
		{"get other tenant's", acme, "GET", "/portal/api/v1/subscriptions/" + g, "", 404},
		{"change other tenant's", acme, "PATCH", "/portal/api/v1/subscriptions/" + g, `{"disabled":true}`, 404},
		{"delete other tenant's", acme, "DELETE", "/portal/api/v1/subscriptions/" + g, "", 404},
		{"rotate other tenant's", acme, "POST", "/portal/api/v1/subscriptions/" + g + "/rotate-secret", "", 404},
		{"test other tenant's", acme, "POST", "/portal/api/v1/subscriptions/" + g + "/test", "", 404},
		{"attempts of other tenant's", acme, "GET", "/portal/api/v1/subscriptions/" + g + "/attempts", "", 404},
		{"health of other tenant's", acme, "GET", "/portal/api/v1/subscriptions/" + g + "/health", "", 404},
		{"create for other tenant", acme, "POST", "/portal/api/v1/subscriptions", `{"tenant":"globex","url":"https://x.example/","event_types":["a"]}`, 403},
		{"events of other tenant", acme, "GET", "/portal/api/v1/events?tenant=globex", "", 403},
		{"event of other tenant", acme, "GET", "/portal/api/v1/events/ord_1?tenant=globex", "", 404},
		{"deliveries of other tenant's event", acme, "GET", "/portal/api/v1/events/ord_1/deliveries?tenant=globex", "", 404},
		{"dead letters of other tenant", acme, "GET", "/portal/api/v1/dead-letters?tenant=globex", "", 403},
		{"dead letter of other tenant", acme, "GET", fmt.Sprintf("/portal/api/v1/dead-letters/%d", gdl), "", 404},
		{"replay other tenant", acme, "POST", "/portal/api/v1/replays", `{"source":"dead_letters","tenant":"globex","dry_run":true}`, 403},
		{"back-fill other tenant's", acme, "POST", "/portal/api/v1/replays", `{"source":"events","subscription_id":"` + g + `"}`, 404},
		{"other tenant's job", acme, "GET", "/portal/api/v1/replays/" + gJobID, "", 404},
		{"cancel other tenant's job", acme, "DELETE", "/portal/api/v1/replays/" + gJobID, "", 404},
		{"own tenant", acme, "GET", "/portal/api/v1/subscriptions/" + a2, "", 200},
		{"own event", acme, "GET", "/portal/api/v1/events/ord_1?tenant=acme", "", 200},

		{"limited: the other subscription", only, "GET", "/portal/api/v1/subscriptions/" + a2, "", 404},
		{"limited: change the other", only, "PATCH", "/portal/api/v1/subscriptions/" + a2, `{"disabled":true}`, 404},
		{"limited: attempts of the other", only, "GET", "/portal/api/v1/subscriptions/" + a2 + "/attempts", "", 404},
		{"limited: create", only, "POST", "/portal/api/v1/subscriptions", `{"tenant":"acme","url":"https://x.example/","event_types":["a"]}`, 403},
		{"limited: the event log", only, "GET", "/portal/api/v1/events", "", 403},
		{"limited: every dead letter", only, "GET", "/portal/api/v1/dead-letters", "", 403},
		{"limited: the other's dead letters", only, "GET", "/portal/api/v1/dead-letters?subscription_id=" + a2, "", 403},
		{"limited: the other's dead letter", only, "GET", fmt.Sprintf("/portal/api/v1/dead-letters/%d", a2dl), "", 404},
		{"limited: replay the tenant", only, "POST", "/portal/api/v1/replays", `{"source":"dead_letters","dry_run":true}`, 403},
		{"limited: replay the other", only, "POST", "/portal/api/v1/replays", `{"source":"dead_letters","subscription_id":"` + a2 + `","dry_run":true}`, 403},
		{"limited: its own", only, "GET", "/portal/api/v1/subscriptions/" + a1, "", 200},
		{"limited: its own dead letters", only, "GET", "/portal/api/v1/dead-letters?subscription_id=" + a1, "", 200},
		{"limited: its own replay", only, "POST", "/portal/api/v1/replays", `{"source":"dead_letters","subscription_id":"` + a1 + `","dry_run":true}`, 200},
	}
	for _, tt := range isolation {
		t.Run(tt.name, func(t *testing.T) {
			r := e.portal(portalCall{bearer: tt.token}, tt.method, tt.path, tt.body)
			if r.Status != tt.status {
				t.Fatalf("status %d, want %d: %s", r.Status, tt.status, r.Body)
			}
		})
	}
	// Every operation a session may call was tried against globex.
	mux := http.NewServeMux()
	for _, route := range portal.APIRoutes() {
		method, path, _ := strings.Cut(route, " ")
		mux.Handle(method+" /portal/api"+path, http.NotFoundHandler())
	}
	tried := map[string]bool{}
	for _, tt := range isolation {
		if tt.token != acme || tt.status < 400 {
			continue
		}
		req, _ := http.NewRequest(tt.method, "http://x"+tt.path, nil)
		_, pattern := mux.Handler(req)
		tried[pattern] = true
	}
	for _, route := range portal.APIRoutes() {
		method, path, _ := strings.Cut(route, " ")
		if !tried[method+" /portal/api"+path] {
			t.Errorf("%s is not tried against another tenant", route)
		}
	}
	// Listings hold only what the session may see.
	if l := string(e.portal(portalCall{bearer: only}, "GET", "/portal/api/v1/subscriptions?tenant=acme", "").Body); !strings.Contains(l, a1) || strings.Contains(l, a2) {
		t.Fatalf("limited listing: %s", l)
	}
	if l := string(e.portal(portalCall{bearer: acme}, "GET", "/portal/api/v1/dead-letters", "").Body); strings.Contains(l, g) || !strings.Contains(l, a2) {
		t.Fatalf("acme's dead letters: %s", l)
	}
	// globex's subscription and job are untouched.
	if got := e.doAs(tokAdmin, "GET", "/v1/subscriptions/"+g, "").json(t); got["disabled"] != false {
		t.Fatalf("globex subscription changed: %v", got)
	}
	if st := e.doAs(tokAdmin, "GET", "/v1/replays/"+gJobID, "").json(t)["state"]; st == "cancelled" {
		t.Fatal("globex's job was cancelled by an acme session")
	}
}

// TestPortalPages: the page and its assets come with a strict CSP (no
// inline script or style, the configured frame-ancestors), nosniff and no
// referrer; unknown paths are 404s; the theme follows the settings.
func TestPortalPages(t *testing.T) {
	t.Parallel()
	env := portalEnv()
	env["HOOKLINE_PORTAL_ACCENT_COLOR"] = "#ff0066"
	env["HOOKLINE_PORTAL_NAME"] = "Acme <Webhooks>"
	e := start(t, env)
	page := e.do("GET", "/portal/", nil)
	expect(t, page, http.StatusOK)
	csp := page.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "style-src 'self'", "frame-ancestors https://app.example.com", "form-action 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe") {
		t.Errorf("CSP allows unsafe sources: %q", csp)
	}
	if page.Header.Get("X-Content-Type-Options") != "nosniff" || page.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("headers %v", page.Header)
	}
	html := string(page.Body)
	if !strings.Contains(html, "Acme &lt;Webhooks&gt;") || strings.Contains(html, "<Webhooks>") {
		t.Errorf("the name is not escaped: %s", html)
	}
	if strings.Contains(html, "<script>") || strings.Contains(html, "style=") || strings.Contains(html, " on") && strings.Contains(html, "onclick") {
		t.Errorf("inline script or style in the page")
	}
	for path, ctype := range map[string]string{"/portal/assets/app.js": "text/javascript", "/portal/assets/app.css": "text/css", "/portal/theme.css": "text/css"} {
		r := e.do("GET", path, nil)
		expect(t, r, http.StatusOK)
		if !strings.HasPrefix(r.Header.Get("Content-Type"), ctype) || r.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("%s: %v", path, r.Header)
		}
	}
	if th := string(e.do("GET", "/portal/theme.css", nil).Body); !strings.Contains(th, "--accent:#ff0066") {
		t.Errorf("theme %s", th)
	}
	expect(t, e.do("GET", "/portal/assets/index.html", nil), http.StatusNotFound)
	expect(t, e.do("GET", "/portal/nope", nil), http.StatusNotFound)
	r := e.do("GET", "/portal", nil)
	if r.Status != http.StatusOK { // followed the redirect
		t.Fatalf("/portal: %d", r.Status)
	}
}

// TestSubscriptionHealth: what the deliverers keep in Redis (an open
// circuit, leases in flight) and the attempt records of the last hour.
func TestSubscriptionHealth(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["a"]}`)
	expect(t, sub, http.StatusCreated)
	id := sub.json(t)["id"].(string)

	h := e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/health", "").json(t)
	if c := h["circuit"].(map[string]any); c["state"] != "closed" || h["in_flight"] != float64(0) || h["last_hour"].(map[string]any)["attempts"] != float64(0) {
		t.Fatalf("fresh health %v", h)
	}
	now := time.Now()
	// What a deliverer writes: five failures, open for a minute, two leases.
	if err := e.rdb.HSet(ctx, endpointhealth.BreakerKey(id), "failures", 5, "since", now.Add(-time.Minute).UnixMilli(),
		"open_until", now.Add(time.Minute).UnixMilli(), "opens", 1).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.ZAdd(ctx, endpointhealth.InFlightKey(id), redisZ(now.Add(time.Minute), "l1"), redisZ(now.Add(time.Minute), "l2"), redisZ(now.Add(-time.Minute), "expired")).Err(); err != nil {
		t.Fatal(err)
	}
	var atts []*hooklinev1.Attempt
	for i := range 4 {
		o, st := "success", int32(200)
		if i > 0 {
			o, st = "retry", 500
		}
		atts = append(atts, &hooklinev1.Attempt{EventId: fmt.Sprintf("e%d", i), Tenant: "acme", SubscriptionId: id, EventType: "a", Attempt: 1,
			Status: st, Outcome: o, DurationSeconds: float64(i+1) / 10, StartedAt: timestamp(now.Add(-time.Duration(i) * time.Minute))})
	}
	if _, err := fixture.Attempts(ctx, e.js, atts...); err != nil {
		t.Fatal(err)
	}
	h = e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/health", "").json(t)
	c := h["circuit"].(map[string]any)
	if c["state"] != "open" || c["consecutive_failures"] != float64(5) || c["opens"] != float64(1) || c["open_until"] == nil || h["in_flight"] != float64(2) {
		t.Fatalf("health %v", h)
	}
	hour := h["last_hour"].(map[string]any)
	if hour["attempts"] != float64(4) || hour["successes"] != float64(1) || hour["success_ratio"] != 0.25 || hour["latency_p50_seconds"] != 0.2 {
		t.Fatalf("last hour %v", hour)
	}
	var inBuckets float64
	for _, b := range h["buckets"].([]any) {
		bm := b.(map[string]any)
		inBuckets += bm["successes"].(float64) + bm["failures"].(float64)
	}
	if inBuckets != 4 {
		t.Fatalf("buckets hold %v attempts, want 4: %v", inBuckets, h["buckets"])
	}
	if d := h["deferrals_last_hour"].(map[string]any); d["total"] != float64(0) {
		t.Fatalf("deferrals before any: %v", d)
	}
	// What the deliverers count: six rate-limit deferrals and one of an
	// open circuit in the last hour, 40 two hours ago.
	pipe := e.rdb.Pipeline()
	endpointhealth.AddDeferrals(ctx, pipe, id, "rate_limited", now, 6)
	endpointhealth.AddDeferrals(ctx, pipe, id, "circuit_open", now.Add(-20*time.Minute), 1)
	endpointhealth.AddDeferrals(ctx, pipe, id, "rate_limited", now.Add(-2*time.Hour), 40)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	h = e.doAs(tokAdminAcme, "GET", "/v1/subscriptions/"+id+"/health", "").json(t)
	d := h["deferrals_last_hour"].(map[string]any)
	if by := d["by_reason"].(map[string]any); d["total"] != float64(7) || by["rate_limited"] != float64(6) || by["circuit_open"] != float64(1) {
		t.Fatalf("deferrals of the last hour %v, want 6 rate_limited and 1 circuit_open", d)
	}
}

// TestResendOneEvent: a back-fill job with event_id sends that one event
// again, even when it was delivered, and nothing else of the window.
func TestResendOneEvent(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	fixture.Replayer(t, e.nats)
	sub := e.doAs(tokAdmin, "POST", "/v1/subscriptions", `{"tenant":"acme","url":"https://acme.example/h","event_types":["order.*"]}`)
	expect(t, sub, http.StatusCreated)
	id := sub.json(t)["id"].(string)
	for i := range 3 {
		expect(t, e.doAs(tokAdmin, "POST", "/v1/events", fmt.Sprintf(`{"tenant":"acme","type":"order.created","id":"ord_%d","data":{}}`, i)), http.StatusAccepted)
	}
	dry := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+id+`","event_id":"ord_1","dry_run":true}`)
	expect(t, dry, http.StatusOK)
	if d := dry.json(t); d["count"] != float64(1) || !strings.Contains(string(dry.Body), `"id":"ord_1"`) {
		t.Fatalf("dry run %s", dry.Body)
	}
	expect(t, e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+id+`","event_id":"nope"}`), http.StatusNotFound)
	expect(t, e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+id+`","event_id":"ord_1","since":"2026-01-01T00:00:00Z"}`), http.StatusUnprocessableEntity)
	expect(t, e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"dead_letters","event_id":"ord_1"}`), http.StatusUnprocessableEntity)
	job := e.doAs(tokAdminAcme, "POST", "/v1/replays", `{"source":"events","subscription_id":"`+id+`","event_id":"ord_1"}`)
	expect(t, job, http.StatusAccepted)
	jobID := job.json(t)["id"].(string)
	var j map[string]any
	eventually(t, "the resend job to finish", func() bool {
		j = e.doAs(tokAdminAcme, "GET", "/v1/replays/"+jobID, "").json(t)
		return j["state"] != "running"
	})
	if j["state"] != "done" || j["total"] != float64(1) || j["done"] != float64(1) {
		t.Fatalf("job %v", j)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tasks, err := fixture.Tasks(ctx, e.js)
	if err != nil {
		t.Fatal(err)
	}
	var resent []string
	for _, tk := range tasks {
		resent = append(resent, tk.Header.Get(stream.HeaderEventID))
	}
	if len(resent) != 1 || resent[0] != "ord_1" {
		t.Fatalf("tasks published: %v, want ord_1 only", resent)
	}
}

// TestPortalSessionsOutliveTheProducer: a session is a signed token and its
// revocation a NATS KV entry, so a restarted producer (another replica,
// same key) honours both; flushing Redis brings no revoked session back;
// and one tenant's admin cannot revoke another tenant's session by its id.
func TestPortalSessionsOutliveTheProducer(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	keep, keepID := e.session("acme", `{}`)
	gone, goneID := e.session("acme", `{}`)
	globex, globexID := e.session("globex", `{}`)
	expect(t, e.doAs(tokAdmin, "DELETE", "/v1/tenants/acme/portal-sessions/"+goneID, ""), http.StatusNoContent)
	// acme's admin names globex's session under its own tenant: nothing
	// of globex's is revoked.
	expect(t, e.doAs(tokAdminAcme, "DELETE", "/v1/tenants/acme/portal-sessions/"+globexID, ""), http.StatusNoContent)
	expect(t, e.portal(portalCall{bearer: globex}, "GET", "/portal/api/session", ""), http.StatusOK)

	if err := e.stop(); err != nil {
		t.Fatal(err)
	}
	if err := e.rdb.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	e2 := startOn(t, e.nats.URL(), e.redis.Addr, portalEnv())
	e2.awaitReady()
	// The scheme is case-insensitive, and the exchange sets the token
	// itself as the cookie.
	ex := e2.portal(portalCall{header: map[string]string{"Authorization": "bearer " + keep}}, "POST", "/portal/api/session", "")
	expect(t, ex, http.StatusOK)
	if c := ex.Header.Get("Set-Cookie"); !strings.HasPrefix(c, portal.CookieName+"="+keep+";") {
		t.Fatalf("cookie %q", c)
	}
	if id := ex.json(t)["id"]; id != keepID {
		t.Fatalf("session %v, want %s", id, keepID)
	}
	expect(t, e2.portal(portalCall{bearer: gone}, "GET", "/portal/api/session", ""), http.StatusUnauthorized)
	expect(t, e2.portal(portalCall{bearer: globex}, "GET", "/portal/api/session", ""), http.StatusOK)

	// Without NATS no revocation can be read: refused, never let through.
	e.nats.Shutdown()
	e.nats.WaitForShutdown()
	down := e2.portal(portalCall{bearer: keep}, "GET", "/portal/api/session", "")
	expect(t, down, http.StatusServiceUnavailable)
	if down.Header.Get("Retry-After") == "" {
		t.Fatalf("503 without Retry-After: %v", down.Header)
	}
	e.nats.Restart(t)
	eventually(t, "the session again once NATS is back", func() bool {
		return e2.portal(portalCall{bearer: keep}, "GET", "/portal/api/session", "").Status == http.StatusOK
	})
}

// TestPortalAccessLog: the portal's requests are named in the access log
// (and the request metrics) by route, never by path or token.
func TestPortalAccessLog(t *testing.T) {
	t.Parallel()
	e := start(t, portalEnv())
	tok, _ := e.session("acme", `{}`)
	expect(t, e.do("GET", "/portal/", nil), http.StatusOK)
	expect(t, e.portal(portalCall{bearer: tok}, "GET", "/portal/api/v1/subscriptions?tenant=acme", ""), http.StatusOK)
	expect(t, e.portal(portalCall{bearer: tok}, "POST", "/portal/api/session", ""), http.StatusOK)
	expect(t, e.do("GET", "/portal/nope/"+tok, nil), http.StatusNotFound)
	routes := map[string]bool{}
	for _, entry := range e.logs.FilterMessage("http request").All() {
		routes[fmt.Sprint(entry.ContextMap()["route"])] = true
	}
	for _, want := range []string{"portal GET /portal/{$}", "portal GET /v1/subscriptions", "portal POST /portal/api/session", "portal"} {
		if !routes[want] {
			t.Errorf("no access log line with route %q: %v", want, routes)
		}
	}
	for r := range routes {
		if strings.Contains(r, "hlps_") {
			t.Errorf("a token in a route: %q", r)
		}
	}
}
