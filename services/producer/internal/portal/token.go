package portal

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// A session token is "hlps_<payload>.<mac>": the payload is base64url of
// the Claims in JSON, the mac base64url of HMAC-SHA256 over "hlps_<payload>"
// with the portal key. It is a bearer credential: whoever holds it acts as
// the session until it expires or is revoked.
const tokenPrefix = "hlps_"

// Claims are what a session may do, signed into its token.
type Claims struct {
	Version int    `json:"v"`
	ID      string `json:"sid"`
	Tenant  string `json:"ten"`
	// Subscriptions limit the session (nil: every subscription of Tenant).
	Subscriptions []string `json:"sub,omitempty"`
	ReadOnly      bool     `json:"ro,omitempty"`
	// IssuedAt and Expires are unix milliseconds.
	IssuedAt int64 `json:"iat"`
	Expires  int64 `json:"exp"`
}

// ExpiresAt is when the session ends.
func (c Claims) ExpiresAt() time.Time { return time.UnixMilli(c.Expires).UTC() }

// Errors of Verify. None of them quotes the token.
var (
	ErrMalformed = errors.New("not a portal session token")
	ErrSignature = errors.New("the portal session token's signature does not verify")
	ErrExpired   = errors.New("the portal session has expired")
	ErrRevoked   = errors.New("the portal session was revoked")
)

// maxTokenLen bounds what Verify reads (100 subscription ids fit).
const maxTokenLen = 8 << 10

func mac(key []byte, signed string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// Sign returns the token of c.
func Sign(key []byte, c Claims) string {
	b, _ := json.Marshal(c)
	signed := tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed))
}

// Verify checks a token's form, signature (in constant time) and expiry
// at now, and returns its claims. It does not know about revocations.
func Verify(key []byte, token string, now time.Time) (Claims, error) {
	if len(token) > maxTokenLen || !strings.HasPrefix(token, tokenPrefix) {
		return Claims{}, ErrMalformed
	}
	signed, sig, ok := strings.Cut(token, ".")
	if !ok {
		return Claims{}, ErrMalformed
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		return Claims{}, ErrMalformed
	}
	if !hmac.Equal(got, mac(key, signed)) {
		return Claims{}, ErrSignature
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(signed, tokenPrefix))
	if err != nil {
		return Claims{}, ErrMalformed
	}
	var c Claims
	if err := json.Unmarshal(b, &c); err != nil || c.Version != 1 || c.ID == "" || c.Tenant == "" {
		return Claims{}, ErrMalformed
	}
	if now.UnixMilli() >= c.Expires {
		return Claims{}, ErrExpired
	}
	return c, nil
}

// csrfToken is the session's anti-forgery token: sent back in the
// X-Hookline-CSRF header on every change made with the session cookie.
// Derived from the session id with the key, so it needs no storage and
// differs from the token.
func csrfToken(key []byte, sessionID string) string {
	return base64.RawURLEncoding.EncodeToString(mac(key, "csrf:"+sessionID))
}
