// Package signing produces and checks Standard Webhooks signatures.
//
// The signed content is "<webhook-id>.<webhook-timestamp>.<body>". A secret's
// prefix chooses the scheme: whsec_<base64> signs with HMAC-SHA256 ("v1"),
// whsk_<base64> with ed25519 ("v1a"); whpk_<base64> is an ed25519 public key
// that can only verify. A header carries one space-separated entry per
// active secret while a rotation overlaps, so a receiver holding either the
// old or the new secret accepts the message.
//
// Sign and Verify take secrets as strings. On a hot path parse them once
// with ParseKeyring and call Keyring.Sign: it skips the base64 decoding and
// reuses keyed HMAC states (see BenchmarkSign). Errors name the position of
// a bad secret, never its value.
package signing

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefixes of secrets and keys.
const (
	// HMACSecretPrefix starts a v1 (HMAC-SHA256) secret: whsec_<base64>.
	HMACSecretPrefix = "whsec_"
	// Ed25519SecretPrefix starts a v1a signing key: whsk_<base64 of the
	// 32-byte seed or the 64-byte private key>.
	Ed25519SecretPrefix = "whsk_"
	// Ed25519PublicPrefix starts a v1a verifying key: whpk_<base64 of 32 bytes>.
	Ed25519PublicPrefix = "whpk_"
)

// Signature schemes: the version tag of a webhook-signature entry.
const (
	SchemeHMAC    = "v1"
	SchemeEd25519 = "v1a"
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a webhook-timestamp may be from the receiver's
// clock, as in the reference libraries.
const DefaultTolerance = 5 * time.Minute

// Errors. None of them, nor anything wrapping them here, carries key
// material.
var (
	// ErrBadSecret is returned for a secret or key that is not one of
	// whsec_<base64>, whsk_<base64>, whpk_<base64> of the right size.
	ErrBadSecret = errors.New("signing secret is malformed")
	// ErrNoKeys is returned by Verify when no key was given.
	ErrNoKeys = errors.New("no verification keys")
	// ErrVerifyOnly is returned when signing with a whpk_ public key.
	ErrVerifyOnly = errors.New("a whpk_ public key can only verify")
)

// Sign returns the webhook-signature header value for the message: one entry
// per secret, space-separated, each in the scheme its prefix chooses
// (whsec_ → "v1,", whsk_ → "v1a,"). It returns ErrBadSecret, wrapped with the
// secret's position but never its value, when a secret cannot be decoded.
//
// Parsed secrets are cached (bounded), so repeated calls with the same
// secrets do not decode them again.
func Sign(id string, ts time.Time, body []byte, secrets ...string) (string, error) {
	keys, err := cachedKeyring(secrets)
	if err != nil {
		return "", err
	}
	return keys.Sign(id, ts, body)
}

// cachedKeyring parses secrets through the cache. Errors name the position,
// never the value.
func cachedKeyring(secrets []string) (Keyring, error) {
	keys := make(Keyring, len(secrets))
	for i, s := range secrets {
		k, err := cachedKey(s)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		keys[i] = k
	}
	return keys, nil
}

// Keyring is a list of parsed keys, newest first: what Sign and Verify use
// after decoding the strings. It is safe for concurrent use.
type Keyring []*Key

// ParseKeyring parses secrets (whsec_, whsk_ or whpk_) once, for repeated
// Sign or Verify calls. Errors name the position, never the value.
func ParseKeyring(secrets ...string) (Keyring, error) {
	keys := make(Keyring, len(secrets))
	for i, s := range secrets {
		k, err := ParseKey(s)
		if err != nil {
			return nil, fmt.Errorf("secret #%d: %w", i+1, err)
		}
		keys[i] = k
	}
	return keys, nil
}

// Sign returns the webhook-signature header value: one entry per key. It
// returns ErrVerifyOnly for a whpk_ public key.
func (r Keyring) Sign(id string, ts time.Time, body []byte) (string, error) {
	var tsBuf [20]byte
	tsStr := strconv.AppendInt(tsBuf[:0], ts.Unix(), 10)
	var b strings.Builder
	b.Grow(len(r) * 92)
	var content []byte // built only for ed25519, which signs one slice
	for i, k := range r {
		if i > 0 {
			b.WriteByte(' ')
		}
		switch k.scheme {
		case SchemeHMAC:
			b.WriteString(SchemeHMAC + ",")
			k.appendHMAC(&b, id, tsStr, body)
		case SchemeEd25519:
			if k.priv == nil {
				return "", fmt.Errorf("secret #%d: %w", i+1, ErrVerifyOnly)
			}
			if content == nil {
				content = signedContent(id, tsStr, body)
			}
			b.WriteString(SchemeEd25519 + ",")
			k.appendEd25519(&b, content)
		}
	}
	return b.String(), nil
}

func signedContent(id string, ts []byte, body []byte) []byte {
	c := make([]byte, 0, len(id)+len(ts)+len(body)+2)
	c = append(c, id...)
	c = append(c, '.')
	c = append(c, ts...)
	c = append(c, '.')
	return append(c, body...)
}
