package signing

import (
	"encoding/base64"
	"errors"
	"strings"
)

// Limits of ParseSignatureHeader: a header carries one entry per active
// secret (two during a rotation), so these bound the work an attacker can
// cause without ever refusing a real header.
const (
	MaxSignatureHeaderLen = 8 << 10
	MaxSignatureEntries   = 32
)

// ErrMalformedHeader is returned by ParseSignatureHeader (and Verify) for a
// webhook-signature header with no well-formed entry, or one over the limits.
var ErrMalformedHeader = errors.New("webhook-signature header is malformed")

// Signature is one entry of a webhook-signature header.
type Signature struct {
	// Version is the scheme tag: "v1" (HMAC-SHA256), "v1a" (ed25519), or a
	// future one.
	Version string
	// Value is the decoded signature.
	Value []byte
}

// ParseSignatureHeader splits a webhook-signature header into its entries:
// space-separated "<version>,<base64>". A version is "v" followed by digits
// and optionally lowercase letters. Entries that are not well formed are
// skipped, as the reference libraries do, so that a receiver keeps working
// when a sender adds a scheme it does not know; ErrMalformedHeader is
// returned when no entry is well formed, when there are more than
// MaxSignatureEntries entries, or when the header is longer than
// MaxSignatureHeaderLen bytes.
func ParseSignatureHeader(h string) ([]Signature, error) {
	if len(h) > MaxSignatureHeaderLen {
		return nil, ErrMalformedHeader
	}
	fields := strings.Fields(h)
	if len(fields) > MaxSignatureEntries {
		return nil, ErrMalformedHeader
	}
	sigs := make([]Signature, 0, len(fields))
	for _, f := range fields {
		version, value, ok := strings.Cut(f, ",")
		if !ok || !validVersion(version) || value == "" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(value)
		if err != nil || len(raw) == 0 {
			continue
		}
		sigs = append(sigs, Signature{Version: version, Value: raw})
	}
	if len(sigs) == 0 {
		return nil, ErrMalformedHeader
	}
	return sigs, nil
}

// validVersion accepts v<digits>[<lowercase letters>], at most 16 bytes.
func validVersion(v string) bool {
	if len(v) < 2 || len(v) > 16 || v[0] != 'v' {
		return false
	}
	i := 1
	for i < len(v) && v[i] >= '0' && v[i] <= '9' {
		i++
	}
	if i == 1 {
		return false
	}
	for ; i < len(v); i++ {
		if v[i] < 'a' || v[i] > 'z' {
			return false
		}
	}
	return true
}
