// Package auth authenticates callers of the producer API with bearer
// tokens.
//
// Tokens are configured as hashes, never in clear: one entry per line (or
// comma-separated) in HOOKLINE_API_TOKENS, or in the file named by
// HOOKLINE_API_TOKENS_FILE (a mounted secret):
//
//	<name>:<sha256 hex of the token>:<scopes separated by |>[:<tenant>]
//
//	ci-publisher:<64 hex digits>:publish:acme
//	ops:<64 hex digits>:admin
//	acme-console:<64 hex digits>:publish|admin:acme
//
// Make a token and its hash with
//
//	TOKEN=$(openssl rand -base64 32 | tr -d '=+/')   # the caller keeps this
//	printf %s "$TOKEN" | sha256sum | cut -d' ' -f1   # the server gets this
//
// Scopes: "publish" (POST /v1/events…) and "admin" (subscriptions; implies
// publish). A token with a tenant may only act on that tenant: handlers
// call CheckTenant with the tenant of the request once they have decoded
// it. The token's name (never the token) identifies the caller in logs.
//
// With no token configured authentication is off (local mode): every
// request passes as an unbound admin, and the service should say so loudly
// at start-up (see Authenticator.Enabled).
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/hookline/hookline/pkg/envconfig"
)

// Scopes.
const (
	ScopePublish = "publish"
	ScopeAdmin   = "admin"
)

// HashToken returns the lowercase hex SHA-256 of a token: the form
// HOOKLINE_API_TOKENS holds (what `printf %s "$TOKEN" | sha256sum` prints).
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Principal is an authenticated caller.
type Principal struct {
	// Name of the token (from the configuration), for logs.
	Name string
	// Scopes granted.
	Scopes []string
	// Tenant the token is bound to; "" for every tenant.
	Tenant string
	// Subscriptions, when not nil, are the only subscriptions of Tenant the
	// caller may see or act on (a portal session limited to some
	// endpoints): handlers call CheckSubscription. nil: every one.
	Subscriptions []string
}

// Has reports whether the principal holds scope (admin holds every scope).
func (p Principal) Has(scope string) bool {
	return slices.Contains(p.Scopes, scope) || slices.Contains(p.Scopes, ScopeAdmin)
}

type token struct {
	hash [sha256.Size]byte
	Principal
}

// Authenticator checks bearer tokens. The zero value and nil have no
// tokens: authentication is off.
type Authenticator struct {
	tokens []token
}

// Config is embedded in the producer's config.
type Config struct {
	// Tokens: entries "<name>:<sha256 hex>:<scopes>[:<tenant>]", one per
	// line or comma-separated.
	Tokens string `env:"HOOKLINE_API_TOKENS"`
	// TokensFile holds the same entries instead (a mounted secret); lines
	// starting with # are comments.
	TokensFile string `env:"HOOKLINE_API_TOKENS_FILE"`
}

// Validate names the variable at fault; it never prints a hash.
func (c Config) Validate() error {
	_, err := c.Authenticator()
	return err
}

// Authenticator parses the configuration. No entries at all means
// authentication is off (check Enabled and warn).
func (c Config) Authenticator() (*Authenticator, error) {
	spec, name, err := envconfig.ValueOrFile("HOOKLINE_API_TOKENS", c.Tokens, c.TokensFile)
	if err != nil {
		return nil, err
	}
	a, err := Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return a, nil
}

// Parse reads token entries separated by newlines or commas; blank entries
// and lines starting with # are skipped. Errors name the entry by position
// and token name, never the hash.
func Parse(spec string) (*Authenticator, error) {
	a := &Authenticator{}
	names := map[string]bool{}
	n := 0
	for _, line := range strings.Split(spec, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "#") {
			continue
		}
		for _, entry := range strings.Split(line, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			n++
			t, err := parseEntry(entry)
			if err != nil {
				return nil, fmt.Errorf("entry #%d: %w", n, err)
			}
			if names[t.Name] {
				return nil, fmt.Errorf("entry #%d: token name %q is used twice", n, t.Name)
			}
			names[t.Name] = true
			a.tokens = append(a.tokens, t)
		}
	}
	return a, nil
}

func parseEntry(entry string) (token, error) {
	parts := strings.Split(entry, ":")
	if len(parts) < 3 || len(parts) > 4 {
		return token{}, errors.New("want <name>:<sha256 hex>:<scopes>[:<tenant>]")
	}
	t := token{Principal: Principal{Name: strings.TrimSpace(parts[0])}}
	if t.Name == "" {
		return token{}, errors.New("token name is empty")
	}
	h, err := hex.DecodeString(strings.ToLower(strings.TrimSpace(parts[1])))
	if err != nil || len(h) != sha256.Size {
		return token{}, fmt.Errorf("token %q: the hash must be 64 hex digits (printf %%s \"$TOKEN\" | sha256sum)", t.Name)
	}
	copy(t.hash[:], h)
	for _, s := range strings.Split(parts[2], "|") {
		s = strings.TrimSpace(s)
		switch s {
		case ScopePublish, ScopeAdmin:
			if !slices.Contains(t.Scopes, s) {
				t.Scopes = append(t.Scopes, s)
			}
		default:
			return token{}, fmt.Errorf("token %q: unknown scope %q (want publish or admin)", t.Name, s)
		}
	}
	if len(parts) == 4 {
		t.Tenant = strings.TrimSpace(parts[3])
		if t.Tenant == "" {
			return token{}, fmt.Errorf("token %q: tenant is empty (leave out the last field for every tenant)", t.Name)
		}
	}
	return t, nil
}

// Enabled reports whether any token is configured. When false every request
// passes: the service must log a loud warning.
func (a *Authenticator) Enabled() bool { return a != nil && len(a.tokens) > 0 }

// Authenticate returns the principal of a presented token. It hashes the
// token and compares the hash with every configured one in constant time,
// all of them, so the time taken says nothing about which matched.
func (a *Authenticator) Authenticate(presented string) (Principal, bool) {
	if a == nil {
		return Principal{}, false
	}
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range a.tokens {
		if subtle.ConstantTimeCompare(sum[:], a.tokens[i].hash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Principal{}, false
	}
	return a.tokens[found].Principal, true
}

type principalKey struct{}

// localPrincipal is the caller when authentication is off.
var localPrincipal = Principal{Name: "local", Scopes: []string{ScopeAdmin}}

// WithPrincipal returns ctx carrying p (what the middleware does; for tests
// of handlers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the caller the middleware authenticated.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// ErrTenantForbidden is returned by CheckTenant when the caller's token is
// bound to another tenant. Answer 403 (WriteForbidden), or 404 when a record
// of another tenant must not even be shown to exist.
var ErrTenantForbidden = errors.New("this token may not act on that tenant")

// ErrUnauthenticated is returned by CheckTenant when the context carries no
// principal: the route was not wrapped by Require.
var ErrUnauthenticated = errors.New("request is not authenticated")

// CheckTenant is what a handler calls once it knows the tenant a request
// touches (decoded from the body or the query, or read from a stored
// record): nil when the caller may act on it.
func CheckTenant(ctx context.Context, tenant string) error {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return ErrUnauthenticated
	}
	if p.Tenant != "" && p.Tenant != tenant {
		return ErrTenantForbidden
	}
	return nil
}

// ErrSubscriptionForbidden is returned by CheckSubscription when the
// caller is limited to other subscriptions. Answer 404 for a record (it
// must not be shown to exist), 403 for a listing or a creation.
var ErrSubscriptionForbidden = errors.New("this session may not act on that subscription")

// CheckSubscription is what a handler calls once it knows the subscription
// a request touches: nil when the caller may act on it (a caller not
// limited to some subscriptions may act on every one of its tenant).
func CheckSubscription(ctx context.Context, id string) error {
	p, ok := PrincipalFrom(ctx)
	if !ok {
		return ErrUnauthenticated
	}
	if p.Subscriptions != nil && !slices.Contains(p.Subscriptions, id) {
		return ErrSubscriptionForbidden
	}
	return nil
}

// SubscriptionLimited reports whether the caller may act on some
// subscriptions only (and so not on tenant-wide data such as the event log,
// nor create subscriptions).
func SubscriptionLimited(ctx context.Context) bool {
	p, _ := PrincipalFrom(ctx)
	return p.Subscriptions != nil
}

// TenantOf returns the tenant the caller is bound to ("" for every tenant):
// a list handler uses it to filter, or as the default tenant.
func TenantOf(ctx context.Context) string {
	p, _ := PrincipalFrom(ctx)
	return p.Tenant
}
