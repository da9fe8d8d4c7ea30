package config

import (
	"errors"

	"github.com/hookline/hookline/pkg/auth"
	"github.com/hookline/hookline/pkg/secretbox"
	"github.com/hookline/hookline/pkg/ssrf"
)

// Security holds the producer's security settings:
//
//	HOOKLINE_API_TOKENS / _FILE            bearer tokens (hashes), scopes, tenant binding; none: auth off
//	HOOKLINE_SECRET_KEY / _FILE / _PREVIOUS signing secrets and URL credentials sealed at rest (AES-256-GCM)
//	HOOKLINE_ALLOW_PRIVATE_CIDRS           subscription URLs allowed to point at these ranges (or ports)
//	HOOKLINE_DENY_DESTINATIONS             …and never at these
//	HOOKLINE_HTTPS_ONLY                    refuse http:// subscription URLs
type Security struct {
	Auth    auth.Config
	Secrets secretbox.Config
	URLs    ssrf.Config
}

// Validate names the variable at fault; it never prints a token, hash or key.
func (s Security) Validate() error {
	return errors.Join(s.Auth.Validate(), s.Secrets.Validate(), s.URLs.Validate())
}
