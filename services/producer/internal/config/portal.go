package config

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/envconfig"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/stream"
)

// Portal holds the settings of the embeddable portal (/portal) and its
// sessions (POST /v1/tenants/{tenant}/portal-sessions):
//
//	HOOKLINE_PORTAL_KEY / _FILE        HMAC key of session tokens (base64 of 32 bytes)
//	HOOKLINE_PORTAL_URL                public base URL the session's url starts with
//	HOOKLINE_PORTAL_SESSION_TTL        default lifetime of a session
//	HOOKLINE_PORTAL_FRAME_ANCESTORS    CSP frame-ancestors: who may embed the portal
//	HOOKLINE_PORTAL_NAME, _LOGO_URL, _ACCENT_COLOR, _BACKGROUND_COLOR, _TEXT_COLOR   theming
type Portal struct {
	Key     string `env:"HOOKLINE_PORTAL_KEY"`
	KeyFile string `env:"HOOKLINE_PORTAL_KEY_FILE"`
	// URL is the public base URL of the producer as the platform's users
	// reach it (https://hooks.example.com); empty: the scheme and Host of
	// the request that created the session.
	URL            string        `env:"HOOKLINE_PORTAL_URL"`
	SessionTTL     time.Duration `env:"HOOKLINE_PORTAL_SESSION_TTL" envDefault:"1h"`
	FrameAncestors string        `env:"HOOKLINE_PORTAL_FRAME_ANCESTORS" envDefault:"'none'"`
	Name           string        `env:"HOOKLINE_PORTAL_NAME" envDefault:"Webhooks"`
	LogoURL        string        `env:"HOOKLINE_PORTAL_LOGO_URL"`
	Accent         string        `env:"HOOKLINE_PORTAL_ACCENT_COLOR" envDefault:"#2457d6"`
	Background     string        `env:"HOOKLINE_PORTAL_BACKGROUND_COLOR" envDefault:"#ffffff"`
	Text           string        `env:"HOOKLINE_PORTAL_TEXT_COLOR" envDefault:"#1b1f24"`
}

// MinPortalSessionTTL is the shortest session lifetime that may be asked for.
const MinPortalSessionTTL = time.Minute

var (
	colorRe = regexp.MustCompile(`^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$`)
	// A CSP source expression: 'self', 'none', a scheme (https:), or a
	// host source (https://*.example.com:443). No quotes but the two
	// keywords, no ; or , that would end the directive.
	sourceRe = regexp.MustCompile(`^(?:'self'|'none'|[a-z][a-z0-9+.-]*:|(?:[a-z][a-z0-9+.-]*://)?(?:\*\.)?[A-Za-z0-9.-]+(?::(?:[0-9]{1,5}|\*))?)$`)
)

// Validate names the variable at fault; it never prints the key.
func (p Portal) Validate() error {
	var errs []error
	if _, err := p.configuredKey(); err != nil {
		errs = append(errs, err)
	}
	if p.URL != "" {
		u, err := url.Parse(p.URL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("HOOKLINE_PORTAL_URL must be an absolute http(s) URL without credentials, query or fragment, such as https://hooks.example.com"))
		}
	}
	if p.SessionTTL < MinPortalSessionTTL || p.SessionTTL > stream.PortalSessionMaxTTL {
		errs = append(errs, fmt.Errorf("HOOKLINE_PORTAL_SESSION_TTL must be from %s to %s, not %s", MinPortalSessionTTL, stream.PortalSessionMaxTTL, p.SessionTTL))
	}
	fields := strings.Fields(p.FrameAncestors)
	if len(fields) == 0 {
		errs = append(errs, errors.New("HOOKLINE_PORTAL_FRAME_ANCESTORS is empty: give 'none', 'self' or the platform's origins (https://app.example.com)"))
	}
	for _, f := range fields {
		if !sourceRe.MatchString(f) || (len(fields) > 1 && f == "'none'") {
			errs = append(errs, fmt.Errorf("HOOKLINE_PORTAL_FRAME_ANCESTORS: %q is not a CSP source ('none' alone, 'self', https:, https://app.example.com)", f))
		}
	}
	if n := len([]rune(p.Name)); n == 0 || n > 64 {
		errs = append(errs, fmt.Errorf("HOOKLINE_PORTAL_NAME must be 1 to 64 characters"))
	}
	if p.LogoURL != "" {
		u, err := url.Parse(p.LogoURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
			errs = append(errs, errors.New("HOOKLINE_PORTAL_LOGO_URL must be an absolute http(s) URL without credentials"))
		}
	}
	for name, v := range map[string]string{"HOOKLINE_PORTAL_ACCENT_COLOR": p.Accent, "HOOKLINE_PORTAL_BACKGROUND_COLOR": p.Background, "HOOKLINE_PORTAL_TEXT_COLOR": p.Text} {
		if !colorRe.MatchString(v) {
			errs = append(errs, fmt.Errorf("%s must be a hex colour such as #2457d6, not %q", name, v))
		}
	}
	return errors.Join(errs...)
}

// configuredKey reads HOOKLINE_PORTAL_KEY or _FILE (nil when neither is set).
func (p Portal) configuredKey() ([]byte, error) {
	encoded, name, err := envconfig.ValueOrFile("HOOKLINE_PORTAL_KEY", p.Key, p.KeyFile)
	if err != nil {
		return nil, err
	}
	if encoded == "" {
		return nil, nil
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(encoded))
	if err != nil || len(k) != 32 {
		return nil, fmt.Errorf("%s must be base64 of 32 bytes (openssl rand -base64 32)", name)
	}
	return k, nil
}

// Key sources, for the start-up log.
const (
	PortalKeyConfigured = "HOOKLINE_PORTAL_KEY"
	PortalKeyDerived    = "derived from HOOKLINE_SECRET_KEY"
	PortalKeyRandom     = "random, this process only"
)

// SigningKey is the HMAC key of portal session tokens: HOOKLINE_PORTAL_KEY
// when set, else one derived from HOOKLINE_SECRET_KEY (never that key
// itself), else a random key of this process (sessions then work on this
// replica only and end with it). It says which.
func (p Portal) SigningKey(secrets secretbox.Config) ([]byte, string, error) {
	k, err := p.configuredKey()
	if err != nil {
		return nil, "", err
	}
	if k != nil {
		return k, PortalKeyConfigured, nil
	}
	raw, err := secrets.CurrentKey()
	if err != nil {
		return nil, "", err
	}
	if raw != nil {
		m := hmac.New(sha256.New, raw)
		m.Write([]byte("hookline portal sessions v1"))
		return m.Sum(nil), PortalKeyDerived, nil
	}
	k = make([]byte, 32)
	_, _ = rand.Read(k)
	return k, PortalKeyRandom, nil
}
