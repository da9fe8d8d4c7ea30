package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookline/hookline/pkg/auth"
)

const (
	publishToken = "tok_publish_acme_0123456789"
	adminToken   = "tok_admin_all_0123456789"
	acmeAdmin    = "tok_admin_acme_0123456789"
)

func spec() string {
	return strings.Join([]string{
		"# producer tokens",
		"ci:" + auth.HashToken(publishToken) + ":publish:acme",
		"ops:" + strings.ToUpper(auth.HashToken(adminToken)) + ":admin",
		"acme-admin:" + auth.HashToken(acmeAdmin) + ":publish|admin:acme",
	}, "\n")
}

// handler answers 204 when the caller may act on the tenant in ?tenant=,
// the way a producer handler uses CheckTenant after decoding its input.
func handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := auth.CheckTenant(r.Context(), r.URL.Query().Get("tenant")); err != nil {
			auth.WriteForbidden(w, err.Error())
			return
		}
		p, _ := auth.PrincipalFrom(r.Context())
		w.Header().Set("X-Principal", p.Name)
		w.WriteHeader(http.StatusNoContent)
	})
}

type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func TestRequire(t *testing.T) {
	t.Parallel()
	a, err := auth.Parse(spec())
	if err != nil {
		t.Fatal(err)
	}
	if !a.Enabled() {
		t.Fatal("three tokens configured, auth not enabled")
	}
	tests := []struct {
		name      string
		scope     string
		header    string
		tenant    string
		status    int
		principal string
		challenge string // part of WWW-Authenticate
	}{
		{name: "missing", scope: auth.ScopePublish, tenant: "acme", status: 401, challenge: "Bearer"},
		{name: "not bearer", scope: auth.ScopePublish, header: "Basic " + publishToken, tenant: "acme", status: 401, challenge: "Bearer"},
		{name: "empty bearer", scope: auth.ScopePublish, header: "Bearer ", tenant: "acme", status: 401, challenge: "Bearer"},
		{name: "wrong", scope: auth.ScopePublish, header: "Bearer nope", tenant: "acme", status: 401, challenge: "invalid_token"},
		{name: "hash as token", scope: auth.ScopePublish, header: "Bearer " + auth.HashToken(publishToken), tenant: "acme", status: 401, challenge: "invalid_token"},
		{name: "wrong scope", scope: auth.ScopeAdmin, header: "Bearer " + publishToken, tenant: "acme", status: 403, challenge: "insufficient_scope"},
		{name: "wrong tenant", scope: auth.ScopePublish, header: "Bearer " + publishToken, tenant: "globex", status: 403},
		{name: "right", scope: auth.ScopePublish, header: "Bearer " + publishToken, tenant: "acme", status: 204, principal: "ci"},
		{name: "scheme case-insensitive", scope: auth.ScopePublish, header: "bearer " + publishToken, tenant: "acme", status: 204, principal: "ci"},
		{name: "admin implies publish", scope: auth.ScopePublish, header: "Bearer " + adminToken, tenant: "globex", status: 204, principal: "ops"},
		{name: "unbound admin any tenant", scope: auth.ScopeAdmin, header: "Bearer " + adminToken, tenant: "initech", status: 204, principal: "ops"},
		{name: "bound admin other tenant", scope: auth.ScopeAdmin, header: "Bearer " + acmeAdmin, tenant: "globex", status: 403},
		{name: "bound admin own tenant", scope: auth.ScopeAdmin, header: "Bearer " + acmeAdmin, tenant: "acme", status: 204, principal: "acme-admin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := httptest.NewRequest(http.MethodPost, "/v1/events?tenant="+tt.tenant, nil)
			if tt.header != "" {
				req.Header.Set("Authorization", tt.header)
			}
			rec := httptest.NewRecorder()
			a.Require(tt.scope)(handler()).ServeHTTP(rec, req)
			res := rec.Result()
			body, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", res.StatusCode, tt.status, body)
			}
			if got := res.Header.Get("X-Principal"); got != tt.principal {
				t.Fatalf("principal %q, want %q", got, tt.principal)
			}
			if !strings.Contains(res.Header.Get("WWW-Authenticate"), tt.challenge) {
				t.Fatalf("WWW-Authenticate %q, want %q in it", res.Header.Get("WWW-Authenticate"), tt.challenge)
			}
			if tt.status == 401 && res.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
			if tt.status >= 400 {
				var p problem
				if ct := res.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("content type %q", ct)
				}
				if err := json.Unmarshal(body, &p); err != nil || p.Status != tt.status || p.Detail == "" || !strings.HasPrefix(p.Type, "urn:hookline:problem:") {
					t.Fatalf("problem %s: %+v, %v", body, p, err)
				}
				for _, secret := range []string{publishToken, adminToken, acmeAdmin, auth.HashToken(publishToken)} {
					if strings.Contains(string(body), secret) || strings.Contains(res.Header.Get("WWW-Authenticate"), secret) {
						t.Fatalf("answer shows a token or hash: %s", body)
					}
				}
			}
		})
	}
}

func TestDisabledLetsEverythingThrough(t *testing.T) {
	t.Parallel()
	for _, a := range []*auth.Authenticator{nil, mustParse(t, ""), mustParse(t, "# nothing\n\n")} {
		if a.Enabled() {
			t.Fatal("no tokens, auth enabled")
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/subscriptions?tenant=acme", nil)
		rec := httptest.NewRecorder()
		a.Require(auth.ScopeAdmin)(handler()).ServeHTTP(rec, req)
		if rec.Code != http.StatusNoContent || rec.Header().Get("X-Principal") != "local" {
			t.Fatalf("status %d principal %q, want 204 local", rec.Code, rec.Header().Get("X-Principal"))
		}
		if _, ok := a.Authenticate("anything"); ok {
			t.Fatal("a token authenticated with auth off")
		}
	}
}

func mustParse(t *testing.T, s string) *auth.Authenticator {
	t.Helper()
	a, err := auth.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	h := auth.HashToken("x")
	tests := []struct {
		name, spec, want string
	}{
		{"too few fields", "ci:" + h, "want <name>"},
		{"too many fields", "ci:" + h + ":publish:acme:extra", "want <name>"},
		{"empty name", ":" + h + ":publish", "name is empty"},
		{"short hash", "ci:abcd:publish", "64 hex digits"},
		{"token instead of hash", "ci:my-plain-token-value:publish", "64 hex digits"},
		{"unknown scope", "ci:" + h + ":publish|root", `unknown scope "root"`},
		{"empty tenant", "ci:" + h + ":publish:", "tenant is empty"},
		{"duplicate name", "ci:" + h + ":publish,ci:" + h + ":admin", "used twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := auth.Parse(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), h) || strings.Contains(err.Error(), "my-plain-token-value") {
				t.Fatalf("error %q shows a hash or token", err)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte(spec()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := auth.Config{TokensFile: file}.Authenticator()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := a.Authenticate(acmeAdmin); !ok || p.Name != "acme-admin" || p.Tenant != "acme" || !p.Has(auth.ScopePublish) {
		t.Fatalf("from file: %+v, %v", p, ok)
	}
	commaSeparated := "ci:" + auth.HashToken(publishToken) + ":publish:acme, ops:" + auth.HashToken(adminToken) + ":admin"
	a, err = auth.Config{Tokens: commaSeparated}.Authenticator()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Authenticate(adminToken); !ok {
		t.Fatal("comma-separated entry not read")
	}
	if err := (auth.Config{Tokens: commaSeparated, TokensFile: file}).Validate(); err == nil {
		t.Fatal("both variables accepted")
	}
	err = auth.Config{Tokens: "ci:zz:publish"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "HOOKLINE_API_TOKENS") {
		t.Fatalf("Validate = %v, want it to name HOOKLINE_API_TOKENS", err)
	}
}

func TestCheckTenantWithoutMiddleware(t *testing.T) {
	t.Parallel()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	if err := auth.CheckTenant(req.Context(), "acme"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("CheckTenant without a principal = %v, want ErrUnauthenticated", err)
	}
	ctx := auth.WithPrincipal(req.Context(), auth.Principal{Name: "x", Scopes: []string{auth.ScopePublish}, Tenant: "acme"})
	if auth.TenantOf(ctx) != "acme" || auth.CheckTenant(ctx, "acme") != nil || !errors.Is(auth.CheckTenant(ctx, "globex"), auth.ErrTenantForbidden) {
		t.Fatal("tenant binding not applied")
	}
}

func TestHashTokenMatchesSha256sum(t *testing.T) {
	t.Parallel()
	// printf %s test | sha256sum
	if got := auth.HashToken("test"); got != "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08" {
		t.Fatalf("HashToken(test) = %s", got)
	}
}

func TestCheckSubscription(t *testing.T) {
	t.Parallel()
	unlimited := auth.WithPrincipal(context.Background(), auth.Principal{Name: "acme", Tenant: "acme", Scopes: []string{auth.ScopeAdmin}})
	limited := auth.WithPrincipal(context.Background(), auth.Principal{Name: "portal", Tenant: "acme", Subscriptions: []string{"sub_A"}})
	tests := []struct {
		name    string
		ctx     context.Context
		id      string
		want    error
		limited bool
	}{
		{"unlimited: any", unlimited, "sub_B", nil, false},
		{"limited: its own", limited, "sub_A", nil, true},
		{"limited: another", limited, "sub_B", auth.ErrSubscriptionForbidden, true},
		{"limited: none named", limited, "", auth.ErrSubscriptionForbidden, true},
		{"unauthenticated", context.Background(), "sub_A", auth.ErrUnauthenticated, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := auth.CheckSubscription(tt.ctx, tt.id); !errors.Is(err, tt.want) {
				t.Fatalf("CheckSubscription = %v, want %v", err, tt.want)
			}
			if got := auth.SubscriptionLimited(tt.ctx); got != tt.limited {
				t.Fatalf("SubscriptionLimited = %v, want %v", got, tt.limited)
			}
		})
	}
}
