package auth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Require returns middleware that lets a request through only with a
// bearer token holding scope; the handler then finds the caller with
// PrincipalFrom and checks the tenant with CheckTenant.
//
//   - no or malformed Authorization header, or an unknown token → 401 with
//     WWW-Authenticate: Bearer, as application/problem+json (RFC 9457);
//   - a known token without the scope → 403.
//
// When authentication is off (no tokens) every request passes as an
// unbound admin. Tokens are never logged or echoed.
func (a *Authenticator) Require(scope string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !a.Enabled() {
				next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), localPrincipal)))
				return
			}
			presented, ok := bearer(r.Header.Get("Authorization"))
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookline"`)
				writeProblem(w, http.StatusUnauthorized, TypeUnauthorized,
					"send the API token as `Authorization: Bearer <token>`")
				return
			}
			p, ok := a.Authenticate(presented)
			if !ok {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookline", error="invalid_token"`)
				writeProblem(w, http.StatusUnauthorized, TypeUnauthorized, "the API token is not valid")
				return
			}
			if !p.Has(scope) {
				w.Header().Set("WWW-Authenticate", `Bearer realm="hookline", error="insufficient_scope", scope="`+scope+`"`)
				writeProblem(w, http.StatusForbidden, TypeForbidden,
					"this token lacks the "+scope+" scope")
				return
			}
			next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
		})
	}
}

// WriteForbidden answers 403 for a CheckTenant refusal, in the same
// problem+json shape as the middleware.
func WriteForbidden(w http.ResponseWriter, detail string) {
	writeProblem(w, http.StatusForbidden, TypeForbidden, detail)
}

// bearer extracts the token of "Bearer <token>" (scheme case-insensitive).
func bearer(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Problem types of the answers written here, in the producer's URN scheme.
const (
	TypeUnauthorized = "urn:hookline:problem:unauthorized" // 401
	TypeForbidden    = "urn:hookline:problem:forbidden"    // 403
)

func writeProblem(w http.ResponseWriter, status int, typ, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"type":   typ,
		"title":  http.StatusText(status),
		"status": status,
		"detail": detail,
	})
}
