package subscription

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hookline/hookline/pkg/secretbox"
	hooklinev1 "github.com/hookline/hookline/proto/gen/hookline/v1"
	"google.golang.org/protobuf/proto"
)

// Endpoint authentication types (the auth.type field).
const (
	AuthOAuth2ClientCredentials = "oauth2_client_credentials"
	AuthMTLS                    = "mtls"
)

// How an OAuth client authenticates to its token endpoint
// (auth.token_auth_method, RFC 7591 names). Basic is the default: RFC 6749
// section 2.3.1 requires every token endpoint to support it.
const (
	TokenAuthBasic = "client_secret_basic"
	TokenAuthPost  = "client_secret_post"
)

// Limits of endpoint authentication fields.
const (
	MaxAuthClientIDLen    = 512
	MaxAuthSecretLen      = 4096
	MaxAuthScopeLen       = 1024
	MaxAuthAudienceLen    = 1024
	MaxAuthCertificateLen = 32 << 10
	MaxAuthPrivateKeyLen  = 16 << 10
)

// ErrRedactedAuth: an auth secret given as REDACTED has no stored value to
// keep, or the fields it belongs with changed.
var ErrRedactedAuth = errors.New("REDACTED keeps the stored secret only while the type, token_url and client_id (oauth2_client_credentials) or the certificate (mtls) stay the same; send the secret")

// ErrAuthNoKey: the endpoint authentication's secret is sealed and no key
// opens it.
var ErrAuthNoKey = errors.New("the endpoint authentication secret is stored encrypted and no HOOKLINE_SECRET_KEY is configured")

// ValidateAuth judges an endpoint authentication (nil or type "": none)
// against the stored one (old, sealed or not: only its clear fields are
// read), without its token_url's destination (the API judges that with
// its SSRF policy). It returns the errors by field name under auth
// ("type", "client_secret", …), nil when valid; no error quotes a secret.
func ValidateAuth(a, old *hooklinev1.EndpointAuth, now time.Time) map[string]error {
	if a.GetType() == "" {
		if a != nil && !proto.Equal(a, &hooklinev1.EndpointAuth{}) {
			return map[string]error{"type": errors.New(`is required with other auth fields ("oauth2_client_credentials" or "mtls"); send {} to remove the authentication`)}
		}
		return nil
	}
	errs := map[string]error{}
	set := func(field string, err error) {
		if err != nil {
			errs[field] = err
		}
	}
	forbid := func(field, value string) {
		if value != "" {
			set(field, fmt.Errorf("is not a field of type %q", a.GetType()))
		}
	}
	switch a.GetType() {
	case AuthOAuth2ClientCredentials:
		if a.GetTokenUrl() == "" {
			set("token_url", errors.New("is required"))
		}
		set("client_id", authText(a.GetClientId(), MaxAuthClientIDLen, true))
		switch s := a.GetClientSecret(); {
		case s == Redacted:
			if old.GetType() != AuthOAuth2ClientCredentials || old.GetClientSecret() == "" ||
				old.GetTokenUrl() != a.GetTokenUrl() || old.GetClientId() != a.GetClientId() {
				set("client_secret", ErrRedactedAuth)
			}
		default:
			set("client_secret", authText(s, MaxAuthSecretLen, true))
		}
		set("scope", authText(a.GetScope(), MaxAuthScopeLen, false))
		set("audience", authText(a.GetAudience(), MaxAuthAudienceLen, false))
		switch a.GetTokenAuthMethod() {
		case "", TokenAuthBasic, TokenAuthPost:
		default:
			set("token_auth_method", fmt.Errorf("must be %q (the default) or %q", TokenAuthBasic, TokenAuthPost))
		}
		forbid("certificate", a.GetCertificate())
		forbid("private_key", a.GetPrivateKey())
	case AuthMTLS:
		for f, v := range map[string]string{"token_url": a.GetTokenUrl(), "client_id": a.GetClientId(), "client_secret": a.GetClientSecret(),
			"scope": a.GetScope(), "audience": a.GetAudience(), "token_auth_method": a.GetTokenAuthMethod()} {
			forbid(f, v)
		}
		validateMTLS(a, old, now, set)
	default:
		set("type", fmt.Errorf("must be %q or %q", AuthOAuth2ClientCredentials, AuthMTLS))
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// validateMTLS checks a certificate chain and its private key: PEM, a
// pair that matches, a leaf certificate valid now.
func validateMTLS(a, old *hooklinev1.EndpointAuth, now time.Time, set func(string, error)) {
	cert, key := a.GetCertificate(), a.GetPrivateKey()
	switch {
	case cert == "":
		set("certificate", errors.New("is required (PEM)"))
		return
	case len(cert) > MaxAuthCertificateLen:
		set("certificate", fmt.Errorf("must be at most %d bytes", MaxAuthCertificateLen))
		return
	}
	leaf, err := parseLeaf(cert)
	if err != nil {
		set("certificate", err)
		return
	}
	if now.After(leaf.NotAfter) {
		set("certificate", fmt.Errorf("expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339)))
	}
	switch {
	case key == Redacted:
		if old.GetType() != AuthMTLS || old.GetPrivateKey() == "" || old.GetCertificate() != cert {
			set("private_key", ErrRedactedAuth)
		}
		return
	case key == "":
		set("private_key", errors.New("is required (PEM)"))
		return
	case len(key) > MaxAuthPrivateKeyLen:
		set("private_key", fmt.Errorf("must be at most %d bytes", MaxAuthPrivateKeyLen))
		return
	case secretbox.IsSealed(key):
		set("private_key", fmt.Errorf("must not start with %q (the mark of a sealed value)", secretbox.Prefix))
		return
	}
	if _, err := tls.X509KeyPair([]byte(cert), []byte(key)); err != nil {
		// Never err itself: it may quote the key's bytes.
		set("private_key", errors.New("is not a PEM private key matching the certificate"))
	}
}

// parseLeaf reads the first certificate of a PEM chain.
func parseLeaf(chain string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(chain))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("must be a PEM certificate chain (-----BEGIN CERTIFICATE-----), the client certificate first")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, errors.New("is not a valid X.509 certificate")
	}
	return c, nil
}

// authText checks a text field: printable, no leading or trailing space,
// at most max bytes; empty only when not required.
func authText(s string, max int, required bool) error {
	switch {
	case s == "":
		if required {
			return errors.New("is required")
		}
		return nil
	case len(s) > max:
		return fmt.Errorf("must be at most %d bytes", max)
	case s != strings.TrimSpace(s):
		return errors.New("must not start or end with whitespace")
	case secretbox.IsSealed(s):
		return fmt.Errorf("must not start with %q (the mark of a sealed value)", secretbox.Prefix)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return errors.New("must not contain control characters")
		}
	}
	return nil
}

// SealAuth prepares a validated endpoint authentication for a record:
// client_secret and private_key sealed with box (in clear with a nil box),
// REDACTED replaced by the stored secret of old (ErrRedactedAuth when the
// rule of ValidateAuth no longer holds: old changed meanwhile). nil or
// type "" is none (nil).
func SealAuth(box *secretbox.Box, a, old *hooklinev1.EndpointAuth) (*hooklinev1.EndpointAuth, error) {
	if a.GetType() == "" {
		return nil, nil
	}
	out := proto.CloneOf(a)
	if out.GetTokenAuthMethod() == "" && out.GetType() == AuthOAuth2ClientCredentials {
		out.TokenAuthMethod = TokenAuthBasic
	}
	seal := func(field string, v *string, keep bool, stored string) error {
		if *v == Redacted {
			if !keep || stored == "" {
				return fmt.Errorf("%w: %s", ErrRedactedAuth, field)
			}
			*v = stored
			return nil
		}
		if *v == "" {
			return nil
		}
		s, err := box.Seal(*v)
		if err != nil {
			return fmt.Errorf("seal auth %s: %w", field, err)
		}
		*v = s
		return nil
	}
	keepOAuth := old.GetType() == AuthOAuth2ClientCredentials && old.GetTokenUrl() == a.GetTokenUrl() && old.GetClientId() == a.GetClientId()
	if err := seal("client_secret", &out.ClientSecret, keepOAuth, old.GetClientSecret()); err != nil {
		return nil, err
	}
	keepMTLS := old.GetType() == AuthMTLS && old.GetCertificate() == a.GetCertificate()
	if err := seal("private_key", &out.PrivateKey, keepMTLS, old.GetPrivateKey()); err != nil {
		return nil, err
	}
	return out, nil
}

// ResealAuth seals secrets of a stored authentication still in clear
// (written before a key was configured), in place, as the registry does
// for signing secrets on every write.
func ResealAuth(box *secretbox.Box, a *hooklinev1.EndpointAuth) {
	if a == nil {
		return
	}
	if s, err := box.Seal(a.GetClientSecret()); err == nil && a.GetClientSecret() != "" {
		a.ClientSecret = s
	}
	if s, err := box.Seal(a.GetPrivateKey()); err == nil && a.GetPrivateKey() != "" {
		a.PrivateKey = s
	}
}

// MaskAuth is a with its secrets REDACTED (nil for none): they are
// write-only.
func MaskAuth(a *hooklinev1.EndpointAuth) *hooklinev1.EndpointAuth {
	if a.GetType() == "" {
		return nil
	}
	out := proto.CloneOf(a)
	if out.GetClientSecret() != "" {
		out.ClientSecret = Redacted
	}
	if out.GetPrivateKey() != "" {
		out.PrivateKey = Redacted
	}
	return out
}

// OpenAuth opens a record's endpoint authentication with box (secrets
// stored in clear pass through): nil for none. Errors name the field,
// never its value.
func OpenAuth(box *secretbox.Box, sub *hooklinev1.Subscription) (*hooklinev1.EndpointAuth, error) {
	a := sub.GetAuth()
	if a.GetType() == "" {
		return nil, nil
	}
	out := proto.CloneOf(a)
	open := func(field string, v *string) error {
		plain, err := box.OpenFor(Binding(sub, "auth/"+field), *v)
		switch {
		case errors.Is(err, secretbox.ErrNoKey):
			return fmt.Errorf("auth %s: %w", field, ErrAuthNoKey)
		case err != nil:
			return fmt.Errorf("auth %s: %w", field, err)
		}
		*v = plain
		return nil
	}
	if err := open("client_secret", &out.ClientSecret); err != nil {
		return nil, err
	}
	if err := open("private_key", &out.PrivateKey); err != nil {
		return nil, err
	}
	return out, nil
}
