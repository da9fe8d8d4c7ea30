// Package signing produces and checks Standard Webhooks signatures.
//
// The signed content is "<webhook-id>.<webhook-timestamp>.<body>". A secret's
// prefix chooses the scheme: whsec_<base64> signs with HMAC-SHA256 ("v1"),
// whsk_<base64> with ed25519 ("v1a"). A header carries one space-separated
// entry per active secret while a rotation overlaps.
package signing

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Prefixes of secrets.
const (
	HMACSecretPrefix = "whsec_"
)

// ErrBadSecret is returned for a secret that is not whsec_<base64>.
var ErrBadSecret = errors.New("signing secret is malformed")

// Sign returns the webhook-signature header value for the message: one entry
// per secret, space-separated. It returns ErrBadSecret (never the secret
// itself) when a secret cannot be decoded.
func Sign(id string, ts time.Time, body []byte, secrets ...string) (string, error) {
	var b strings.Builder
	content := signedContent(id, ts, body)
	for i, s := range secrets {
		entry, err := signOne(content, s)
		if err != nil {
			return "", fmt.Errorf("secret #%d: %w", i+1, err)
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(entry)
	}
	return b.String(), nil
}

func signedContent(id string, ts time.Time, body []byte) []byte {
	tsStr := strconv.FormatInt(ts.Unix(), 10)
	c := make([]byte, 0, len(id)+len(tsStr)+len(body)+2)
	c = append(c, id...)
	c = append(c, '.')
	c = append(c, tsStr...)
	c = append(c, '.')
	return append(c, body...)
}

func signOne(content []byte, secret string) (string, error) {
	raw, ok := strings.CutPrefix(secret, HMACSecretPrefix)
	if !ok {
		return "", ErrBadSecret
	}
	key, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || len(key) == 0 {
		return "", ErrBadSecret
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(content)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil)), nil
}
