package subscription

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/hookline/hookline/pkg/secretbox"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
)

// Redacted replaces each credential of a subscription URL wherever the URL
// is stored in clear or shown: the record's url field, API answers,
// hookctl, logs.
const Redacted = "REDACTED"

// MaskURL returns raw with its credentials replaced by Redacted, and
// whether it had any. Credentials are the password of the userinfo (or the
// user name alone, often a token), and the values of query parameters whose
// names say secret: api_key, apikey, key, token, access_token, password,
// secret, client_secret, signature, sig, auth, credential, session, … (any
// name containing token, secret, passw, auth, credential, signature or
// session, or ending in key; case, '-', '_' and '.' ignored). Masking too
// much only costs readability. A URL without credentials, or one that does
// not parse, is returned unchanged; masking is deterministic and
// idempotent.
func MaskURL(raw string) (string, bool) {
	if !strings.ContainsAny(raw, "@?") {
		return raw, false
	}
	u, err := url.Parse(raw)
	if err != nil {
		return raw, false
	}
	found := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			if p, _ := u.User.Password(); p != Redacted {
				found = true
			}
			u.User = url.UserPassword(u.User.Username(), Redacted)
		} else if u.User.Username() != Redacted {
			found = true
			u.User = url.User(Redacted)
		}
	}
	if u.RawQuery != "" {
		q, changed := maskQuery(u.RawQuery)
		if changed {
			found = true
			u.RawQuery = q
		}
	}
	if !found {
		return raw, false
	}
	return u.String(), true
}

// maskQuery masks the values of sensitive parameters in a raw query,
// keeping every other byte (order, separators, encoding) as it was. Both
// '&' and ';' separate parameters: some servers split on either.
func maskQuery(raw string) (string, bool) {
	var b strings.Builder
	changed := false
	start := 0
	for i := 0; i <= len(raw); i++ {
		if i < len(raw) && raw[i] != '&' && raw[i] != ';' {
			continue
		}
		part := raw[start:i]
		if name, value, ok := strings.Cut(part, "="); ok && value != "" && value != Redacted && SensitiveParam(name) {
			part = name + "=" + Redacted
			changed = true
		}
		b.WriteString(part)
		if i < len(raw) {
			b.WriteByte(raw[i])
		}
		start = i + 1
	}
	return b.String(), changed
}

// SensitiveParam reports whether a query parameter name (raw, as in the
// URL) names a credential; see MaskURL.
func SensitiveParam(raw string) bool {
	name, err := url.QueryUnescape(raw)
	if err != nil {
		name = raw
	}
	name = strings.Map(func(r rune) rune {
		switch r {
		case '-', '_', '.', ' ':
			return -1
		}
		return r
	}, strings.ToLower(name))
	switch name {
	case "sig", "pwd", "pass", "pw", "jwt", "code", "hash", "hmac":
		return true
	}
	for _, s := range []string{"token", "secret", "passw", "auth", "credential", "signature", "session", "bearer", "apikey"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return strings.HasSuffix(name, "key")
}

// SealURL prepares the url of a subscription record: the URL with its
// credentials masked, and the full URL sealed with box (in clear with a nil
// box, as signing secrets are) — or raw and "" when it has no credentials.
func SealURL(box *secretbox.Box, raw string) (masked, sealed string, err error) {
	masked, has := MaskURL(raw)
	if !has {
		return raw, "", nil
	}
	if sealed, err = box.Seal(raw); err != nil {
		return "", "", fmt.Errorf("seal url credentials: %w", err)
	}
	return masked, sealed, nil
}

// Errors of OpenURL. Neither carries the URL.
var (
	// ErrSealedURLMismatch: the sealed URL is not the one the record's url
	// masks (copied from another record, or edited by hand).
	ErrSealedURLMismatch = errors.New("the sealed url does not match the subscription's url")
	// ErrURLNoKey: the URL credentials are sealed and no key opens them.
	ErrURLNoKey = errors.New("url credentials are stored encrypted and no HOOKLINE_SECRET_KEY is configured")
)

// OpenURL is the URL to deliver to: the record's url, or, when it has a
// sealed_url, that URL opened with box and checked against url (masking it
// must give url). Errors never hold the URL.
func OpenURL(box *secretbox.Box, sub *hooklinev1.Subscription) (string, error) {
	sealed := sub.GetSealedUrl()
	if sealed == "" {
		return sub.GetUrl(), nil
	}
	full, err := box.OpenFor(Binding(sub, FieldURL), sealed)
	switch {
	case errors.Is(err, secretbox.ErrNoKey):
		return "", ErrURLNoKey
	case err != nil:
		return "", fmt.Errorf("url credentials: %w", err)
	}
	if masked, _ := MaskURL(full); masked != sub.GetUrl() {
		return "", ErrSealedURLMismatch
	}
	return full, nil
}
