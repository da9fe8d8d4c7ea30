package signing

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Errors of Verify.
var (
	// ErrNoMatch: no entry of the header was made by any of the keys (a
	// tampered body, id or timestamp, or a wrong key).
	ErrNoMatch = errors.New("no matching signature")
	// ErrTooOld and ErrTooNew: the timestamp is outside the tolerance.
	ErrTooOld = errors.New("webhook timestamp is too old")
	ErrTooNew = errors.New("webhook timestamp is too new")
	// ErrMissingHeaders: VerifyHeaders found no webhook-id, -timestamp or
	// -signature header.
	ErrMissingHeaders = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	// ErrBadTimestamp: webhook-timestamp is not Unix seconds.
	ErrBadTimestamp = errors.New("webhook-timestamp is not a Unix time in seconds")
)

// Verify checks that header (a webhook-signature value) holds at least one
// entry made over id, ts and body by one of keys. Keys may be whsec_
// secrets (checks "v1" entries), whsk_ secrets or whpk_ public keys (check
// "v1a" entries); any match is enough, which is what a receiver needs while
// a rotation overlaps. Verify does not look at the clock: use
// VerifyWithTolerance for that.
//
// It returns ErrNoKeys, ErrBadSecret (wrapped with the key's position),
// ErrMalformedHeader or ErrNoMatch.
func Verify(id string, ts time.Time, body []byte, header string, keys ...string) error {
	if len(keys) == 0 {
		return ErrNoKeys
	}
	ring, err := cachedKeyring(keys)
	if err != nil {
		return err
	}
	return ring.Verify(id, ts, body, header)
}

// VerifyWithTolerance is Verify plus a check that ts is within tolerance of
// now (ErrTooOld, ErrTooNew), done first so that a replayed old message is
// refused even when its signature is genuine.
func VerifyWithTolerance(id string, ts time.Time, body []byte, header string, now time.Time, tolerance time.Duration, keys ...string) error {
	if err := checkTimestamp(ts, now, tolerance); err != nil {
		return err
	}
	return Verify(id, ts, body, header, keys...)
}

// VerifyHeaders verifies a received request from its Standard Webhooks
// headers: what a receiver calls. tolerance ≤ 0 means DefaultTolerance.
func VerifyHeaders(h http.Header, body []byte, now time.Time, tolerance time.Duration, keys ...string) error {
	id, tsHeader, sig := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || tsHeader == "" || sig == "" {
		return ErrMissingHeaders
	}
	ts, err := ParseTimestamp(tsHeader)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	return VerifyWithTolerance(id, ts, body, sig, now, tolerance, keys...)
}

// ParseTimestamp parses a webhook-timestamp header (Unix seconds).
func ParseTimestamp(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, ErrBadTimestamp
	}
	return time.Unix(n, 0), nil
}

func checkTimestamp(ts, now time.Time, tolerance time.Duration) error {
	switch d := now.Sub(ts); {
	case d > tolerance:
		return fmt.Errorf("%w (tolerance %s)", ErrTooOld, tolerance)
	case d < -tolerance:
		return fmt.Errorf("%w (tolerance %s)", ErrTooNew, tolerance)
	}
	return nil
}

// Verify checks header against every key of the ring; see the package-level
// Verify.
func (r Keyring) Verify(id string, ts time.Time, body []byte, header string) error {
	if len(r) == 0 {
		return ErrNoKeys
	}
	sigs, err := ParseSignatureHeader(header)
	if err != nil {
		return err
	}
	tsStr := strconv.AppendInt(nil, ts.Unix(), 10)
	var content []byte
	for _, k := range r {
		switch k.scheme {
		case SchemeHMAC:
			var sum [sha256.Size]byte
			mac := k.mac(sum[:0], id, tsStr, body)
			for _, s := range sigs {
				if s.Version == SchemeHMAC && hmac.Equal(s.Value, mac) {
					return nil
				}
			}
		case SchemeEd25519:
			if content == nil {
				content = signedContent(id, tsStr, body)
			}
			for _, s := range sigs {
				if s.Version == SchemeEd25519 && len(s.Value) == ed25519.SignatureSize && ed25519.Verify(k.pub, content, s.Value) {
					return nil
				}
			}
		}
	}
	return ErrNoMatch
}
